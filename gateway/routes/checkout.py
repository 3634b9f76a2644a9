"""Checkout and orders."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from gateway.deps import LeanRoute, documented, read_call
from gateway.routes._respond import ERRORS, JSONResponse, answers, operation_id
from gateway.schemas import CheckoutCreate, OrderPublic

#: Tags per route: the first names the operation id (``checkout-checkout``, ``orders-get``).
router = APIRouter(responses={**ERRORS, 402: ERRORS[409]}, route_class=LeanRoute,
                   generate_unique_id_function=operation_id)


@router.post("/v1/carts/{cart_id}/checkout", status_code=201, tags=["checkout"],
             responses=answers(OrderPublic, 201, 202),
             openapi_extra=documented(body=CheckoutCreate))
async def checkout(request: Request) -> JSONResponse:
    """Check out with an Idempotency-Key: reserve every line or none, pay, answer the Order
    (201; 202 when the payment waits for the customer: ``payment.next_action``)."""
    call = await read_call(request, "cart_id")
    caller, body = call.user, call.parse(CheckoutCreate)
    # Without a key the request cannot be retried safely; it still gets a one-off key.
    key = call.idem.key or f"auto-{uuid.uuid4().hex}"
    address = body.shipping_address.engine_dict() if body.shipping_address else None
    order = await call.service.checkout(
        caller.sub, call.ids[0], payment_token=body.payment.token, idempotency_key=key,
        accept_price_changes=body.accept_price_changes,
        shipping_address=address, fingerprint=call.idem.fingerprint,
        groups=list(caller.groups), if_match=call.if_match)
    # 202: the provider waits for the customer (3-D Secure); ``payment.next_action`` says
    # what to do, and a webhook settles the order.
    return JSONResponse(order, status_code=202 if order["status"] == "requires_action"
                        else 201)


@router.get("/v1/orders/{order_id}", tags=["orders"], name="get",
            responses=answers(OrderPublic),
            openapi_extra=documented(ids=("order_id",), headers=("auth",)))
async def get_order(request: Request) -> JSONResponse:
    """An order of the caller's."""
    call = await read_call(request, "order_id")
    return JSONResponse(await call.service.get_order(call.user.sub, call.ids[0]))
