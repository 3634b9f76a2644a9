"""Gateway and engine configuration, from flags and environment (pydantic-settings).

Every field can be set as ``CART_ENGINE_<NAME>`` (``CART_ENGINE_PORT=8080``); the Redis URL
also as ``REDIS_URL``. Times in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from actors.settings import EngineSettings

#: The development secret used when none is set: public, so never for production.
DEV_SECRET = "dev-secret-change-me-before-production"


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CART_ENGINE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    #: Actor hosts (Ray actors with the Ray placement, event-loop hosts in-process); by
    #: default one per CPU left after the gateway's own (on 2 cores: 1, which measured 956
    #: flash-sale checkouts/s on Ray against 763 with 2 hosts sharing the cores).
    hosts: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 2) - 1), ge=1,
                       le=256)
    placement: Literal["ray", "local"] = "ray"
    #: How message batches reach Ray hosts: ``tcp``, a direct channel per host
    #: (`actors.channel`), or ``ray``, Ray actor calls.
    ray_transport: Literal["tcp", "ray"] = "tcp"
    #: Redis to keep snapshots in; unset or unreachable: a bundled Redis in ``data_dir``.
    redis_url: str | None = Field(None, validation_alias=AliasChoices(
        "redis_url", "REDIS_URL", "CART_ENGINE_REDIS_URL"))
    #: Key prefix in Redis (several engines can share one Redis).
    redis_prefix: str = "ce"
    #: Join an existing Ray cluster (``host:port``); unset: start a local one.
    ray_address: str | None = None
    cart_ttl: float = Field(1800.0, gt=0)
    reservation_ttl: float = Field(600.0, gt=0)
    #: HS256 secret for JWTs, at least 32 bytes (RFC 7518 section 3.2: an HMAC key as long as
    #: the hash); unset: `DEV_SECRET`, and ``serve`` prints a warning.
    auth_secret: str = Field(DEV_SECRET, min_length=32)
    #: JSON catalog to load at start (API.md product bodies; variants may carry ``stock``).
    catalog: Path | None = None
    data_dir: Path = Path(".cart-engine")
    tax_rate_bp: int = Field(0, ge=0, le=10_000)
    #: Requests per client (token, else IP) over a moving window, e.g. "20/second"; unset: off.
    rate_limit: str | None = None
    #: Largest request body accepted, bytes.
    max_body_bytes: int = 64 * 1024
    #: Router micro-batching: longest wait (seconds) and largest batch.
    batch_delay: float = Field(0.001, ge=0, le=0.05)
    batch_size: int = Field(256, ge=1, le=10_000)
    #: Messages waiting per host beyond which requests get 503 + Retry-After.
    max_queue: int = Field(20_000, ge=1)
    guest_token_ttl: float = 30 * 24 * 3600.0
    #: Default guest-merge strategy: sum | larger | keep_user.
    merge_strategy: Literal["sum", "larger", "keep_user"] = "sum"
    #: Tax by destination, basis points: ``{"US-CA": 725, "DE": 1900}`` (JSON in the env).
    tax_rates: dict[str, int] = Field(default_factory=dict)
    prices_include_tax: bool = False
    log_level: str = "warning"
    #: Seconds an idle HTTP keep-alive connection stays open. Longer than any client's own
    #: idle expiry (httpx: 5 s, most load balancers: 60 s), so the server never closes a
    #: connection at the instant a client reuses it (the request would be lost in flight);
    #: 75 s as nginx's ``keepalive_timeout`` default.
    keep_alive: float = Field(75.0, gt=0)
    #: Payment provider ``module:attr`` (`actors.payments.load_provider`); unset: the test one.
    payment_provider: str | None = None
    #: ``immediate``: capture at checkout; ``on_shipment``: authorize, capture when shipped.
    payment_capture: Literal["immediate", "on_shipment"] = "immediate"
    #: HMAC secret of payment webhooks (`gateway.routes.payments`); unset: the auth secret.
    webhook_secret: str | None = Field(None, min_length=32)
    #: Seconds a webhook signature stays valid (replays after it are refused).
    webhook_tolerance: float = Field(300.0, gt=0)

    def engine(self) -> EngineSettings:
        return EngineSettings(cart_ttl=self.cart_ttl, reservation_ttl=self.reservation_ttl,
                              tax_rate_bp=self.tax_rate_bp, tax_rates=dict(self.tax_rates),
                              prices_include_tax=self.prices_include_tax,
                              payment_provider=self.payment_provider,
                              payment_capture=self.payment_capture)
