"""Admin: products, stock, promotions, orders and the event outbox (admin token required)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from gateway.deps import AdminCaller, Idem, ResourceId, Service
from gateway.routes._respond import ERRORS, JSONResponse, answers, operation_id
from gateway.schemas import (
    ClusterPublic,
    ClusterScale,
    EventPage,
    OrderPublic,
    ProductPublic,
    PromotionPublic,
    RefundCreate,
    StockChange,
    StockLevel,
)
from gateway.strictjson import JSON_OBJECT_SCHEMA, StrictJSONRoute

#: A JSON object body whose numbers are what `gateway.strictjson` accepts (the product and
#: promotion rules themselves are the engine's: `engine.catalog`, `engine.promotions`).
JsonObject = Annotated[dict[str, Any], Body(json_schema_extra=JSON_OBJECT_SCHEMA)]

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses={**ERRORS, 403: ERRORS[401]},
                   route_class=StrictJSONRoute, generate_unique_id_function=operation_id)


@router.put("/products/{product_id}", responses=answers(ProductPublic))
async def put_product(service: Service, _: AdminCaller, product_id: ResourceId,
                      body: JsonObject) -> JSONResponse:
    """Create or replace a product (API.md body; variants may carry ``stock``)."""
    return JSONResponse(await service.put_product(product_id, body))


@router.post("/stock/{variant_id}", responses=answers(StockLevel))
async def change_stock(service: Service, _: AdminCaller, idem: Idem, variant_id: ResourceId,
                       body: StockChange) -> JSONResponse:
    """``{set: n}`` or ``{delta: n}``: answers on_hand, reserved, available, sold (units).
    With an Idempotency-Key a retry answers the first reply and changes nothing."""
    return JSONResponse(await service.set_stock_once(variant_id, set=body.set,
                                                     delta=body.delta, request_id=idem.key,
                                                     fingerprint=idem.fingerprint))


@router.put("/promotions/{promotion_id}", responses=answers(PromotionPublic))
async def put_promotion(service: Service, _: AdminCaller, promotion_id: ResourceId,
                        body: JsonObject) -> JSONResponse:
    """Create or replace a promotion or coupon code."""
    return JSONResponse(await service.put_promotion(promotion_id, body))


@router.get("/promotions/{promotion_id}", responses=answers(PromotionPublic))
async def get_promotion(service: Service, _: AdminCaller,
                        promotion_id: ResourceId) -> JSONResponse:
    """A promotion with its ``uses`` ({used, held}; for limited promotions)."""
    return JSONResponse(await service.get_promotion(promotion_id))


@router.delete("/promotions/{promotion_id}", status_code=204)
async def delete_promotion(service: Service, _: AdminCaller,
                           promotion_id: ResourceId) -> Response:
    """Remove a promotion: no longer applied, its code unknown."""
    await service.delete_promotion(promotion_id)
    return Response(status_code=204)


@router.post("/orders/{order_id}/ship", responses=answers(OrderPublic))
async def ship_order(service: Service, _: AdminCaller, idem: Idem,
                     order_id: ResourceId) -> JSONResponse:
    """Mark a paid order shipped (emits order.shipped once; capture on shipment)."""
    return JSONResponse(await service.ship_order(order_id, idem.key, idem.fingerprint))


@router.post("/orders/{order_id}/refund", responses=answers(OrderPublic))
async def refund_order(service: Service, _: AdminCaller, idem: Idem, order_id: ResourceId,
                       body: Annotated[RefundCreate | None, Body()] = None) -> JSONResponse:
    """Refund ``amount`` minor units (default: all that is left of the capture); emits
    ``order.refunded``. A full refund restocks by default (``restock``)."""
    body = body or RefundCreate()
    return JSONResponse(await service.refund_order(order_id, body.amount, body.restock,
                                                   idem.key, idem.fingerprint))


@router.get("/cluster", responses=answers(ClusterPublic))
async def get_cluster(service: Service, _: AdminCaller) -> JSONResponse:
    """The cluster: live hosts (partitions, process id, resident actors), unowned
    partitions, hand-offs under way, re-homings and hand-offs so far, the host count asked
    for."""
    cluster = await service.placement.cluster()
    for s in await service.placement.stats():
        row = cluster["hosts"].get(s["host"])
        if row is not None:
            row.update(pid=s.get("pid"), node=s.get("node"), actors=s.get("actors"))
    return JSONResponse(cluster)


@router.put("/cluster", status_code=202, responses=answers(ClusterPublic, 202))
async def scale_cluster(service: Service, _: AdminCaller, body: ClusterScale) -> JSONResponse:
    """``{hosts: n}``: add or retire hosts while serving (partitions move by hand-off);
    202 with the cluster as it is now. 409 ``not_elastic`` for the in-process placement."""
    await service.placement.scale(body.hosts)
    return JSONResponse(await service.placement.cluster(), status_code=202)


@router.get("/events", responses=answers(EventPage))
async def recent_events(service: Service, _: AdminCaller,
                        count: Annotated[int, Query(ge=1, le=10_000)] = 100) -> JSONResponse:
    """The most recent outbox events, oldest first."""
    return JSONResponse({"items": await service.events(count)})
