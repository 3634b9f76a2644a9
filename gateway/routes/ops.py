"""Operations: liveness, readiness, metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from gateway.metrics import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> JSONResponse:
    """The process is alive."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Redis and the actor hosts (Ray) answer."""
    service = request.app.state.service
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(service.store.ping(), 2)
        checks["redis"] = "ok"
    except Exception as e:  # noqa: BLE001 - report, do not crash the probe
        checks["redis"] = f"down: {e}"
    try:
        await asyncio.wait_for(service.placement.stats(), 5)
        checks["hosts"] = "ok"
    except Exception as e:  # noqa: BLE001
        checks["hosts"] = f"down: {e}"
    ready = all(v == "ok" for v in checks.values())
    if ready:
        return JSONResponse({"status": "ready", "checks": checks})
    return JSONResponse({"error": {"code": "not_ready", "message": "a dependency is down",
                                   "details": [checks]}}, status_code=503,
                        headers={"Retry-After": "1"})


@router.get("/metrics", response_class=PlainTextResponse, responses={200: {
    "description": "Prometheus text exposition format 0.0.4",
    "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text format: HTTP requests and latency, and the engine's hosts and routers
    (`gateway.metrics.EngineCollector`)."""
    metrics = request.app.state.metrics
    service = getattr(request.app.state, "service", None)
    if service is not None:
        try:
            await asyncio.wait_for(metrics.refresh(service.placement), 5)
        except Exception as e:  # noqa: BLE001 - a scrape shows what it has; /readyz reports
            log.warning("engine figures unavailable for /metrics: %s", e)
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
