"""A customer's orders: list them, cancel one before it ships."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.deps import CurrentCaller, Idem, ResourceId, Service
from gateway.routes._respond import ERRORS, JSONResponse, answers, operation_id
from gateway.schemas import OrderPage, OrderPublic

router = APIRouter(prefix="/v1/orders", tags=["orders"], responses=ERRORS,
                   generate_unique_id_function=operation_id)


@router.get("", name="list", responses=answers(OrderPage))
async def list_orders(service: Service, caller: CurrentCaller,
                      cursor: Annotated[str | None, Query(max_length=128)] = None,
                      limit: Annotated[int, Query(ge=1, le=100)] = 20) -> JSONResponse:
    """The caller's orders, newest first: ``{items: [Order], next_cursor}``."""
    return JSONResponse(await service.list_orders(caller.sub, cursor, limit))


@router.post("/{order_id}/cancel", name="cancel", responses=answers(OrderPublic))
async def cancel_order(service: Service, caller: CurrentCaller, idem: Idem,
                       order_id: ResourceId) -> JSONResponse:
    """Cancel before shipment (the owner, or an admin token): void or refund the payment,
    restock, emit ``order.cancelled`` once."""
    who = "@admin" if caller.is_admin else caller.sub
    return JSONResponse(await service.cancel_order(who, order_id, idem.key, idem.fingerprint))
