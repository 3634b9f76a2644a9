"""Response helpers shared by the routes."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse as _StarletteJSON
from fastapi.routing import APIRoute
from pydantic import BaseModel

from actors.views import rendered
from gateway.deps import etag
from gateway.schemas import ErrorPublic


class JSONResponse(_StarletteJSON):
    """JSON rendered by orjson (several times faster than the standard library's encoder)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


#: The error answers every route may give, all with the API.md error body: 413 (a body over
#: ``--max-body-bytes``, `gateway.middleware`), 429 (``--rate-limit``) and 500 come from
#: layers around the routes.
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorPublic} for s in (400, 401, 404, 409, 413, 422, 429, 500, 503)}


def answers(model: type[BaseModel], *statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entry naming ``model`` as the answer of each of ``statuses``
    (default 200): OpenAPI only, the route still renders its own JSON."""
    return {s: {"model": model} for s in statuses or (200,)}


def operation_id(route: APIRoute) -> str:
    """A route's OpenAPI ``operationId`` (FastAPI's ``generate_unique_id_function``, given to
    every router and the app): its first tag and its name, ``carts-get``, ``carts-add_item``.
    Short and stable, so generated clients get readable function names; FastAPI's default
    spells out path and method (``get_cart_v1_carts__cart_id__get``)."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


class CartResponse(JSONResponse):
    """A cart answer with its ``ETag`` (the cart version, for If-Match, RFC 7232): the
    headers Starlette's ``init_headers`` would give it (ETag, Content-Length, Content-Type),
    built directly, since every cart request answers one; the body is the rendering the
    cart actor made in its turn when the view carries one (`actors.views.CartView`)."""

    def __init__(self, view: dict[str, Any], status_code: int = 200) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body = rendered(view) or orjson.dumps(view)
        self.raw_headers = [(b"etag", etag(view["version"]).encode()),
                            (b"content-length", str(len(body)).encode()),
                            (b"content-type", b"application/json")]


def cart_response(view: dict[str, Any], status: int = 200) -> JSONResponse:
    """A cart answer with its ``ETag`` (`CartResponse`)."""
    return CartResponse(view, status)
