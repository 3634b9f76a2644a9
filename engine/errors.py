"""Typed domain errors.

Each carries a stable snake_case ``code`` (the API.md error code), a human ``message`` and
``details`` (a list of dicts). The gateway maps the class to an HTTP status; the engine knows
nothing of HTTP. Raising any of these from a command guarantees the command changed nothing.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error the engine raises on purpose."""

    #: HTTP-neutral category; the gateway maps it to a status code.
    category = "conflict"

    def __init__(self, code: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []

    def to_dict(self) -> dict[str, Any]:
        """``{"code", "message", "details", "category"}``: plain data that crosses processes."""
        return {
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "category": self.category,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DomainError:
        """Rebuild the error (of the right class) from :meth:`to_dict` output."""
        klass = _BY_CATEGORY.get(data.get("category", ""), DomainError)
        return klass(data["code"], data["message"], data.get("details") or [])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class ValidationFailed(DomainError):
    """The request is well formed but its values are not acceptable (HTTP 422)."""

    category = "validation"


class NotFound(DomainError):
    """No such product, variant, line, cart or order, or not the caller's (HTTP 404)."""

    category = "not_found"


class Conflict(DomainError):
    """The request clashes with current state: stock, version, status, price (HTTP 409)."""

    category = "conflict"


class PaymentDeclined(DomainError):
    """The payment provider declined the payment (HTTP 402)."""

    category = "payment"


class Unavailable(DomainError):
    """A dependency failed or is overloaded; retry later (HTTP 503)."""

    category = "unavailable"


class Forbidden(DomainError):
    """The caller may not do this (HTTP 403)."""

    category = "forbidden"


_BY_CATEGORY: dict[str, type[DomainError]] = {
    k.category: k
    for k in (ValidationFailed, NotFound, Conflict, PaymentDeclined, Unavailable, Forbidden)
}
