"""Every error answers the API.md body ``{"error": {"code", "message", "details"}}``.

Domain errors map by category to a status; validation errors of FastAPI become 422 (400 for
a body that is not JSON); unknown routes 404; a dependency failure 503 with Retry-After.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from engine.errors import DomainError

log = logging.getLogger(__name__)

STATUS_BY_CATEGORY = {
    "validation": 422,
    "not_found": 404,
    "conflict": 409,
    "payment": 402,
    "unavailable": 503,
    "forbidden": 403,
    "unauthorized": 401,
}

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 413: "payload_too_large",
               415: "unsupported_media_type", 429: "rate_limited"}


class _ErrorJSON(JSONResponse):
    """An error body rendered by orjson (a sold-out flash sale answers most of its buyers
    with one), by the standard library for what orjson refuses (an integer past 64 bits)."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:
            return super().render(content)


def error_response(status: int, code: str, message: str,
                   details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return _ErrorJSON({"error": {"code": code, "message": message, "details": details or []}},
                      status_code=status, headers=headers)


def domain_error_response(e: DomainError) -> JSONResponse:
    status = STATUS_BY_CATEGORY.get(e.category, 409)
    headers = {"Retry-After": "1"} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(status, e.code, e.message, e.details, headers)


def _validation_details(exc: RequestValidationError) -> tuple[int, str, str, list[dict[str, Any]]]:
    details = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            why = (err.get("ctx") or {}).get("error") or err.get("msg")
            return 400, "malformed_json", "the request body is not valid JSON", [
                {"message": str(why)}]
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        details.append({"field": ".".join(loc), "message": str(err.get("msg")),
                        "type": str(err.get("type"))})
    return 422, "validation_failed", "the request is not valid", details


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the API.md body."""

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return domain_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message, details = _validation_details(exc)
        return error_response(status, code, message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed(app, request.scope)}
        return error_response(exc.status_code, code, message, headers=headers)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        if _from_dependency(exc):
            log.warning("dependency failure: %r", exc)
            return error_response(503, "dependency_unavailable",
                                  "a dependency (Redis or an actor host) is unavailable; retry",
                                  headers={"Retry-After": "1"})
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "the request failed unexpectedly")


def _allowed(app: FastAPI, scope: dict[str, Any]) -> str:
    """The ``Allow`` header of a 405 (RFC 9110 section 15.5.6): the methods of every route at
    the path (Starlette names only the first route's, and a path may have several)."""
    methods: set[str] = set()
    for route in app.router.routes:
        if getattr(route, "methods", None) and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods  # type: ignore[attr-defined]
    return ", ".join(sorted(methods))


def _from_dependency(exc: BaseException) -> bool:
    """A Redis or Ray failure (connection lost, actor died): a 503, not a 500.

    Judged by the exception's module so the gateway need not import Ray to recognise it.
    """
    return isinstance(exc, ConnectionError | TimeoutError) or \
        type(exc).__module__.split(".")[0] in ("redis", "ray")
