"""Payment providers. The built-in test provider follows common card-sandbox tokens (API.md).

A provider authorizes at checkout, captures (at once or on shipment, by setting), voids an
authorization that was not captured and refunds what was captured, in whole or in part.
Amounts are integer minor units of an ISO 4217 currency. Every call carries an idempotency
key, as real providers' APIs take one (Stripe's ``Idempotency-Key`` header): a retried call
with the same key has its first effect only.

Test tokens: ``tok_ok`` authorizes; ``tok_declined`` is declined (402); ``tok_error`` fails
upstream (503); ``tok_slow`` authorizes after ``delay`` seconds; ``tok_3ds`` needs the
customer's confirmation (3-D Secure): the authorization answers ``requires_action`` with a
``next_action``, and the outcome arrives later as a signed webhook (`actors.webhooks`).

Choose a provider with ``--payment-provider module:attr`` (``attr`` a provider class or
factory called with no arguments, or a provider instance) or
``CartService.in_process(payment_provider=...)``.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
from typing import Any, Protocol

from engine.errors import Conflict, PaymentDeclined, Unavailable


class PaymentProvider(Protocol):
    async def authorize(self, order_id: str, amount: int, currency: str, token: str,
                        idempotency_key: str | None = None) -> dict[str, Any]:
        """Authorize ``amount`` minor units: ``{provider, status, reference, amount}``;
        ``status`` ``authorized``, or ``requires_action`` with ``next_action`` (the outcome
        then comes by webhook).

        Raises:
            PaymentDeclined: the card was declined.
            Unavailable: the provider failed; nothing was charged.
        """
        ...

    async def capture(self, reference: str, amount: int, currency: str,
                      idempotency_key: str) -> dict[str, Any]:
        """Capture ``amount`` of an authorization: ``{status: "captured", captured}``."""
        ...

    async def void(self, reference: str, idempotency_key: str | None = None) -> None:
        """Cancel an authorization that was not captured (compensation)."""
        ...

    async def refund(self, reference: str, amount: int, currency: str,
                     idempotency_key: str) -> dict[str, Any]:
        """Give back ``amount`` of what was captured: ``{refund_id, amount}``."""
        ...


class TestPaymentProvider:
    """Sandbox provider: the token decides the outcome. State lives in memory."""

    __test__ = False  # not a pytest test class

    def __init__(self, delay: float = 2.0) -> None:
        self.delay = delay
        self.authorized: dict[str, dict[str, Any]] = {}
        self.voided: set[str] = set()
        self.captured: dict[str, int] = {}
        self.refunded: dict[str, int] = {}
        self._done: dict[str, Any] = {}  # idempotency key -> first answer

    @staticmethod
    def reference_of(order_id: str) -> str:
        return "pay_" + hashlib.blake2b(order_id.encode(), digest_size=8).hexdigest()

    async def authorize(self, order_id: str, amount: int, currency: str, token: str,
                        idempotency_key: str | None = None) -> dict[str, Any]:
        if order_id in self.authorized:
            return self.authorized[order_id]
        if token == "tok_declined":
            raise PaymentDeclined("payment_declined", "the card was declined",
                                  [{"reason": "card_declined"}])
        if token == "tok_error":
            raise Unavailable("payment_provider_error",
                              "the payment provider failed; nothing was charged")
        if token == "tok_slow":
            await asyncio.sleep(self.delay)
        elif token not in ("tok_ok", "tok_3ds"):
            raise PaymentDeclined("invalid_payment_token",
                                  "the payment token is not one the provider knows",
                                  [{"field": "payment.token"}])
        ref = self.reference_of(order_id)
        auth: dict[str, Any] = {"provider": "test", "status": "authorized", "reference": ref,
                                "amount": {"amount": amount, "currency": currency}}
        if token == "tok_3ds":
            auth["status"] = "requires_action"
            auth["next_action"] = {"type": "redirect_to_url",
                                   "url": f"https://sandbox.invalid/3ds/{ref}"}
        self.authorized[order_id] = auth
        return auth

    async def capture(self, reference: str, amount: int, currency: str,
                      idempotency_key: str) -> dict[str, Any]:
        if idempotency_key in self._done:
            return self._done[idempotency_key]  # type: ignore[no-any-return]
        if reference in self.voided:
            raise Conflict("payment_voided", "the authorization was voided")
        self.captured[reference] = self.captured.get(reference, 0) + amount
        out = {"status": "captured", "captured": {"amount": amount, "currency": currency}}
        self._done[idempotency_key] = out
        return out

    async def void(self, reference: str, idempotency_key: str | None = None) -> None:
        self.voided.add(reference)

    async def refund(self, reference: str, amount: int, currency: str,
                     idempotency_key: str) -> dict[str, Any]:
        # The order checks the amount against what it captured (`Order.check_refund`): this
        # sandbox keeps no state across restarts, so it does not check again.
        if idempotency_key in self._done:
            return self._done[idempotency_key]  # type: ignore[no-any-return]
        self.refunded[reference] = self.refunded.get(reference, 0) + amount
        out = {"refund_id": "re_" + hashlib.blake2b(idempotency_key.encode(),
                                                     digest_size=8).hexdigest(),
               "amount": {"amount": amount, "currency": currency}}
        self._done[idempotency_key] = out
        return out


def load_provider(spec: str | None, settings: Any) -> Any:
    """The provider named ``module:attr`` (a class or factory called with no arguments, or
    an instance); None or empty: the built-in `TestPaymentProvider`.

    Raises ValueError for a spec that is not ``module:attr``; ImportError / AttributeError
    when it names nothing importable.
    """
    if not spec:
        return TestPaymentProvider(delay=settings.slow_payment_delay)
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"payment provider {spec!r} is not 'module:attr'")
    target = getattr(importlib.import_module(module), attr)
    if isinstance(target, type) or not hasattr(target, "authorize"):
        return target()  # a class or a factory
    return target
