"""A Ray host that dies: its partitions are re-homed and its actors' callers are answered."""

from __future__ import annotations

import os
import signal
import uuid

import psutil
import pytest

from actors.ray_placement import RayPlacement
from actors.reference import ReferenceData
from actors.runtime import partition_of
from actors.service import CartService
from snapshots.redis_store import RedisStore, connect
from tests.actors.harness import SETTINGS, START, product

pytestmark = pytest.mark.actors


async def test_the_carts_of_a_killed_host_answer_again_with_every_acknowledged_line(
        ray_address: str, redis_url: str) -> None:
    store = RedisStore(connect(redis_url), "t" + uuid.uuid4().hex[:10])
    placement = RayPlacement(n_hosts=2, redis_url=redis_url, prefix=store.prefix,
                             settings=SETTINGS, reference=ReferenceData(),
                             manual_clock_start=START)
    await placement.start()
    svc = CartService(placement, store)
    try:
        await svc.put_product("p", product("p", stock=100))
        assert placement.view is not None
        # start() answers once each host owns its share (the first to join claims all)
        counts = placement.view.map.counts()
        assert set(counts) == {"h0", "h1"} and abs(counts["h0"] - counts["h1"]) <= 1
        carts: dict[str, list[tuple[str, str]]] = {}
        for i in range(30):
            owner = f"u{i}"
            cid = (await svc.active_cart(owner))["cart"]["cart_id"]
            await svc.add_item(owner, cid, product_id="p", quantity=2)
            host = placement.view.owners[partition_of("cart", cid)]
            carts.setdefault(host, []).append((owner, cid))
        assert set(carts) == {"h0", "h1"}
        victim = psutil.Process((await placement.host_info())["h0"]["pid"])
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=60)  # the kill has landed: the host's process is gone
        # No restart of the service: the router re-sends until the partition has a live
        # owner again (the lease lapsed and a survivor took it, or Ray restarted the host).
        for owner, cid in carts["h0"]:
            cart = await svc.get_cart(owner, cid)
            assert [(ln["product_id"], ln["quantity"]) for ln in cart["lines"]] == [("p", 2)]
        owner, cid = carts["h0"][0]
        cart = await svc.add_item(owner, cid, product_id="p", quantity=1)
        assert cart["lines"][0]["quantity"] == 3
        for owner, cid in carts["h1"]:
            assert (await svc.get_cart(owner, cid))["cart_id"] == cid
    finally:
        await svc.close()
        await store.clear()
        await store.close()
