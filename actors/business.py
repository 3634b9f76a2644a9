"""Business figures counted where they happen, in the process that runs the actors' turns.

Counters (monotonic, per process): orders paid and revenue (minor units) by currency, uses of
each promotion on paid orders, reservations that lapsed (a shopper's hold on add, or a
checkout reservation never completed) and their units. Gauges, read from a host's resident
inventory actors when asked: open reservations (holds and checkout reservations) and the
units they set aside.

The gateway's ``/metrics`` exports them: straight from this module when the hosts run in its
process (local placement, an ingress on every host), or from each Ray host's ``stats``
(``"business"``), whose process has its own counters. Plain dicts: no Prometheus here, so
the figures travel by pickling.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["host_figures", "order_paid", "reservations_expired", "snapshot"]

_paid: Counter[str] = Counter()          # currency -> orders
_revenue: Counter[str] = Counter()       # currency -> minor units
_promotions: Counter[str] = Counter()    # promotion id -> uses on paid orders
_expired = [0, 0]                        # reservations, units


def order_paid(currency: str, total_minor: int, discounts: list[dict[str, Any]]) -> None:
    """An order became paid: its total (minor units of ``currency``) and its promotions."""
    _paid[currency] += 1
    _revenue[currency] += total_minor
    for d in discounts:
        pid = d.get("promotion_id")
        if pid:
            _promotions[pid] += 1


def reservations_expired(reservations: list[Any]) -> None:
    """Reservations (``engine.stock.Reservation``) that lapsed at their deadline."""
    _expired[0] += len(reservations)
    _expired[1] += sum(r.quantity for r in reservations)


def snapshot() -> dict[str, Any]:
    """This process's counters: ``{orders_paid, revenue_minor, promotion_uses: {currency or
    promotion id: n}, reservations_expired, reservation_units_expired}``."""
    return {"orders_paid": dict(_paid), "revenue_minor": dict(_revenue),
            "promotion_uses": dict(_promotions), "reservations_expired": _expired[0],
            "reservation_units_expired": _expired[1]}


def host_figures(host: Any) -> dict[str, int]:
    """Open reservations and reserved units in ``host``'s resident inventory actors."""
    count = units = 0
    for actor in host.actors.get("inv", {}).values():
        ledger = actor.ledger
        count += len(ledger.reservations)
        units += ledger.reserved
    return {"reservations_open": count, "reserved_units": units}
