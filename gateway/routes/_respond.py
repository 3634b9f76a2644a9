"""Response helpers shared by the routes."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse as _StarletteJSON

from gateway.deps import etag
from gateway.schemas import ErrorPublic


class JSONResponse(_StarletteJSON):
    """JSON rendered by orjson (several times faster than the standard library's encoder)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorPublic} for s in (400, 401, 404, 409, 422, 503)}


def cart_response(view: dict[str, Any], status: int = 200) -> JSONResponse:
    """A cart answer with its ``ETag`` (the cart version, for If-Match)."""
    return JSONResponse(view, status_code=status, headers={"ETag": etag(view["version"])})
