"""Admin: sales analytics from the outbox (`engine.analytics`, `snapshots.analytics_store`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from actors.service import CartService
from engine.analytics import parse_time
from engine.timefmt import rfc3339
from gateway.deps import AdminCaller, Service
from gateway.routes._respond import ERRORS, JSONResponse, answers, operation_id
from gateway.schemas import MoneyPublic
from snapshots.analytics_store import FigureSource, analytics_for, analytics_report

#: ``from`` and ``to`` are RFC 3339 date-times (parsed by `engine.analytics.parse_time`).
DATE_TIME: dict[str, Any] = {"format": "date-time"}

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses={**ERRORS, 403: ERRORS[401]},
                   generate_unique_id_function=operation_id)


class SalesFigures(BaseModel):
    """One currency's sales (minor units of ``currency``)."""

    currency: str
    orders: int = Field(description="orders paid")
    orders_cancelled: int = Field(description="paid orders cancelled")
    revenue: int = Field(description="gross: the paid orders' totals")
    refunded: int = Field(description="refunds and cancelled payments (voided or refunded)")
    net_revenue: int = Field(description="revenue minus refunded")
    average_order_value: int | None = Field(description="revenue / orders, rounded half up; "
                                                        "null with no order")
    discount_given: int = Field(description="order discounts of the paid orders")


class ConversionFigures(BaseModel):
    carts_created: int
    carts_checked_out: int
    rate: float | None = Field(description="checked out / created; null with none created")


class AbandonmentFigures(BaseModel):
    carts: int = Field(description="carts expired with lines")
    units: int
    value: list[MoneyPublic] = Field(description="their lines at captured prices, per currency")


class SellerByUnits(BaseModel):
    product_id: str
    variant_id: str
    units: int


class SellerByRevenue(BaseModel):
    product_id: str
    variant_id: str
    revenue: MoneyPublic


class TopSellers(BaseModel):
    by_units: list[SellerByUnits]
    by_revenue: list[SellerByRevenue] = Field(description="the top ones of each currency")


class PromotionFigures(BaseModel):
    promotion_id: str
    code: str | None = Field(description="null for an automatic promotion")
    uses: int = Field(description="paid orders it applied to")
    discount: list[MoneyPublic]


class BucketFigures(BaseModel):
    start: str
    end: str
    orders: int = Field(description="orders paid, all currencies")
    sales: list[SalesFigures]


class AnalyticsPublic(BaseModel):
    """``GET /v1/admin/analytics``: figures of ``[from, to)`` rounded to whole minutes."""

    start: str
    end: str
    bucket: Literal["minute", "hour", "day"]
    sales: list[SalesFigures]
    conversion: ConversionFigures
    abandonment: AbandonmentFigures
    top_sellers: TopSellers
    promotions: list[PromotionFigures]
    series: list[BucketFigures]


def _source(request: Request, service: CartService) -> FigureSource:
    state = request.app.state
    source: FigureSource | None = getattr(state, "analytics_source", None)
    if source is None:
        source = analytics_for(getattr(service, "store", None))
        state.analytics_source = source
    return source


@router.get("/analytics", responses=answers(AnalyticsPublic))
async def get_analytics(
        request: Request, service: Service, _: AdminCaller,
        start: Annotated[str, Query(alias="from", max_length=64, json_schema_extra=DATE_TIME,
                                    description="RFC 3339, inclusive (rounded down to a "
                                                "minute)")],
        end: Annotated[str, Query(alias="to", max_length=64, json_schema_extra=DATE_TIME,
                                  description="RFC 3339, exclusive (rounded down to a "
                                              "minute)")],
        bucket: Literal["minute", "hour", "day"] = "hour",
        top: Annotated[int, Query(ge=1, le=100)] = 10) -> JSONResponse:
    """Sales figures of a time range from the outbox events: orders and revenue per
    bucket, top sellers, conversion, abandonment, average order value, promotions.
    422 ``invalid_time``, ``invalid_range``, ``range_too_large`` (over 1500 buckets);
    503 ``analytics_unavailable`` on a store without analytics."""
    lo, hi = parse_time(start, "from"), parse_time(end, "to")
    source = _source(request, service)
    out = await analytics_report(source, lo, hi, bucket, top)
    out["start"], out["end"] = rfc3339(out["start"]), rfc3339(out["end"])
    for b in out["series"]:
        b["start"], b["end"] = rfc3339(b["start"]), rfc3339(b["end"])
    return JSONResponse(out)
