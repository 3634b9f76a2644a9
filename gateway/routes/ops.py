"""Operations: liveness, readiness, metrics."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from gateway.metrics import CONTENT_TYPE_LATEST
from gateway.routes._respond import operation_id
from gateway.schemas import ErrorPublic, Health, Readiness

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"], generate_unique_id_function=operation_id)


def _unavailable(code: str, message: str, details: list[Any]) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}},
                        status_code=503, headers={"Retry-After": "1"})


@router.get("/healthz", responses={200: {"model": Health}, 503: {"model": ErrorPublic}})
async def healthz(request: Request) -> JSONResponse:
    """This process can serve: an ingress host holds its directory lease, a gateway sees a
    live host. 503 ``not_serving`` otherwise (a supervisor should restart it)."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        return _unavailable("not_serving", "the engine is starting", [])
    health = service.placement.health()
    if not health["serving"]:
        return _unavailable("not_serving", "this process cannot reach any engine host",
                            [{"hosts": health["hosts"]}])
    return JSONResponse({"status": "ok", "hosts": len(health["hosts"])})


@router.get("/readyz",
            responses={200: {"model": Readiness}, 503: {"model": ErrorPublic}})
async def readyz(request: Request) -> JSONResponse:
    """Redis and the actor hosts answer, and every partition has a live owner; else 503
    ``not_ready`` with the failing checks and the ``unowned`` partitions."""
    service = request.app.state.service
    checks: dict[str, Any] = {}
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
    unowned = service.placement.health()["unowned"]
    checks["partitions"] = "ok" if not unowned else f"{len(unowned)} without a live owner"
    ready = all(v == "ok" for v in checks.values())
    if ready:
        return JSONResponse({"status": "ready", "checks": checks})
    return _unavailable("not_ready", "a dependency is down or partitions have no owner",
                        [{**checks, "unowned": unowned}])


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
