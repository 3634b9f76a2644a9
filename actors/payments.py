"""Payment providers. The built-in test provider follows common card-sandbox tokens (API.md).

``tok_ok`` authorizes; ``tok_declined`` is declined (402); ``tok_error`` fails upstream (503);
``tok_slow`` authorizes after ``delay`` seconds. Authorizations are idempotent on the order id,
as a real provider's are on its idempotency key.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Protocol

from engine.errors import PaymentDeclined, Unavailable


class PaymentProvider(Protocol):
    async def authorize(self, order_id: str, amount: int, currency: str,
                        token: str) -> dict[str, Any]:
        """Authorize ``amount`` minor units; a dict describing the authorization.

        Raises:
            PaymentDeclined: the card was declined.
            Unavailable: the provider failed; nothing was charged.
        """
        ...

    async def void(self, order_id: str) -> None:
        """Cancel an authorization (compensation)."""
        ...


class TestPaymentProvider:
    """Sandbox provider: the token decides the outcome."""

    __test__ = False  # not a pytest test class

    def __init__(self, delay: float = 2.0) -> None:
        self.delay = delay
        self.authorized: dict[str, dict[str, Any]] = {}
        self.voided: set[str] = set()

    async def authorize(self, order_id: str, amount: int, currency: str,
                        token: str) -> dict[str, Any]:
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
        elif token != "tok_ok":
            raise PaymentDeclined("invalid_payment_token",
                                  "the payment token is not one the provider knows",
                                  [{"field": "payment.token"}])
        ref = "pay_" + hashlib.blake2b(order_id.encode(), digest_size=8).hexdigest()
        auth = {"provider": "test", "status": "authorized", "reference": ref,
                "amount": {"amount": amount, "currency": currency}}
        self.authorized[order_id] = auth
        return auth

    async def void(self, order_id: str) -> None:
        self.voided.add(order_id)
