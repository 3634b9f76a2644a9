"""Request dependencies: the service, the caller, idempotency and If-Match (Annotated aliases)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Path, Request

from actors.service import CartService
from engine.errors import Forbidden, ValidationFailed
from engine.limits import MAX_ID_LENGTH
from gateway.auth import AuthError, Caller, decode_token
from gateway.settings import GatewaySettings

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$"


async def get_service(request: Request) -> CartService:
    return request.app.state.service  # type: ignore[no-any-return]


async def get_settings(request: Request) -> GatewaySettings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _bearer(request: Request, authorization: str | None) -> Caller | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("invalid_token", "use 'Authorization: Bearer <token>'")
    return decode_token(request.app.state.settings.auth_secret, token.strip())


# Dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a
# thread pool, a thread hand-off per dependency per request.


async def optional_caller(request: Request,
                    authorization: Annotated[str | None, Header()] = None) -> Caller | None:
    return _bearer(request, authorization)


async def current_caller(request: Request,
                   authorization: Annotated[str | None, Header()] = None) -> Caller:
    caller = _bearer(request, authorization)
    if caller is None:
        raise AuthError("missing_token", "this route needs 'Authorization: Bearer <token>'")
    return caller


async def admin_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    if not caller.is_admin:
        raise Forbidden("admin_only", "this route needs an admin token")
    return caller


@dataclass(frozen=True, slots=True)
class Idempotency:
    """The client's Idempotency-Key (None if it sent none) and a digest of its request."""

    key: str | None
    fingerprint: str


async def idempotency(request: Request,
                      idempotency_key: Annotated[str | None, Header()] = None) -> Idempotency:
    """Reads the header and fingerprints method, path and body (SHA-256)."""
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 255:
        raise ValidationFailed("invalid_idempotency_key",
                               "Idempotency-Key is 1..255 characters")
    body = await request.body()
    digest = hashlib.sha256(request.method.encode() + b" " + request.url.path.encode() + b"\n"
                            + body).hexdigest()[:32]
    return Idempotency(idempotency_key, digest)


_ETAG = re.compile(r'^\s*(?:W/)?"?v?(\d+)"?\s*$')


async def if_match(if_match: Annotated[str | None, Header()] = None) -> int | None:
    """The cart version an ``If-Match`` header asks for (RFC 7232); None for absent or ``*``."""
    if if_match is None or if_match.strip() == "*":
        return None
    m = _ETAG.match(if_match)
    if not m:
        raise ValidationFailed("invalid_if_match", 'If-Match must be an ETag such as "3"')
    return int(m.group(1))


def etag(version: int) -> str:
    return f'"{version}"'


Service = Annotated[CartService, Depends(get_service)]
Settings = Annotated[GatewaySettings, Depends(get_settings)]
CurrentCaller = Annotated[Caller, Depends(current_caller)]
OptionalCaller = Annotated[Caller | None, Depends(optional_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
Idem = Annotated[Idempotency, Depends(idempotency)]
IfMatch = Annotated[int | None, Depends(if_match)]
CartId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
LineId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
ResourceId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
