"""The FastAPI application: routes, error bodies, metrics, and a lifespan that boots the engine."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from actors import tracing
from actors.runtime import tune_gc
from actors.service import CartService
from gateway import cart_events, errors
from gateway.bootstrap import start_runtime, stop_runtime
from gateway.deps import BODY_SCHEMAS
from gateway.hot_lane import HotLane
from gateway.logging_setup import AccessLogMiddleware
from gateway.metrics import Metrics, MetricsMiddleware
from gateway.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from gateway.ratelimit import RateLimitMiddleware
from gateway.redis_url import redacted
from gateway.routes import (
    admin,
    analytics,
    carts,
    catalog,
    checkout,
    events,
    ops,
    orders,
    payments,
    saved,
    waitlist,
)
from gateway.routes._respond import operation_id
from gateway.settings import GatewaySettings

log = logging.getLogger("cart_engine")
#: FastAPI's built-in OpenTelemetry switched off (see `create_app`).
NO_NATIVE_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False,
                                        "operation_spans": False}


class CartApp(FastAPI):
    """The FastAPI app, with its cart and checkout routes served by a `HotLane` when it has
    one (``lane``, set by `create_app`); every other request, and every request without a
    lane, goes through the app's whole stack."""

    lane: HotLane | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        lane = self.lane
        if lane is not None and scope["type"] == "http":
            found = lane.match(scope)
            if found is not None:
                await lane.serve(*found, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: GatewaySettings | None = None,
               service: CartService | None = None) -> CartApp:
    """The app. With ``service`` (an embedded engine) the lifespan builds nothing itself."""
    settings = settings or GatewaySettings()
    if service is not None:
        service.serve_http()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service is not None:
            app.state.service = service
            try:
                yield
            finally:
                await cart_events.shutdown(app)  # streams end before the engine stops
            return
        rt = await start_runtime(settings)
        app.state.service = rt.service
        rt.service.serve_http()
        app.state.runtime = rt
        tune_gc()
        where = f"redis: {redacted(rt.redis_url)}" + (" (bundled)" if rt.bundled else "")
        print(f"cart-engine: {settings.placement} placement, {settings.hosts} hosts, {where}; "
              + "; ".join(rt.notes), flush=True)
        try:
            yield
        finally:
            await cart_events.shutdown(app)
            await stop_runtime(rt)
            print("cart-engine: stopped cleanly (writes drained, hosts stopped)", flush=True)

    app = CartApp(title="Cart engine", version="1.0",
                  description="Carts, pricing, stock reservations and idempotent checkout. "
                              "Money is integer minor units (ISO 4217).",
                  lifespan=lifespan, redirect_slashes=False,  # no redirect built from Host
                  generate_unique_id_function=operation_id,
                  # Spans come from `actors.tracing` (its own provider, when configured);
                  # FastAPI's native OpenTelemetry would look up the global providers on
                  # every request to find them unset: about 10% of a cart request's CPU in
                  # process (`python -m loadtest.gateway_bench --lines 6`).
                  telemetry=NO_NATIVE_TELEMETRY)
    app.state.settings = settings
    app.state.metrics = Metrics()
    errors.install(app)
    # The routes go straight into the app's route list: `include_router` would wrap each
    # router in a nested matcher that costs about 6% of the CPU of a cart request here.
    # Routes are matched in order, one by one: the cart routes come first, FastAPI's own
    # (the OpenAPI document and its viewers, whose paths no other route shares) last.
    own = list(app.router.routes)
    app.router.routes.clear()
    for r in (carts.router, checkout.router, saved.router, catalog.router, admin.router,
              ops.router, orders.router, payments.router, waitlist.router, events.router):
        app.router.routes.extend(r.routes)
    app.router.routes.extend(analytics.router.routes)  # GET /v1/admin/analytics
    app.router.routes.extend(own)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.rate_limit:
        app.add_middleware(RateLimitMiddleware, rate=settings.rate_limit,
                           secret=settings.auth_secret)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(AccessLogMiddleware)  # request id bound for everything inside
    tracing.instrument_app(app)  # a span per request when OTEL_EXPORTER_OTLP_ENDPOINT is set
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.trusted_proxies:  # outermost: the client address every layer sees
        app.add_middleware(ProxyHeadersMiddleware,
                           trusted_hosts=[str(net) for net in settings.trusted_proxies])
    if not settings.rate_limit and not settings.trusted_proxies:  # layers it lacks
        app.lane = HotLane(app, app.state.metrics, settings.max_body_bytes)
    _document_hot_route_bodies(app)
    return app


def _document_hot_route_bodies(app: FastAPI) -> None:
    """Add the request-body schemas of the hot routes (`gateway.deps.documented`) to the
    OpenAPI components, which FastAPI only fills from the parameters routes declare."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            components = build().setdefault("components", {})
            components.setdefault("schemas", {}).update(BODY_SCHEMAS)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
