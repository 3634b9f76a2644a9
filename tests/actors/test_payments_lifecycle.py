"""Payments and the order lifecycle across actors (both placements where a host matters)."""

from __future__ import annotations

from typing import Any

import pytest

from actors.payments import TestPaymentProvider, load_provider
from actors.service import CartService
from actors.settings import EngineSettings
from engine.errors import Conflict
from tests.actors.harness import Harness, product

pytestmark = pytest.mark.actors


async def _cart(h: Harness, owner: str) -> str:
    assert h.service is not None
    return str((await h.service.active_cart(owner))["cart"]["cart_id"])


async def test_an_unconfirmed_3ds_payment_gives_everything_back_at_its_deadline(
        harness: Harness, svc: CartService) -> None:
    body = product("p", stock=3)
    body["variants"][0]["purchase_limit"] = 1
    await svc.put_product("p", body)
    cid = await _cart(harness, "ann")
    await svc.add_item("ann", cid, product_id="p", quantity=1)
    order = await svc.checkout("ann", cid, payment_token="tok_3ds", idempotency_key="a")
    assert order["status"] == "requires_action"
    assert (await svc.stock("p-v0"))["reserved"] == 1
    await harness.advance(601)  # the reservation TTL passes without a webhook
    assert (await svc.get_order("ann", order["order_id"]))["status"] == "cancelled"
    assert (await svc.stock("p-v0"))["available"] == 3
    late = await svc.confirm_payment(order["order_id"], True, "evt_late")
    assert late["changed"] is False and late["order"]["status"] == "cancelled"
    again = await _cart(harness, "ann")  # the limit unit came back too
    await svc.add_item("ann", again, product_id="p", quantity=1)


async def test_a_paid_order_that_shipped_cannot_be_cancelled_but_can_be_refunded(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", stock=3))
    cid = await _cart(harness, "bo")
    await svc.add_item("bo", cid, product_id="p", quantity=2)
    order = await svc.checkout("bo", cid, payment_token="tok_ok", idempotency_key="b")
    await svc.ship_order(order["order_id"])
    with pytest.raises(Conflict) as e:
        await svc.cancel_order("bo", order["order_id"])
    assert e.value.code == "order_shipped"
    out = await svc.refund_order(order["order_id"], amount=500, restock=False)
    assert out["payment"]["refunded"]["amount"] == 500
    assert (await svc.stock("p-v0"))["on_hand"] == 1


class RecordingProvider(TestPaymentProvider):
    """The test provider, remembering every call and its idempotency key."""

    def __init__(self) -> None:
        super().__init__(delay=0)
        self.calls: list[tuple[str, Any]] = []

    async def authorize(self, order_id: str, amount: int, currency: str, token: str,
                        idempotency_key: str | None = None) -> dict[str, Any]:
        self.calls.append(("authorize", idempotency_key))
        return await super().authorize(order_id, amount, currency, token, idempotency_key)

    async def capture(self, reference: str, amount: int, currency: str,
                      idempotency_key: str) -> dict[str, Any]:
        self.calls.append(("capture", (amount, idempotency_key)))
        return await super().capture(reference, amount, currency, idempotency_key)

    async def refund(self, reference: str, amount: int, currency: str,
                     idempotency_key: str) -> dict[str, Any]:
        self.calls.append(("refund", (amount, idempotency_key)))
        return await super().refund(reference, amount, currency, idempotency_key)


async def test_an_embedder_chooses_the_provider_and_capture_waits_for_shipment() -> None:
    provider = RecordingProvider()
    svc = await CartService.in_process(
        settings=EngineSettings(payment_capture="on_shipment"), payment_provider=provider)
    try:
        await svc.put_product("p", product("p", price=2500, stock=3))
        cid = (await svc.active_cart("cy"))["cart"]["cart_id"]
        await svc.add_item("cy", cid, product_id="p", quantity=2)
        order = await svc.checkout("cy", cid, payment_token="tok_ok", idempotency_key="c")
        assert [c[0] for c in provider.calls] == ["authorize"]
        assert provider.calls[0][1] == f"{order['order_id']}:authorize"
        await svc.ship_order(order["order_id"])
        await svc.ship_order(order["order_id"])  # once
        assert [c for c in provider.calls if c[0] == "capture"] == [
            ("capture", (5000, f"{order['order_id']}:capture"))]
        await svc.refund_order(order["order_id"])
        assert provider.calls[-1][0] == "refund" and provider.calls[-1][1][0] == 5000
    finally:
        await svc.close()


def test_a_provider_is_named_module_colon_attr() -> None:
    settings = EngineSettings()
    assert isinstance(load_provider(None, settings), TestPaymentProvider)
    assert isinstance(load_provider("actors.payments:TestPaymentProvider", settings),
                      TestPaymentProvider)
    with pytest.raises(ValueError):
        load_provider("actors.payments.TestPaymentProvider", settings)
    with pytest.raises(AttributeError):
        load_provider("actors.payments:Nothing", settings)
