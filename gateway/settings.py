"""Gateway and engine configuration, from flags and environment (pydantic-settings).

Every field can be set as ``CART_ENGINE_<NAME>`` (``CART_ENGINE_PORT=8080``); the Redis URL
also as ``REDIS_URL``. Times in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from actors.settings import EngineSettings

#: The development secret used when none is set: public, so never for production.
DEV_SECRET = "dev-secret-change-me-before-production"
#: Shortest HS256 secret: as long as the hash (RFC 7518 section 3.2).
MIN_SECRET_BYTES = 32


class GatewaySettings(BaseSettings):
    #: ``hide_input_in_errors``: a refused value (a short secret, a URL with a password) is
    #: never echoed in the validation error.
    model_config = SettingsConfigDict(env_prefix="CART_ENGINE_", extra="ignore",
                                      hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    #: Actor hosts at start (Ray actors with the Ray placement, event-loop hosts
    #: in-process); by default one per CPU, since each host also serves HTTP (``ingress``).
    hosts: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1, le=256)
    placement: Literal["ray", "local"] = "ray"
    #: Where HTTP enters with the Ray placement: ``hosts``, every host serves the API on the
    #: shared port and runs its own actors' requests in its process (`gateway.ingress`);
    #: ``gateway``, one gateway process forwards every request to the hosts.
    ingress: Literal["hosts", "gateway"] = "hosts"
    #: Redis to keep snapshots in; unset: a bundled Redis in ``data_dir``. Set but unreachable
    #: (or refusing its password): a startup error (`gateway.redis_url.resolve_redis`). A
    #: secret (the URL may hold a password): shown only through `gateway.redis_url.redacted`.
    redis_url: SecretStr | None = Field(None, validation_alias=AliasChoices(
        "redis_url", "REDIS_URL", "CART_ENGINE_REDIS_URL"))
    #: Key prefix in Redis (several engines can share one Redis).
    redis_prefix: str = "ce"
    #: Join an existing Ray cluster (``host:port``); unset: start a local one.
    ray_address: str | None = None
    cart_ttl: float = Field(1800.0, gt=0)
    reservation_ttl: float = Field(600.0, gt=0)
    #: HS256 secret for JWTs, at least 32 bytes (RFC 7518 section 3.2: an HMAC key as long as
    #: the hash); unset: `DEV_SECRET`, and ``serve`` prints a warning.
    #: A secret: printed and logged as ``**********`` (`auth_secret.get_secret_value()` to use).
    auth_secret: SecretStr = SecretStr(DEV_SECRET)
    #: JSON catalog to load at start (API.md product bodies; variants may carry ``stock``).
    catalog: Path | None = None
    data_dir: Path = Path(".cart-engine")
    tax_rate_bp: int = Field(0, ge=0, le=10_000)
    #: Requests per client (its verified identity, else its address) over a moving window,
    #: e.g. "20/second"; unset: off (`gateway.ratelimit`).
    rate_limit: str | None = None
    #: Reverse proxies (IP addresses or CIDR networks) whose ``X-Forwarded-For`` names the
    #: client address; from any other peer the header is ignored. Default: none.
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    #: Largest request body accepted, bytes.
    max_body_bytes: int = 64 * 1024
    #: Hosts of one machine pass each other a connection whose next request is for a cart
    #: the other owns, instead of forwarding the request (`gateway.handoff`).
    handoff: bool = True
    #: Each host of a Ray placement serving HTTP pins itself to a core of its machine that
    #: no other host there holds, while one is free (`actors.machine.claim_core`).
    pin_cores: bool = True
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
    #: Seconds between heartbeats (SSE comments) on an idle cart event stream: under the
    #: idle timeouts of proxies (nginx 60 s, most load balancers 60 s).
    sse_heartbeat: float = Field(15.0, gt=0)
    #: Payment provider ``module:attr`` (`actors.payments.load_provider`); unset: the test one.
    payment_provider: str | None = None
    #: ``immediate``: capture at checkout; ``on_shipment``: authorize, capture when shipped.
    payment_capture: Literal["immediate", "on_shipment"] = "immediate"
    #: HMAC secret of payment webhooks (`gateway.routes.payments`), 32 bytes or more;
    #: unset: the auth secret. A secret: never printed.
    webhook_secret: SecretStr | None = Field(None, min_length=32)
    #: Seconds a webhook signature stays valid (replays after it are refused).
    webhook_tolerance: float = Field(300.0, gt=0)
    #: Run the sales analytics consumer (`snapshots.analytics_store`) in ``serve``
    #: (``CART_ENGINE_ANALYTICS=false``: not in this process; one per cluster is enough).
    analytics: bool = True

    @field_validator("auth_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr) -> SecretStr:
        if len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the auth secret must be at least {MIN_SECRET_BYTES} bytes "
                             "(RFC 7518 section 3.2)")
        return secret

    def engine(self) -> EngineSettings:
        return EngineSettings(cart_ttl=self.cart_ttl, reservation_ttl=self.reservation_ttl,
                              tax_rate_bp=self.tax_rate_bp, tax_rates=dict(self.tax_rates),
                              prices_include_tax=self.prices_include_tax,
                              payment_provider=self.payment_provider,
                              payment_capture=self.payment_capture,
                              guest_retention=self.guest_token_ttl)
