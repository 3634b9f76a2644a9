"""Shoppers for the failure tests: retrying HTTP clients and the sale's invariants.

A shopper retries what a browser or a load balancer would: a connection that broke before an
answer (the process behind it was killed) and a 503 with Retry-After, always with the same
Idempotency-Key, so a retry can never buy twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import httpx

#: Seconds a shopper keeps retrying one request before giving up.
PATIENCE = 30.0


async def call(client: httpx.AsyncClient, method: str, path: str, *,
               patience: float = PATIENCE, retry_unavailable: bool = True,
               **kwargs: Any) -> httpx.Response:
    """One request, retried on a broken connection (the process behind it went away before
    answering) and, with ``retry_unavailable``, on a 503, until ``patience`` runs out."""
    end = time.monotonic() + patience
    pause = 0.05
    while True:
        try:
            r = await client.request(method, path, **kwargs)
            if r.status_code != 503 or not retry_unavailable or time.monotonic() >= end:
                return r
        except httpx.TransportError:
            if time.monotonic() >= end:
                raise
        await asyncio.sleep(pause)  # a client's backoff between attempts, not a test wait
        pause = min(pause * 2, 1.0)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def buyer(client: httpx.AsyncClient, product_id: str, variant_id: str) -> dict[str, Any]:
    """A guest who makes a cart, adds one unit and checks out with ``tok_ok``: its outcome
    ``{outcome: paid|out_of_stock|failed, order_id?, token?, status?}``."""
    key = uuid.uuid4().hex
    r = await call(client, "POST", "/v1/carts", headers={"Idempotency-Key": f"{key}-c"})
    if r.status_code not in (200, 201):
        return {"outcome": "failed", "status": r.status_code, "step": "cart"}
    cart = r.json()
    token, cid = cart["token"], cart["cart_id"]
    r = await call(client, "POST", f"/v1/carts/{cid}/items",
                   headers={**bearer(token), "Idempotency-Key": f"{key}-a"},
                   json={"product_id": product_id, "variant_id": variant_id, "quantity": 1})
    if r.status_code == 409 and r.json()["error"]["code"] == "out_of_stock":
        return {"outcome": "out_of_stock"}  # stock on add: refused once the sale sold out
    if r.status_code != 201 and r.status_code != 200:
        return {"outcome": "failed", "status": r.status_code, "step": "add"}
    r = await call(client, "POST", f"/v1/carts/{cid}/checkout",
                   headers={**bearer(token), "Idempotency-Key": f"{key}-o"},
                   json={"payment": {"token": "tok_ok"}})
    if r.status_code == 201:
        return {"outcome": "paid", "order_id": r.json()["order_id"], "token": token}
    if r.status_code == 409 and r.json()["error"]["code"] == "out_of_stock":
        return {"outcome": "out_of_stock"}
    return {"outcome": "failed", "status": r.status_code, "step": "checkout",
            "body": r.text[:300]}


async def sale_verdict(client: httpx.AsyncClient, admin: dict[str, str], variant_id: str,
                       units: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The sale's books: stock ledger, paid orders readable by their buyers, payments per
    order from the event stream."""
    stock = (await call(client, "POST", f"/v1/admin/stock/{variant_id}", headers=admin,
                        json={"delta": 0})).json()
    paid = [r for r in results if r["outcome"] == "paid"]
    unreadable = []
    for r in paid:
        got = await call(client, "GET", f"/v1/orders/{r['order_id']}",
                         headers=bearer(r["token"]))
        if got.status_code != 200 or got.json()["status"] != "paid":
            unreadable.append((r["order_id"], got.status_code))
    events = (await call(client, "GET", "/v1/admin/events", headers=admin,
                         params={"count": 10_000})).json()["items"]
    payments = Counter(e["order_id"] for e in events if e["type"] == "order.paid")
    return {"stock": stock, "paid": len(paid), "unreadable": unreadable,
            "paid_twice": [o for o, n in payments.items() if n > 1],
            "paid_events": sum(payments.values()),
            "outcomes": Counter(r["outcome"] for r in results), "units": units}
