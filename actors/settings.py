"""Runtime settings of the actors (plain data: it travels to Ray hosts by pickling)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Times in seconds, money in minor units, rates in basis points (825 = 8.25 %)."""

    #: Inactivity after which an active cart expires and gives back what it holds.
    cart_ttl: float = 1800.0
    #: Lifetime of a checkout reservation: a crash mid-checkout cannot leak stock past it.
    reservation_ttl: float = 600.0
    #: How long a finished (expired, merged, checked-out) cart record is kept in the store.
    finished_cart_retention: float = 7 * 24 * 3600.0
    #: How long a guest's user record is kept after its last change (a guest token's life).
    guest_retention: float = 30 * 24 * 3600.0
    #: Flat shipping per currency and the subtotal from which shipping is free.
    shipping_flat: dict[str, int] = field(default_factory=lambda: {"USD": 499, "EUR": 499,
                                                                  "GBP": 399})
    free_shipping_over: dict[str, int] = field(default_factory=lambda: {"USD": 5000,
                                                                        "EUR": 5000,
                                                                        "GBP": 4000})
    #: Default tax rate, and rates by destination ("US-CA", "DE"), on the discounted amount
    #: plus shipping; ``prices_include_tax`` for tax-inclusive catalogs (EU style).
    tax_rate_bp: int = 0
    tax_rates: dict[str, int] = field(default_factory=dict)
    prices_include_tax: bool = False
    #: Delay of the test payment provider's ``tok_slow`` token.
    slow_payment_delay: float = 2.0
    #: How often each host sweeps the store's deadline index (after a restart, say).
    sweep_interval: float = 5.0
    #: Default cart currency (ISO 4217).
    default_currency: str = "USD"
    #: Payment provider ``module:attr`` (`actors.payments.load_provider`); None: the test one.
    payment_provider: str | None = None
    #: ``immediate``: capture at checkout; ``on_shipment``: authorize at checkout, capture
    #: when the order ships.
    payment_capture: str = "immediate"
    #: Whether every cart turn that changes the cart adds a ``cart.updated`` outbox event
    #: (real-time streams, `gateway.cart_events`); simulations that read no stream turn it off.
    cart_update_events: bool = True
