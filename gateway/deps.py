"""What routes read from a request: the service, the caller, idempotency and If-Match.

Two ways in, with the same rules and errors:

- FastAPI dependencies (the ``Annotated`` aliases at the end), for the cold routes (catalog,
  admin, saved for later, operations);
- `read_call`, one plain function that reads all of it in one pass, for the hot cart and
  checkout routes. FastAPI's dependency solver introspects every parameter again on every
  request; measured in-process on the reference machine it was about 45% of the gateway's CPU
  per cart request, more than the engine's own work. The hot routes declare only ``request``
  and document their headers and bodies through `documented` instead; their router's
  `LeanRoute` calls them with the request alone.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from actors.service import CartService
from engine.errors import Forbidden, ValidationFailed
from engine.limits import MAX_ID_LENGTH
from gateway.auth import AuthError, Caller, decode_token
from gateway.logging_setup import CALLER_KIND
from gateway.settings import GatewaySettings
from gateway.strictjson import JSON_VALUE_SCHEMA, refuse_non_finite

#: An id's pattern as the OpenAPI document gives it (ECMA-262). Checked here with
#: ``fullmatch`` of `_ID` (Python's ``$`` would also match before a trailing newline).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]*")
#: Largest cart version an If-Match may name: a signed 64-bit integer, what the codec holds.
MAX_VERSION = 2**63 - 1
#: What an Idempotency-Key may be (checked by `_idempotency`), for the OpenAPI document.
IDEMPOTENCY_KEY_LIMITS: dict[str, Any] = {"minLength": 1, "maxLength": 255}
M = TypeVar("M", bound=BaseModel)


async def get_service(request: Request) -> CartService:
    return request.app.state.service  # type: ignore[no-any-return]


def _bearer(request: Request, authorization: str | None) -> Caller | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("invalid_token", "use 'Authorization: Bearer <token>'")
    caller = decode_token(request.app.state.settings.auth_secret.get_secret_value(),
                          token.strip())
    request.scope[CALLER_KIND] = caller.role  # for the access log: user, admin or guest
    return caller


# Dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a
# thread pool, a thread hand-off per dependency per request.


def _required(caller: Caller | None) -> Caller:
    """``caller``; raises AuthError ``missing_token`` (401) when there is none."""
    if caller is None:
        raise AuthError("missing_token", "this route needs 'Authorization: Bearer <token>'")
    return caller


async def current_caller(request: Request,
                         authorization: Annotated[str | None, Header()] = None) -> Caller:
    return _required(_bearer(request, authorization))


async def admin_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    if not caller.is_admin:
        raise Forbidden("admin_only", "this route needs an admin token")
    return caller


@dataclass(frozen=True, slots=True)
class Idempotency:
    """The client's Idempotency-Key (None if it sent none) and a digest of its request
    (None without a key: nothing is recorded to compare it with)."""

    key: str | None
    fingerprint: str | None


async def idempotency(request: Request,
                      idempotency_key: Annotated[str | None, Header(
                          json_schema_extra=IDEMPOTENCY_KEY_LIMITS)] = None) -> Idempotency:
    """Reads the header and, when there is one, fingerprints method, path and body
    (SHA-256)."""
    return _idempotency(request, idempotency_key, await request.body())


def _idempotency(request: Request, key: str | None, body: bytes) -> Idempotency:
    if key is None:
        return NO_KEY
    if not 0 < len(key) <= 255:
        raise ValidationFailed("invalid_idempotency_key",
                               "Idempotency-Key is 1..255 characters")
    path: str = request.scope["path"]
    digest = hashlib.sha256(request.method.encode() + b" " + path.encode() + b"\n"
                            + body).hexdigest()[:32]
    return Idempotency(key, digest)


#: A request without an Idempotency-Key: the same answer for all of them.
NO_KEY = Idempotency(None, None)

_ETAG = re.compile(r'\s*(?:W/)?"?v?(\d{1,19})"?\s*')


def _version(if_match: str | None) -> int | None:
    """The cart version an ``If-Match`` header asks for (RFC 7232 entity tag, quoted or not):
    an integer in 0..`MAX_VERSION`; None for absent or ``*``.

    Raises ValidationFailed ``invalid_if_match`` (422) for anything else.
    """
    if if_match is None or if_match.strip() == "*":
        return None
    m = _ETAG.fullmatch(if_match)
    if not m or int(m.group(1)) > MAX_VERSION:
        raise ValidationFailed("invalid_if_match",
                               f'If-Match must be an ETag such as "3": a cart version in '
                               f"0..{MAX_VERSION}")
    return int(m.group(1))


def etag(version: int) -> str:
    return f'"{version}"'


Service = Annotated[CartService, Depends(get_service)]
CurrentCaller = Annotated[Caller, Depends(current_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
Idem = Annotated[Idempotency, Depends(idempotency)]
ResourceId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]


# --------------------------------------------------------------------------- hot routes


class LeanRoute(APIRoute):
    """A route whose endpoint takes the ``Request`` alone and returns a ``Response``.

    FastAPI's documented extension point (a custom ``APIRoute.get_route_handler``): the
    endpoint is called directly, with no dependency solving, body parsing or response
    serialization by FastAPI; it reads its request with `read_call`. The route keeps its
    OpenAPI entry (through ``openapi_extra``, see `documented`) and the app's error handlers.

    Its ASGI app (``Route.app``, which Starlette's ``Route.handle`` calls) is `_lean`, not
    FastAPI's ``request_response``: that wrapper's two exit stacks serve dependencies with
    ``yield`` and uploaded files, which these routes have none of, and its per-route
    exception handling repeats the app's ``ExceptionMiddleware`` (the same handlers, which
    read only the request's scope) one layer out. No route-level body limit is set on these
    routes: the app's `gateway.middleware.BodyLimitMiddleware` is the limit.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = _lean(self.endpoint)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint  # type: ignore[return-value]


def _lean(endpoint: Callable[[Request], Coroutine[Any, Any, Response]]) -> Any:
    """The ASGI app of a `LeanRoute`: the endpoint's response, sent; what it raises goes to
    the app's exception handlers. Raises TypeError for an endpoint that is not ``async``
    (FastAPI would run it in a thread pool; a hot route must not block the loop either)."""
    if not inspect.iscoroutinefunction(endpoint):
        raise TypeError(f"a LeanRoute endpoint must be 'async def': {endpoint!r}")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        response = await endpoint(Request(scope, receive, send))
        await response(scope, receive, send)

    return app


@dataclass(frozen=True, slots=True)
class Call:
    """Everything a hot route reads from its request, validated (see `read_call`).

    ``ids`` are the path ids the route named; ``body`` is the raw request body (bytes).
    """

    service: CartService
    settings: GatewaySettings
    caller: Caller | None
    idem: Idempotency
    if_match: int | None
    ids: tuple[str, ...]
    body: bytes

    @property
    def user(self) -> Caller:
        """The authenticated caller. Raises AuthError ``missing_token`` (401) without one."""
        return _required(self.caller)

    def parse(self, model: type[M]) -> M:
        """The body as ``model``. Raises RequestValidationError (422; 400 if not JSON, or if
        it holds ``NaN`` / ``Infinity``, see `gateway.strictjson`)."""
        try:
            refuse_non_finite(self.body)
            return model.model_validate_json(self.body or b"null")
        except ValidationError as e:
            raise RequestValidationError(_located("body", e.errors())) from None
        except json.JSONDecodeError as e:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body",),
                                           "msg": e.msg, "input": None}]) from None

    def parse_optional(self, model: type[M]) -> M | None:
        """The body as ``model``, or None when the request has no body."""
        return self.parse(model) if self.body else None


async def read_call(request: Request, *ids: str) -> Call:
    """Read and check, in this order, the caller (optional here), the path ids ``ids``
    (1..MAX_ID_LENGTH characters of ``ID_PATTERN``), the Idempotency-Key and If-Match; and
    read the service and the body.

    Raises AuthError (401) for a bad token, ValidationFailed (422) for a bad
    Idempotency-Key or If-Match, RequestValidationError (422) for a bad path id.
    """
    headers = _call_headers(request.scope)
    caller = _bearer(request, headers.get(b"authorization"))
    params = request.path_params
    values = tuple(params[name] for name in ids)
    bad = [{"type": "string_pattern_mismatch", "loc": ("path", name),
            "msg": f"must be 1..{MAX_ID_LENGTH} characters matching '{ID_PATTERN}'",
            "input": value}
           for name, value in zip(ids, values, strict=True)
           if not (len(value) <= MAX_ID_LENGTH and _ID.fullmatch(value))]
    if bad:
        raise RequestValidationError(bad)
    body = await request.body()
    state = request.app.state
    return Call(state.service, state.settings, caller,
                _idempotency(request, headers.get(b"idempotency-key"), body),
                _version(headers.get(b"if-match")), values, body)


#: The request headers `read_call` reads.
_CALL_HEADERS = frozenset({b"authorization", b"idempotency-key", b"if-match"})


def _call_headers(scope: dict[str, Any]) -> dict[bytes, str]:
    """The first value of each of `_CALL_HEADERS` the request has (as ``request.headers``
    gives it: latin-1), read in one pass over the ASGI headers (lower-case names)."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _CALL_HEADERS and name not in found:
            found[name] = value.decode("latin-1")
    return found


def _located(where: str, errors: list[Any]) -> list[dict[str, Any]]:
    return [{**err, "loc": (where, *err.get("loc", ()))} for err in errors]


_HEADER_DOCS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "auth": ("Authorization", "'Bearer <token>' (RFC 6750): a user, admin or guest JWT",
             {"type": "string"}),
    "idem": ("Idempotency-Key", "1..255 characters; a retry with the same key answers the "
                                "first result", {"type": "string", **IDEMPOTENCY_KEY_LIMITS}),
    "if_match": ("If-Match", "the cart's ETag (RFC 7232), quoted or not: a version in "
                             f"0..{MAX_VERSION}; a stale version is a 409",
                 {"type": "string", "pattern": r'^(\*|(W/)?"?v?[0-9]{1,18}"?)$'}),
}
_QUERY_DOCS = {
    "country": ("destination country for the tax and shipping estimate, ISO 3166-1 alpha-2",
                {"type": "string", "pattern": "^[A-Za-z]{2}$"}),
    "region": ("destination subdivision, ISO 3166-2 (CA with a country, or US-CA)",
               {"type": "string", "pattern": "^([A-Za-z]{2}-)?[A-Za-z0-9]{1,3}$"}),
}
#: Request-body schemas named by `documented` (and ``JsonValue``, see `gateway.strictjson`),
#: merged into the OpenAPI components.
BODY_SCHEMAS: dict[str, Any] = {"JsonValue": JSON_VALUE_SCHEMA}


def documented(*, ids: tuple[str, ...] = ("cart_id",), body: type[BaseModel] | None = None,
               body_required: bool = True,
               headers: tuple[str, ...] = ("auth", "idem", "if_match"),
               query: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``openapi_extra`` of a hot route: its path ids, headers, query parameters and
    request body, which a route declaring only ``request`` would otherwise leave out of the
    OpenAPI document."""
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
                    "pattern": ID_PATTERN}} for name in ids]
    for key in query:
        description, schema = _QUERY_DOCS[key]
        parameters.append({"name": key, "in": "query", "required": False,
                           "description": description, "schema": schema})
    for key in headers:
        name, description, schema = _HEADER_DOCS[key]
        parameters.append({"name": name, "in": "header", "required": False,
                           "description": description, "schema": schema})
    extra: dict[str, Any] = {"parameters": parameters}
    if body is not None:
        schema = body.model_json_schema(ref_template="#/components/schemas/{model}")
        BODY_SCHEMAS.update(schema.pop("$defs", {}))
        BODY_SCHEMAS[body.__name__] = schema
        extra["requestBody"] = {"required": body_required, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}}
    return extra
