"""Response helpers shared by the routes."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from gateway.deps import etag
from gateway.schemas import ErrorPublic

ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorPublic} for s in (400, 401, 404, 409, 422, 503)}


def cart_response(view: dict[str, Any], status: int = 200) -> JSONResponse:
    """A cart answer with its ``ETag`` (the cart version, for If-Match)."""
    return JSONResponse(view, status_code=status, headers={"ETag": etag(view["version"])})
