"""OpenTelemetry: one checkout is one trace (request, actor turns, Redis commit, payment);
nothing is traced when tracing is off."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from actors import tracing
from actors.service import CartService
from gateway.app import create_app
from gateway.settings import GatewaySettings
from snapshots.redis_store import RedisStore
from tests.integration.inprocess import SECRET, bearer, gateway

pytestmark = pytest.mark.integration


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    exporter = InMemorySpanExporter()
    assert tracing.setup_tracing(exporter)
    yield exporter
    tracing.shutdown()


async def client_over(store: RedisStore) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with gateway(store=store) as (http, service):
        yield http, service


async def test_one_checkout_is_one_trace_from_request_to_payment(
        spans: InMemorySpanExporter, redis_store: RedisStore) -> None:
    async for http, service in client_over(redis_store):
        await service.put_product("lamp", {"name": "Lamp", "stock": 3,
                                           "price": {"amount": 4500, "currency": "USD"}})
        cart = (await http.post("/v1/carts", headers=bearer("ann"))).json()
        r = await http.post(f"/v1/carts/{cart['cart_id']}/items", headers=bearer("ann"),
                            json={"product_id": "lamp", "quantity": 2})
        assert r.status_code == 200
        spans.clear()
        r = await http.post(f"/v1/carts/{cart['cart_id']}/checkout",
                            headers={**bearer("ann"), "Idempotency-Key": "k-1"},
                            json={"payment": {"token": "tok_ok"}})
        assert r.status_code == 201 and r.json()["status"] == "paid"
    done = spans.get_finished_spans()
    assert len({s.context.trace_id for s in done}) == 1  # one trace, nothing outside it
    by_name: dict[str, list[Any]] = {}
    for s in done:
        by_name.setdefault(s.name, []).append(s)
    server = [s for s in done if s.parent is None]
    assert len(server) == 1 and server[0].name == "POST /v1/carts/{cart_id}/checkout"
    assert server[0].attributes["http.status_code"] == 201
    assert server[0].attributes["http.route"] == "/v1/carts/{cart_id}/checkout"
    checkout = by_name["turn cart.checkout"][0]
    assert checkout.parent.span_id == server[0].context.span_id
    assert checkout.attributes["cart_engine.actor.key"] == cart["cart_id"]
    ids = {s.context.span_id: s for s in done}

    def under(s: Any, ancestor: Any) -> bool:
        while s.parent is not None:
            s = ids[s.parent.span_id]
            if s is ancestor:
                return True
        return False

    for name in ("turn inv.reserve", "turn order.create", "payment.authorize",
                 "turn inv.commit", "turn order.mark_paid"):
        assert name in by_name, sorted(by_name)
        assert all(under(s, checkout) for s in by_name[name]), name
    pay = by_name["payment.authorize"][0]
    assert pay.attributes["amount"] == 9000 and pay.attributes["currency"] == "USD"
    commits = by_name["redis.commit"]
    assert commits and all(under(s, server[0]) for s in commits)
    assert sum(s.attributes["writes"] for s in commits) >= 3  # cart, inventory, order


async def test_a_refused_turn_carries_its_error_code_and_is_no_failure(
        spans: InMemorySpanExporter, redis_store: RedisStore) -> None:
    async for http, service in client_over(redis_store):
        await service.put_product("vase", {"name": "Vase", "stock": 1,
                                           "price": {"amount": 2000, "currency": "USD"}})
        cart = (await http.post("/v1/carts", headers=bearer("cy"))).json()
        await http.post(f"/v1/carts/{cart['cart_id']}/items", headers=bearer("cy"),
                        json={"product_id": "vase", "quantity": 1})
        await service.set_stock("vase", set=0)
        spans.clear()
        r = await http.post(f"/v1/carts/{cart['cart_id']}/checkout",
                            headers={**bearer("cy"), "Idempotency-Key": "k-2"},
                            json={"payment": {"token": "tok_ok"}})
        assert r.status_code == 409
    done = {s.name: s for s in spans.get_finished_spans()}
    reserve = done["turn inv.reserve"]
    assert reserve.attributes["cart_engine.error"] == "out_of_stock"
    assert reserve.status.is_unset
    assert done["turn cart.checkout"].attributes["cart_engine.error"] == "out_of_stock"
    assert "payment.authorize" not in done


async def test_nothing_is_traced_when_tracing_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert not tracing.setup_tracing() and not tracing.enabled()
    assert tracing.turn("cart", "c1", "view") is tracing.span("x")  # the shared no-op
    service = await CartService.in_process()
    app = create_app(GatewaySettings(auth_secret=SECRET), service)
    assert not any("OpenTelemetry" in type(m.cls).__name__ + str(m.cls)
                   for m in app.user_middleware)
    await service.close()


def test_the_endpoint_variable_turns_tracing_on_and_spans_arrive_by_otlp(
        monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
            received.append((self.path,
                             self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT",
                       f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "cart-engine-test")
    try:
        assert tracing.setup_tracing() and tracing.enabled()
        with tracing.span("probe", n=1) as s:
            assert s.is_recording()
        tracing.shutdown()  # flushes the batch: the export is answered before it returns
    finally:
        server.shutdown()
        thread.join()
    assert not tracing.enabled()
    assert [path for path, _ in received] == ["/v1/traces"]
    request = ExportTraceServiceRequest.FromString(received[0][1])
    (resource,) = request.resource_spans
    names = [sp.name for scope in resource.scope_spans for sp in scope.spans]
    assert names == ["probe"]
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "cart-engine-test"
