"""Identity: HS256 JWTs (RFC 7519, via PyJWT) with ``sub``, ``exp`` and ``role``.

A user token has ``sub`` = the user id; an admin token adds ``role: "admin"``; a guest token
(minted by ``POST /v1/carts`` without a token) has ``role: "guest"``.
"""

from __future__ import annotations

import functools
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from jwt.algorithms import HMACAlgorithm

from actors.user import GUEST_PREFIX
from engine.errors import DomainError

ALGORITHM = "HS256"


class AuthError(DomainError):
    """No token, or one that is malformed, forged or expired (HTTP 401)."""

    category = "unauthorized"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: ``sub`` (user id), ``role`` and ``groups`` (membership tiers, from the
    token's ``groups`` claim, for group-only promotions)."""

    sub: str
    role: str = "user"
    groups: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_guest(self) -> bool:
        return self.role == "guest"


def issue_token(secret: str, sub: str, role: str = "user", ttl: float = 3600.0,
                groups: list[str] | None = None) -> str:
    """A signed token for ``sub`` valid for ``ttl`` seconds."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": sub, "role": role, "iat": now, "exp": now + int(ttl)}
    if groups:
        claims["groups"] = list(groups)
    token = _SIGNER.encode(orjson.dumps(claims), secret, algorithm=ALGORITHM)
    if len(_issued) >= MAX_ISSUED:  # only a shortcut: a token not found here is verified
        _issued.clear()
    try:
        _issued[secret, token] = _checked(claims)
    except AuthError:
        pass  # a token its own checks refuse: decode_token will say so
    return token


def new_guest_id() -> str:
    """A new guest's id: 80 random bits, never derived from anything the client sent (a
    guest id computed from an Idempotency-Key would hand the guest's cart to whoever replays
    that key)."""
    return GUEST_PREFIX + secrets.token_hex(10)


def decode_token(secret: str, token: str) -> Caller:
    """The caller a bearer token names. Raises AuthError ``invalid_token`` / ``token_expired``.

    A token verified once is remembered (bounded LRU) until its ``exp``: the signature check
    is the same every time, the expiry is checked on every use. A token this process signed
    (`issue_token`) is known without a check.
    """
    hit = _issued.get((secret, token)) or _verified(secret, token)
    if hit[1] <= time.time():
        raise AuthError("token_expired", "the token has expired")
    return hit[0]


#: Tokens this process signed (the secret, the token) -> what verifying them would answer:
#: a guest's first request after ``POST /v1/carts`` skips a signature check (its cart lives on
#: the host that minted it). At most `MAX_ISSUED` are kept; past it the map starts over.
_issued: dict[tuple[str, str], tuple[Caller, float]] = {}
MAX_ISSUED = 65_536


class _CheckedOnceHMAC(HMACAlgorithm):
    """HS256 whose key checks run once per secret, not once per token signed.

    Both are PyJWT's own, remembered per secret: `prepare_key` and `check_key_length` (RFC
    7518 section 3.2's minimum length; its warning is still given for every token).

    PyJWT's `HMACAlgorithm.prepare_key` refuses secrets that look like asymmetric keys or
    JSON Web Keys (PEM, SSH and DER probes and a JSON parse, each an exception on an ordinary
    secret) on every call. In the flash sale, where every buyer is a new guest, they were
    3.4% of a host's py-spy samples (2026-11-30); signing a guest's token in process took
    18.7 us with ``jwt.encode`` and 10.0-11.0 us here. A secret's answer never changes, so it is
    kept (for the few secrets a process signs with: the configured one, a rotated one). A
    secret it refuses is refused every time, as before.
    """

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)

    @functools.lru_cache(maxsize=8)  # noqa: B019 - one instance for the process
    def prepare_key(self, key: str | bytes) -> bytes:
        return super().prepare_key(key)

    @functools.lru_cache(maxsize=8)  # noqa: B019 - the same; a short key still warns each time
    def check_key_length(self, key: bytes) -> str | None:
        return super().check_key_length(key)


#: Signs the tokens this service issues (`issue_token`): PyJWT's JWS with `_CheckedOnceHMAC`
#: as HS256, registered through its public `register_algorithm`. The claims are rendered
#: compact, as `jwt.encode` does; verification (`decode_token`) is PyJWT's own.
_SIGNER = jwt.PyJWS(algorithms=[])
_SIGNER.register_algorithm(ALGORITHM, _CheckedOnceHMAC())


@functools.lru_cache(maxsize=65536)
def _verified(secret: str, token: str) -> tuple[Caller, float]:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError as e:
        raise AuthError("token_expired", "the token has expired") from e
    except jwt.PyJWTError as e:
        raise AuthError("invalid_token", f"the token is not valid: {e}") from e
    return _checked(claims)


def _checked(claims: dict[str, Any]) -> tuple[Caller, float]:
    """The caller a signed token's ``claims`` name and its expiry (epoch seconds). Raises
    AuthError ``invalid_token`` for a bad subject or groups claim."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 0 < len(sub) <= 128 or sub.startswith("@"):
        raise AuthError("invalid_token", "the token's subject is not a valid user id")
    role = claims.get("role", "user")
    groups = claims.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) and len(g) <= 64
                                               for g in groups) or len(groups) > 32:
        raise AuthError("invalid_token", "the token's groups claim is not a list of names")
    caller = Caller(sub=sub, role=role if role in ("user", "admin", "guest") else "user",
                    groups=tuple(sorted(groups)))
    return caller, float(claims["exp"])
