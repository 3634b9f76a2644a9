"""Payment webhooks: the provider's asynchronous verdict (3-D Secure, bank redirects).

``POST /v1/payments/webhook`` is signed as Stripe signs its webhooks: the header
``Payment-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is HMAC-SHA256 (RFC 2104) with
the webhook secret over ``"{t}.{raw body}"``. A bad or missing signature is a 400
``invalid_signature``; a timestamp outside the tolerance window (``--webhook-tolerance``,
300 s as Stripe's default) is a 400 ``signature_expired``, so a captured request cannot be
replayed later. Inside the window a repeated delivery is harmless: the order moves once
(`actors.order.OrderActor.confirm_payment`) and the answer says ``changed: false``.

Body: ``{"id": "evt_...", "type": "payment.succeeded" | "payment.failed",
"data": {"order_id": "...", "reason"?: "..."}}``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import ValidationFailed
from gateway.deps import Service
from gateway.routes._respond import ERRORS, JSONResponse, answers, operation_id
from gateway.schemas import WebhookReceipt

router = APIRouter(prefix="/v1/payments", tags=["payments"], responses=ERRORS,
                   generate_unique_id_function=operation_id)
SIGNATURE_HEADER = "Payment-Signature"


class WebhookData(BaseModel):
    model_config = ConfigDict(extra="allow")
    order_id: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(None, max_length=500)


class WebhookEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1, max_length=255)
    type: Literal["payment.succeeded", "payment.failed"]
    data: WebhookData


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Payment-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str | None, now: float,
           tolerance: float) -> None:
    """Check a ``Payment-Signature`` header (any one ``v1`` may match, for secret rotation).

    Raises ValidationFailed ``invalid_signature`` / ``signature_expired`` (400 here).
    """
    parts: dict[str, list[str]] = {}
    for item in (header or "").split(","):
        k, _, v = item.strip().partition("=")
        parts.setdefault(k, []).append(v)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        raise ValidationFailed("invalid_signature",
                               f"{SIGNATURE_HEADER} needs t=...,v1=...") from None
    expected = sign(secret, body, t).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
        raise ValidationFailed("invalid_signature", "the signature does not match the body")
    if abs(now - t) > tolerance:
        raise ValidationFailed("signature_expired",
                               f"the signature is older than {tolerance:g} seconds",
                               [{"timestamp": t}])


@router.post("/webhook", name="webhook", responses=answers(WebhookReceipt))
async def payment_webhook(request: Request, service: Service,
                          payment_signature: Annotated[str | None, Header()] = None
                          ) -> JSONResponse:
    """A signed provider event: moves a ``requires_action`` order to paid or
    payment_failed, exactly once however often it is delivered. A signature that is missing,
    does not match or is past the tolerance is 401 ``invalid_signature`` /
    ``signature_expired``."""
    settings = request.app.state.settings
    body = await request.body()
    try:
        secret = (settings.webhook_secret or settings.auth_secret).get_secret_value()
        verify(secret, body, payment_signature, time.time(), settings.webhook_tolerance)
    except ValidationFailed as e:  # the sender did not prove the secret: 401, as a bad token
        return JSONResponse({"error": {"code": e.code, "message": e.message,
                                       "details": e.details}}, status_code=401)
    try:
        evt = WebhookEvent.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError) as e:
        return JSONResponse({"error": {"code": "invalid_event", "message": str(e)[:300],
                                       "details": []}}, status_code=400)
    out: dict[str, Any] = await service.confirm_payment(
        evt.data.order_id, evt.type == "payment.succeeded", evt.id, evt.data.reason)
    return JSONResponse({"received": True, "changed": out["changed"],
                         "order": out["order"]})
