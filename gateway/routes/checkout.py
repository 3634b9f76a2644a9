"""Checkout and orders."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from gateway.deps import CartId, CurrentCaller, Idem, IfMatch, ResourceId, Service
from gateway.routes._respond import ERRORS, JSONResponse
from gateway.schemas import CheckoutCreate, OrderPublic

router = APIRouter(tags=["checkout"], responses={**ERRORS, 402: ERRORS[409]})


@router.post("/v1/carts/{cart_id}/checkout", status_code=201,
             responses={201: {"model": OrderPublic}})
async def checkout(service: Service, caller: CurrentCaller, cart_id: CartId,
                   body: CheckoutCreate, idem: Idem, version: IfMatch) -> JSONResponse:
    """Check out with an Idempotency-Key: reserve every line or none, pay, answer the Order."""
    # Without a key the request cannot be retried safely; it still gets a one-off key.
    key = idem.key or f"auto-{uuid.uuid4().hex}"
    order = await service.checkout(
        caller.sub, cart_id, payment_token=body.payment.token, idempotency_key=key,
        accept_price_changes=body.accept_price_changes,
        shipping_address=body.shipping_address, fingerprint=idem.fingerprint,
        groups=list(caller.groups), if_match=version)
    return JSONResponse(order, status_code=201)


@router.get("/v1/orders/{order_id}", responses={200: {"model": OrderPublic}})
async def get_order(service: Service, caller: CurrentCaller, order_id: ResourceId) -> JSONResponse:
    """An order of the caller's."""
    return JSONResponse(await service.get_order(caller.sub, order_id))
