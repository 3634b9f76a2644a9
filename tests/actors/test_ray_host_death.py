"""A Ray host that dies: its actors' callers get a prompt 503, the other hosts carry on."""

from __future__ import annotations

import uuid

import psutil
import pytest

from actors.ray_placement import RayPlacement
from actors.reference import ReferenceData
from actors.runtime import host_of
from actors.service import CartService
from engine.errors import Unavailable
from snapshots.redis_store import RedisStore, connect
from tests.actors.harness import SETTINGS, START

pytestmark = pytest.mark.actors


@pytest.mark.parametrize("transport", ["tcp", "ray"])
async def test_the_callers_of_a_dead_host_get_host_unavailable_and_the_others_carry_on(
        ray_address: str, redis_url: str, transport: str) -> None:
    import ray

    store = RedisStore(connect(redis_url), "t" + uuid.uuid4().hex[:10])
    placement = RayPlacement(n_hosts=2, redis_url=redis_url, prefix=store.prefix,
                             settings=SETTINGS, reference=ReferenceData(),
                             manual_clock_start=START, transport=transport)  # type: ignore[arg-type]
    await placement.start()
    svc = CartService(placement, store)
    try:
        carts = {}
        for i in range(20):
            owner = f"u{i}"
            cid = (await svc.active_cart(owner))["cart"]["cart_id"]
            carts.setdefault(host_of("cart", cid, 2), (owner, cid))
        assert set(carts) == {0, 1}
        host0 = psutil.Process((await placement.stats())[0]["pid"])
        ray.kill(placement.handles[0])
        host0.wait(timeout=60)  # the kill has landed: the host's process is gone
        owner, cid = carts[0]
        with pytest.raises(Unavailable) as e:
            await svc.get_cart(owner, cid)
        assert e.value.code == "host_unavailable"
        owner, cid = carts[1]
        assert (await svc.get_cart(owner, cid))["cart_id"] == cid
    finally:
        await svc.close()
        await store.clear()
        await store.close()
