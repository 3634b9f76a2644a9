"""``GET /v1/carts/{cart_id}/events`` over real HTTP: an in-process engine (two local hosts,
the Redis store, a manual clock) behind uvicorn on a loopback port, read with httpx."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from actors.clock import ManualClock
from actors.placement import LocalPlacement
from actors.runtime import partition_of
from actors.service import CartService
from actors.settings import EngineSettings
from gateway.app import create_app
from gateway.auth import issue_token
from gateway.cart_events import MAX_QUEUE, CartEventHub
from gateway.ingress import HttpIngress
from gateway.settings import GatewaySettings
from snapshots import MemoryStore, RedisStore
from snapshots.redis_store import EVENTS_PER_PARTITION
from tests.sse import open_stream

pytestmark = pytest.mark.integration
SECRET = "sse-test-secret-of-at-least-32-bytes!!"
PRICE = 2500


@dataclass
class Served:
    http: httpx.AsyncClient
    service: CartService
    clock: ManualClock
    store: RedisStore
    app: Any
    ingress: HttpIngress

    def token(self, sub: str, role: str = "user") -> str:
        return issue_token(SECRET, sub, role)

    def auth(self, sub: str, role: str = "user") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, role)}"}

    async def cart(self, who: str) -> str:
        r = await self.http.post("/v1/carts", headers=self.auth(who))
        assert r.status_code in (200, 201), r.text
        return str(r.json()["cart_id"])

    async def add(self, who: str, cart_id: str, product: str = "tee",
                  quantity: int = 1) -> dict[str, Any]:
        r = await self.http.post(f"/v1/carts/{cart_id}/items", headers=self.auth(who),
                                 json={"product_id": product, "quantity": quantity})
        assert r.status_code == 200, r.text
        return dict(r.json())


@asynccontextmanager
async def served(store: RedisStore, heartbeat: float = 15.0) -> AsyncIterator[Served]:
    clock = ManualClock()
    placement = LocalPlacement(store, clock, EngineSettings(), n_hosts=2)
    await placement.start()
    service = CartService(placement, store)
    await service.put_product("tee", {"name": "Tee", "category": "apparel",
                                      "price": {"amount": PRICE, "currency": "USD"},
                                      "stock": 100})
    await service.put_product("cap", {"name": "Cap", "category": "hats", "variants": [
        {"variant_id": "cap-1", "sku": "CAP-1", "stock": 5, "hold_ttl": 120}],
        "price": {"amount": 1500, "currency": "USD"}})
    app = create_app(GatewaySettings(auth_secret=SECRET, sse_heartbeat=heartbeat), service)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning",
                                           access_log=False))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), task.result()
        await asyncio.sleep(0.01)
    ingress = HttpIngress(server, task, app)
    port = sock.getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     timeout=httpx.Timeout(10.0, read=30.0)) as http:
            yield Served(http, service, clock, store, app, ingress)
    finally:
        await ingress.stop()
        await service.close()


async def test_a_stream_shows_the_view_after_an_add_from_another_connection(
        redis_store: RedisStore) -> None:
    async with served(redis_store) as s:
        cid = await s.cart("alice")
        async with open_stream(s.http, f"/v1/carts/{cid}/events", s.token("alice")) as st:
            assert st.response.status_code == 200
            assert st.response.headers["content-type"].startswith("text/event-stream")
            first = await st.event()
            assert first.event == "cart" and first.id and first.data["lines"] == []
            async with httpx.AsyncClient(base_url=str(s.http.base_url)) as other:
                r = await other.post(f"/v1/carts/{cid}/items", headers=s.auth("alice"),
                                     json={"product_id": "tee", "quantity": 2})
                assert r.status_code == 200
            ev, _ = await st.until("cart")
            assert ev.data["version"] == r.json()["version"]
            assert [ln["quantity"] for ln in ev.data["lines"]] == [2]
            assert ev.id and ev.id != first.id


async def test_an_admin_price_change_sends_price_changed(redis_store: RedisStore) -> None:
    async with served(redis_store) as s:
        cid = await s.cart("bob")
        line = (await s.add("bob", cid))["lines"][0]
        async with open_stream(s.http, f"/v1/carts/{cid}/events", s.token("bob")) as st:
            await st.until("cart")
            r = await s.http.put("/v1/admin/products/tee", headers=s.auth("ops", "admin"),
                                 json={"name": "Tee", "category": "apparel",
                                       "price": {"amount": 2900, "currency": "USD"}})
            assert r.status_code == 200, r.text
            ev, _ = await st.until("price_changed")
            assert ev.id is None  # derived from the view: not a resume point
            assert ev.data["cart_id"] == cid
            assert ev.data["lines"] == [{
                "line_id": line["line_id"], "product_id": "tee", "variant_id": "tee",
                "unit_price": {"amount": PRICE, "currency": "USD"},
                "current_unit_price": {"amount": 2900, "currency": "USD"}}]


async def test_a_reconnect_with_last_event_id_gets_exactly_what_it_missed(
        redis_store: RedisStore) -> None:
    async with served(redis_store) as s:
        await s.service.put_product("drop", {"name": "Drop", "category": "hats", "variants": [
            {"variant_id": "drop-1", "sku": "DROP-1", "stock": 0}],
            "price": {"amount": 900, "currency": "USD"}})
        cid = await s.cart("carol")
        async with open_stream(s.http, f"/v1/carts/{cid}/events", s.token("carol")) as st:
            last = (await st.event()).id
        assert last
        # Missed while away: two adds and a waitlist offer to the cart's customer.
        await s.add("carol", cid)
        r = await s.http.post("/v1/waitlist/drop-1", headers=s.auth("carol"),
                              json={"quantity": 1})
        assert r.status_code == 201, r.text
        await s.add("carol", cid)
        r = await s.http.post("/v1/admin/stock/drop-1", headers=s.auth("ops", "admin"),
                              json={"delta": 1})
        assert r.status_code == 200, r.text
        version = (await s.http.get(f"/v1/carts/{cid}", headers=s.auth("carol"))).json()[
            "version"]
        async with open_stream(s.http, f"/v1/carts/{cid}/events", s.token("carol"),
                               last_event_id=last) as st:
            got = [await st.event(), await st.event()]
            assert sorted(e.event for e in got) == ["cart", "offer"]
            view = next(e for e in got if e.event == "cart").data
            offer = next(e for e in got if e.event == "offer").data
            assert view["version"] == version and view["lines"][0]["quantity"] == 2
            assert offer["variant_id"] == "drop-1" and offer["quantity"] == 1
            # Nothing more was missed: the next event is the next change, not a repeat.
            await s.add("carol", cid)
            nxt = await st.event()
            assert nxt.event == "cart" and nxt.data["version"] == version + 1
            resume = nxt.id
        # Resuming from the newest id misses nothing and repeats nothing.
        async with open_stream(s.http, f"/v1/carts/{cid}/events", s.token("carol"),
                               last_event_id=resume) as st:
            await s.add("carol", cid)
            again = await st.event()
            assert again.event == "cart" and again.data["version"] == version + 2


async def test_an_id_older_than_the_outbox_keeps_gets_a_reset(redis_store: RedisStore) -> None:
    async with served(redis_store) as s:
        cid = await s.cart("dave")
        async with open_stream(s.http, f"/v1/carts/{cid}/events", s.token("dave")) as st:
            old = (await st.event()).id
        await s.add("dave", cid)
        # A busy partition: its stream is trimmed past the old id.
        key = redis_store.events_key(partition_of("cart", cid))
        pipe = redis_store.r.pipeline(transaction=False)
        for _ in range(EVENTS_PER_PARTITION + 1500):
            pipe.xadd(key, {"type": "order.created", "data": "{}"},
                      maxlen=EVENTS_PER_PARTITION, approximate=True)
        await pipe.execute()
        for last in (old, "not-an-id"):
            async with open_stream(s.http, f"/v1/carts/{cid}/events", s.token("dave"),
                                   last_event_id=last) as st:
                ev = await st.event()
                assert ev.event == "reset" and ev.id
                assert ev.data["cart_id"] == cid and len(ev.data["lines"]) == 1


async def test_another_users_token_is_refused_as_get_refuses_it(
        redis_store: RedisStore) -> None:
    async with served(redis_store) as s:
        cid = await s.cart("erin")
        get = await s.http.get(f"/v1/carts/{cid}", headers=s.auth("mallory"))
        r = await s.http.get(f"/v1/carts/{cid}/events", headers=s.auth("mallory"))
        assert r.status_code == get.status_code == 404
        assert r.json() == get.json() and r.json()["error"]["code"] == "cart_not_found"
        r = await s.http.get(f"/v1/carts/{cid}/events")
        assert r.status_code == 401
        hub = s.app.state.cart_events
        assert hub.stats()["streams"] == 0  # the refused streams left nothing behind


async def test_heartbeats_keep_an_idle_stream_alive(redis_store: RedisStore) -> None:
    async with served(redis_store, heartbeat=0.2) as s:
        cid = await s.cart("frank")
        async with open_stream(s.http, f"/v1/carts/{cid}/events", s.token("frank")) as st:
            await st.event()
            assert await st.next(comments=True) == "heartbeat"
            assert await st.next(comments=True) == "heartbeat"


async def test_hold_expiring_comes_a_minute_before_the_hold_lapses(
        redis_store: RedisStore) -> None:
    async with served(redis_store) as s:
        cid = await s.cart("gina")
        line = (await s.add("gina", cid, "cap"))["lines"][0]
        assert line["held"]
        async with open_stream(s.http, f"/v1/carts/{cid}/events", s.token("gina")) as st:
            await st.event()
            await s.clock.advance(59)  # 61 s left: not yet
            await s.add("gina", cid)   # an observable change after the timer's window
            ev, before = await st.until("cart", version=2)
            assert not [e for e in before if e.event == "hold_expiring"]
            await s.clock.advance(2)  # 59 s left
            ev, _ = await st.until("hold_expiring")
            assert ev.data["line_id"] == line["line_id"] and ev.data["variant_id"] == "cap-1"
            assert ev.data["expires_at"] == line["hold_expires_at"]


async def test_cart_expiring_comes_five_minutes_before_expiry_unless_activity_moved_it(
        redis_store: RedisStore) -> None:
    async with served(redis_store) as s:
        cid = await s.cart("hugo")
        async with open_stream(s.http, f"/v1/carts/{cid}/events", s.token("hugo")) as st:
            first = await st.event()
            await s.clock.advance(1400)
            moved = await s.add("hugo", cid)  # activity: expiry moves 1,400 s later
            await st.until("cart", version=moved["version"])
            await s.clock.advance(150)  # past the first expiry's warning time
            after = await s.add("hugo", cid, quantity=2)
            ev, before = await st.until("cart", version=after["version"])
            assert not [e for e in before if e.event == "cart_expiring"]
            assert ev.data["expires_at"] != first.data["expires_at"]
            await s.clock.advance(1800 - 300)  # five minutes before the moved expiry
            ev, _ = await st.until("cart_expiring")
            assert ev.data == {"cart_id": cid, "expires_at": after["expires_at"]}


async def test_streams_end_cleanly_when_the_server_stops(redis_store: RedisStore) -> None:
    async with served(redis_store) as s:
        cid = await s.cart("iris")
        async with open_stream(s.http, f"/v1/carts/{cid}/events", s.token("iris")) as st:
            await st.event()
            stopping = asyncio.ensure_future(s.ingress.stop())
            with pytest.raises(EOFError):
                await st.next(within=5)
            await asyncio.wait_for(stopping, 5)
            assert s.app.state.cart_events.stats()["streams"] == 0


async def test_a_slow_consumer_is_reset_instead_of_queueing_without_bound() -> None:
    store = MemoryStore()
    service = await CartService.in_process(store=store, clock=ManualClock())
    try:
        await service.put_product("tee", {"name": "Tee", "category": "apparel",
                                          "price": {"amount": PRICE, "currency": "USD"},
                                          "stock": 1000})
        cid = (await service.active_cart("jo"))["cart"]["cart_id"]
        hub = CartEventHub(service, service.placement.clock)
        sub = await hub.open(cid)
        await hub.start(sub, await service.get_cart("jo", cid), None)
        assert [i[0] for i in await hub.next(sub) or []] == ["cart"]
        sub.wake.clear()
        for _ in range(MAX_QUEUE + 1):  # one view queued per add, never read
            await service.add_item("jo", cid, product_id="tee", quantity=1)
            await sub.wake.wait()
            sub.wake.clear()
        assert sub.overflow and len(sub.queue) == 0  # dropped, not grown
        items = await hub.next(sub) or []
        assert [i[0] for i in items] == ["reset"]
        chunk = hub.render(sub, items[0])
        assert chunk is not None and b'"version":%d' % (MAX_QUEUE + 1) in chunk
        # A burst of changes while a view is being fetched costs one more view, not one each.
        fetched = hub.views_fetched
        await asyncio.gather(*(service.add_item("jo", cid, product_id="tee", quantity=1)
                               for _ in range(20)))
        while True:
            items = await hub.next(sub) or []
            if any(b'"version":%d' % (MAX_QUEUE + 21) in i[2] for i in items):
                break
        assert hub.views_fetched - fetched <= 3
        hub.close(sub)
        await hub.shutdown()
    finally:
        await service.close()
