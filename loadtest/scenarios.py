"""The load-test scenarios, spoken over the API.md routes through `loadtest.client`.

- `cart_churn`: hundreds of guest carts of several lines (default 500 carts of 6 lines),
  shared by the connections, one request at a time per cart: 60% add one unit / 40% view
  (`ADD_VIEW_MIX`), or the same with PATCH and DELETE in the mix (`EDIT_MIX`).
- `request_mix`: the churn's requests without its state, for the raw ASGI ceiling.
- `flash_race`: `buyers` guests race for `units` units, each making a guest cart, adding one
  unit and checking out with `tok_ok`; the whole purchase is measured, and the sale's ledger
  checked (units sold = paid units, on_hand + sold = units).
- `flash_sale`: the operator's variant (`loadtest.flash_sale`): every buyer first gets a cart
  holding one unit, then all check out at once.
- `read_heavy`: carts prepared with a few lines, then many `GET /v1/carts/{id}`.

Each returns a result dict: `scenario`, `system`, `requests`, `seconds`, `requests_per_s`,
`p50_ms`, `p99_ms`, `p999_ms`, `max_ms`, `statuses`, `errors` (unexpected statuses and
transport errors by name) and `error_count`, plus the scenario's own figures. Setup traffic
(cart preparation, admin calls) is recorded in separate phases and summarised under `setup`.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
from hdrh.histogram import HdrHistogram

from loadtest import wrk
from loadtest.client import MAX_LATENCY_US, CpuProbe, HttpSession, Phase, Reply, User

#: Bytes a system holds now, by where: ``{"processes": ..., "redis": ...}`` (what is known).
MemoryProbe = Callable[[], dict[str, float]]
#: Cumulative counters of a system now, by name (Redis commands, engine actor turns, ...).
CounterProbe = Callable[[], Awaitable[dict[str, float]]]

#: Unit price of generated products, in minor units (USD cents).
PRICE_MINOR = 2499
#: Largest number of product pages `find_product` reads.
MAX_PRODUCT_PAGES = 100


#: Anything that sends a recorded request: a virtual user, or a phase (on its first connection).
Caller = User | Phase


class ScenarioError(Exception):
    """A scenario could not set itself up (the system refused an admin call, say)."""


@dataclass(frozen=True)
class Item:
    """A sellable variant and its product."""

    product_id: str
    variant_id: str


@dataclass(frozen=True)
class GuestCart:
    """A guest cart and the token that opens it."""

    cart_id: str
    token: str


@dataclass(frozen=True)
class Target:
    """The system under test and how hard to drive it.

    `connections` is the number of keep-alive connections and of concurrent virtual users,
    `duration_s` the time limit of each measured phase in seconds, `max_requests` its request
    limit, and `max_carts` (if set) caps how many carts a scenario creates (ray-per-cart).
    `setup_s` bounds each setup phase (making carts, admin calls) in seconds: it is longer
    because some systems take seconds per cart (ray-per-cart starts a process per cart).
    `server_cpu` (if set) answers the server's CPU seconds so far, to meter CPU per request.
    `rate` (if set, requests/s) paces the measured phases of churn and read: latency at an
    offered load rather than at saturation (flash sales stay a burst).
    `server_memory` (if set) answers the bytes the system holds now by where they are:
    ``{"processes": resident memory, "redis": Redis data}``, to meter memory per active cart.
    `counters` (if set) answers cumulative counters by name (Redis commands by kind, engine
    actor turns and writes), read around a flash race to count what one purchase costs.
    `generator`: who sends the measured phase of churn (add / view), read and the ceiling:
    ``python`` (`loadtest.client`) or ``wrk`` (`loadtest.wrk`, a generator in C that leaves
    more of a small machine to the system); setup, churn-edit and flash are always Python's.
    """

    base_url: str
    admin_token: str
    system: str = "unknown"
    connections: int = 64
    duration_s: float = 20.0
    max_requests: int = 1_000_000
    max_carts: int | None = None
    setup_s: float = 120.0
    server_cpu: CpuProbe | None = field(default=None, compare=False)
    rate: float | None = None
    server_memory: MemoryProbe | None = field(default=None, compare=False)
    counters: CounterProbe | None = field(default=None, compare=False)
    generator: str = "python"

    def carts(self, wanted: int) -> int:
        """`wanted`, capped by `max_carts`."""
        return wanted if self.max_carts is None else max(1, min(wanted, self.max_carts))

    def session(self) -> HttpSession:
        """A new HTTP session to the target."""
        return HttpSession(self.base_url, self.connections, self.server_cpu)


# --------------------------------------------------------------------------- data and tokens


def make_admin_token(secret: str, ttl_s: int = 3600, sub: str = "loadtest-admin") -> str:
    """An HS256 admin JWT (`sub`, `exp` in `ttl_s` seconds, `role: admin`)."""
    claims = {"sub": sub, "exp": int(time.time()) + ttl_s, "role": "admin"}
    return jwt.encode(claims, secret, algorithm="HS256")


def make_catalog(products: int, variants: int, stock: int) -> list[dict[str, Any]]:
    """Catalog-file entries: `products` products of `variants` variants, `stock` units each."""
    return [
        {
            "product_id": f"bench-p{p}",
            "name": f"Bench product {p}",
            "description": "generated by loadtest",
            "category": "bench",
            "price": {"amount": PRICE_MINOR, "currency": "USD"},
            "variants": [
                {"variant_id": f"bench-p{p}-v{v}", "sku": f"BP{p}V{v}",
                 "attributes": {"size": str(v)}, "stock": stock}
                for v in range(variants)
            ],
        }
        for p in range(products)
    ]


def catalog_items(entries: list[dict[str, Any]]) -> list[Item]:
    """Every variant of catalog entries as an `Item`."""
    return [Item(e["product_id"], v["variant_id"]) for e in entries for v in e["variants"]]


# --------------------------------------------------------------------------- API calls


async def guest_cart(vu: Caller) -> GuestCart | None:
    """`POST /v1/carts` without a token; None unless it answers 201 with a token."""
    reply = await vu.call("POST", "/v1/carts")
    if reply is None or reply.status != 201 or not isinstance(reply.body, dict):
        return None
    return GuestCart(reply.body["cart_id"], reply.body["token"])


async def check_out(vu: User, cart: GuestCart, item: Item, outcomes: Counter[str],
                    sold: dict[str, int]) -> None:
    """Check ``cart`` out with ``tok_ok`` and a fresh key; count the outcome and the units of
    ``item`` sold (a paid order, else the error code)."""
    reply = await vu.call(
        "POST", f"/v1/carts/{cart.cart_id}/checkout",
        json={"payment": {"token": "tok_ok"}},
        token=cart.token, headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    if reply is not None and reply.status == 201:
        outcomes["paid"] += 1
        sold["units"] += units_of(reply.body, item.variant_id)
    else:
        outcomes[error_code(reply)] += 1


async def add_item(vu: Caller, cart: GuestCart, item: Item, quantity: int) -> Reply | None:
    """`POST /v1/carts/{id}/items` with `quantity` units of `item`."""
    body = {"product_id": item.product_id, "variant_id": item.variant_id, "quantity": quantity}
    return await vu.call("POST", f"/v1/carts/{cart.cart_id}/items", json=body, token=cart.token)


def line_of(reply: Reply | None, variant_id: str) -> str | None:
    """The id of the line holding `variant_id` in a cart answer, if any."""
    if reply is None or not reply.ok or not isinstance(reply.body, dict):
        return None
    for line in reply.body.get("lines", []):
        if line.get("variant_id") == variant_id:
            return line["line_id"]
    return None


def error_code(reply: Reply | None) -> str:
    """The API.md error code of a failed answer, else the status or `transport_error`."""
    if reply is None:
        return "transport_error"
    if isinstance(reply.body, dict) and isinstance(reply.body.get("error"), dict):
        return str(reply.body["error"].get("code", reply.status))
    return str(reply.status)


async def admin_call(phase: Phase, method: str, path: str, body: Any, token: str) -> Any:
    """An admin call that must succeed; its JSON answer, or ScenarioError."""
    reply = await phase.call(method, path, json=body, token=token)
    if reply is None or not reply.ok:
        status = "no answer" if reply is None else f"{reply.status} {reply.body}"
        raise ScenarioError(f"{method} {path} failed: {status}")
    return reply.body


async def set_stock(phase: Phase, token: str, variant_id: str, units: int) -> dict[str, int]:
    """Set a variant's stock to `units`; answers on_hand, reserved, available."""
    body = await admin_call(phase, "POST", f"/v1/admin/stock/{variant_id}", {"set": units}, token)
    return stock_numbers(body)


async def read_stock(phase: Phase, token: str, variant_id: str) -> dict[str, int]:
    """A variant's on_hand, reserved and available units (admin `{"delta": 0}`)."""
    body = await admin_call(phase, "POST", f"/v1/admin/stock/{variant_id}", {"delta": 0}, token)
    return stock_numbers(body)


def stock_numbers(body: Any) -> dict[str, int]:
    """on_hand, reserved and available from an admin stock answer (top level or `stock`)."""
    source = body.get("stock", body) if isinstance(body, dict) else {}
    if not isinstance(source, dict) or "on_hand" not in source:
        raise ScenarioError(f"the stock answer has no on_hand: {body!r}")
    on_hand = int(source["on_hand"])
    reserved = int(source.get("reserved", 0))
    return {"on_hand": on_hand, "reserved": reserved,
            "available": int(source.get("available", on_hand - reserved))}


async def create_flash_product(phase: Phase, token: str) -> Item:
    """PUT a fresh one-variant product for a flash sale; its `Item`."""
    product_id = f"flash-{uuid.uuid4().hex[:10]}"
    item = Item(product_id, f"{product_id}-one")
    body = {
        "name": "Flash sale item", "description": "generated by loadtest", "category": "bench",
        "price": {"amount": PRICE_MINOR, "currency": "USD"},
        "variants": [{"variant_id": item.variant_id, "sku": item.variant_id.upper(),
                      "attributes": {}}],
    }
    await admin_call(phase, "PUT", f"/v1/admin/products/{product_id}", body, token)
    return item


async def find_product(phase: Phase, variant_id: str) -> str:
    """The product holding `variant_id`, found by paging `GET /v1/products`.

    Falls back to `variant_id` itself (a product without variants has one implicit variant
    of its own id) when the listing does not name it.
    """
    cursor: str | None = None
    for _page in range(MAX_PRODUCT_PAGES):
        path = "/v1/products?limit=50" + (f"&cursor={cursor}" if cursor else "")
        reply = await phase.call("GET", path)
        if reply is None or not reply.ok or not isinstance(reply.body, dict):
            break
        for product in reply.body.get("items", []):
            if any(v.get("variant_id") == variant_id for v in product.get("variants", [])):
                return product["product_id"]
        cursor = reply.body.get("next_cursor")
        if not cursor:
            break
    return variant_id


def result(scenario: str, target: Target, phase: Phase, **figures: Any) -> dict[str, Any]:
    """The result dict of a scenario: its measured phase's summary plus `figures`."""
    return {"scenario": scenario, "system": target.system, **phase.result(), **figures}


async def counted_around(target: Target, work: Awaitable[Any]) -> dict[str, float]:
    """Await ``work``; the growth of `target.counters` over it by name (Redis commands,
    engine actor turns, writes, group-commit flushes), empty without counters."""
    if target.counters is None:
        await work
        return {}
    before = await target.counters()
    await work
    after = await target.counters()
    return {name: after[name] - before[name] for name in after if name in before}


def per_unit(counted: dict[str, float], units: int) -> dict[str, float]:
    """``counted`` divided by ``units`` (requests, buyers), to two places; empty for none."""
    return {name: round(n / units, 2) for name, n in counted.items()} if units else {}


def setup_summary(phase: Phase) -> dict[str, Any]:
    """The few figures of a setup phase worth keeping."""
    summary = phase.result()
    keep = ("requests", "seconds", "requests_per_s", "p50_ms", "p99_ms", "errors")
    return {key: summary[key] for key in keep}


# --------------------------------------------------------------------------- cart churn

#: Share of each operation in a churn mix (sums to 1): `add` (one unit), `patch` (a line's
#: quantity), `delete` (a line), `view` (GET the cart).
ADD_VIEW_MIX = {"add": 0.6, "view": 0.4}
EDIT_MIX = {"add": 0.35, "patch": 0.15, "delete": 0.1, "view": 0.4}
#: A line's units the churn lets grow before it sets the line back to one (the engine and the
#: peers refuse more than 999 units on a line).
MAX_CHURN_UNITS = 900


@dataclass
class ShopperCart:
    """A prepared cart of the churn: its items (one line each when all are present), the line
    id of each present item, and the units the client believes each line holds."""

    cart: GuestCart
    items: list[Item]
    line_ids: dict[str, str] = field(default_factory=dict)
    units: Counter[str] = field(default_factory=Counter)

    def missing(self) -> list[Item]:
        """Items whose line is not in the cart now (deleted by an edit)."""
        return [item for item in self.items if item.variant_id not in self.line_ids]


def cart_items(items: list[Item], index: int, lines: int) -> list[Item]:
    """The `lines` distinct items of prepared cart `index` (consecutive in `items`, starting
    at a stride so that carts differ)."""
    if lines > len(items):
        raise ScenarioError(f"{lines} lines per cart need {lines} variants, the catalog has "
                            f"{len(items)}")
    start = (index * 7) % len(items)
    return [items[(start + k) % len(items)] for k in range(lines)]


def pick(mix: dict[str, float], draw: float) -> str:
    """The operation of `mix` that a uniform `draw` in [0, 1) falls on."""
    for kind, share in mix.items():
        if draw < share:
            return kind
        draw -= share
    return next(reversed(mix))


async def prepare_shopper_carts(
    session: HttpSession, target: Target, items: list[Item], carts: int, lines: int
) -> tuple[list[ShopperCart], Phase]:
    """`carts` guest carts of `lines` lines (one unit each), made `connections` at a time in a
    setup phase; answers the carts made and the phase."""
    made: list[ShopperCart] = []

    async def prepare(vu: User, index: int) -> None:
        cart = await guest_cart(vu)
        if cart is None:
            return
        shopper = ShopperCart(cart, cart_items(items, index, lines))
        for item in shopper.items:
            await shopper_add(vu, shopper, item)
        if len(shopper.line_ids) == lines:
            made.append(shopper)

    setup = session.phase("churn/carts", max_requests=carts * (lines + 1),
                          duration_s=target.setup_s)
    await setup.run_pool(range(carts), prepare, workers=target.connections)
    if not made:
        raise ScenarioError(f"no cart of {lines} lines could be prepared: "
                            f"{setup.result()['statuses']}")
    return made, setup


async def shopper_add(vu: User, shopper: ShopperCart, item: Item) -> Reply | None:
    """Add one unit of `item` to the cart; remember its line and units from the answer."""
    reply = await add_item(vu, shopper.cart, item, 1)
    line_id = line_of(reply, item.variant_id)
    if line_id is not None:
        shopper.line_ids[item.variant_id] = line_id
        shopper.units[item.variant_id] += 1
    return reply


async def churn_step(vu: User, shopper: ShopperCart, kind: str, rng: random.Random) -> str:
    """One operation of kind `kind` on `shopper`'s cart; answers the kind actually sent.

    `add` re-adds a deleted line first, else adds one unit to a line (a line at
    MAX_CHURN_UNITS is set back to one unit instead: `patch`); `delete` keeps at least all
    lines but one (else it becomes an `add`); `patch` sets a line to 1..5 units.
    """
    cart = shopper.cart
    if kind in ("patch", "delete") and not shopper.line_ids:
        kind = "add"
    if kind == "delete" and len(shopper.line_ids) < len(shopper.items):
        kind = "add"
    if kind == "add":
        missing = shopper.missing()
        item = missing[0] if missing else shopper.items[rng.randrange(len(shopper.items))]
        if shopper.units[item.variant_id] < MAX_CHURN_UNITS:
            await shopper_add(vu, shopper, item)
            return "add"
        kind, quantity, variant = "patch", 1, item.variant_id
    elif kind in ("patch", "delete"):
        variant = rng.choice(list(shopper.line_ids))
        quantity = 1 + rng.randrange(5)
    if kind == "view":
        await vu.call("GET", f"/v1/carts/{cart.cart_id}", token=cart.token)
        return "view"
    path = f"/v1/carts/{cart.cart_id}/items/{shopper.line_ids[variant]}"
    if kind == "patch":
        reply = await vu.call("PATCH", path, json={"quantity": quantity}, token=cart.token)
        if reply is not None and reply.ok:
            shopper.units[variant] = quantity
        return "patch"
    reply = await vu.call("DELETE", path, token=cart.token)
    if reply is not None and reply.ok:
        del shopper.line_ids[variant]
        shopper.units.pop(variant, None)
    return "delete"


async def cart_churn(
    target: Target,
    items: list[Item],
    *,
    carts: int = 500,
    lines: int = 6,
    mix: dict[str, float] | None = None,
    scenario: str = "churn",
) -> dict[str, Any]:
    """Realistic churn: `carts` guest carts of `lines` lines shared by the connections.

    Setup makes the carts (one unit on each of `lines` distinct variants). In the measured
    phase every connection in turn takes a random cart nobody is using (a shopper makes one
    request at a time), sends one operation drawn from `mix` (default `ADD_VIEW_MIX`: 60% add
    one unit to one of its lines, 40% view; `EDIT_MIX` adds PATCH and DELETE) and gives the
    cart back. Carts keep `lines` lines (`lines - 1` just after a DELETE, until the next add).

    Figures: `carts` (prepared), `lines_per_cart`, `mix`, `operations` (sent, by kind) and
    `setup`. Raises ScenarioError when no cart could be prepared.
    """
    mix = mix or ADD_VIEW_MIX
    carts = target.carts(carts)
    operations: Counter[str] = Counter()
    async with target.session() as session:
        shoppers, setup = await prepare_shopper_carts(session, target, items, carts, lines)
        idle = list(shoppers)

        async def connection(vu: User, index: int) -> None:
            rng = random.Random(index)
            while True:
                if not idle:  # more connections than carts: this one has no cart to use
                    return
                shopper = idle.pop(rng.randrange(len(idle)))
                try:
                    operations[await churn_step(vu, shopper, pick(mix, rng.random()), rng)] += 1
                finally:
                    idle.append(shopper)

        figures = dict(carts=len(shoppers), lines_per_cart=lines, mix=mix,
                       setup=setup_summary(setup))
        if by_wrk(target, mix):
            measured: dict[str, Any] = {}
            counted = await counted_around(target, keep(measured, wrk_phase(
                target, [(s.cart, s.items) for s in shoppers], mix["add"])))
            return {"scenario": scenario, "system": target.system, **measured, **figures,
                    "counted": counted,
                    "per_request": per_unit(counted, measured["requests"])}
        phase = session.phase(scenario, max_requests=target.max_requests,
                              duration_s=target.duration_s, expected=(200, 201, 204),
                              rate=target.rate)
        counted = await counted_around(target, phase.run_users(target.connections, connection))
    served = phase.result()["requests"]
    return result(scenario, target, phase, **figures, operations=dict(operations),
                  counted=counted, per_request=per_unit(counted, served))


def by_wrk(target: Target, mix: dict[str, float]) -> bool:
    """Whether wrk sends this measured phase: asked for, and only adds and views in it."""
    return target.generator == "wrk" and set(mix) <= {"add", "view"}


def wrk_phase(target: Target, carts: list[tuple[GuestCart, list[Item]]],
              add_share: float) -> Awaitable[dict[str, Any]]:
    """The measured phase sent by wrk over ``carts`` (`loadtest.wrk.run`)."""
    return wrk.run(target.base_url, [
        (cart.cart_id, cart.token, [(i.product_id, i.variant_id) for i in items])
        for cart, items in carts], add_share=add_share, connections=target.connections,
        duration_s=target.duration_s, server_cpu=target.server_cpu)


async def keep(into: dict[str, Any], work: Awaitable[dict[str, Any]]) -> None:
    """Await ``work`` and put what it answers in ``into``."""
    into.update(await work)


async def request_mix(target: Target, items: list[Item], *, mix: dict[str, float] | None = None,
                      scenario: str = "ceiling") -> dict[str, Any]:
    """The churn's requests without its state, for a server that answers every request alike
    (`raw-asgi`): each connection sends `mix`'s adds (a POST with a JSON body) and views (a
    GET), with a bearer token of a guest's size, as fast as it is answered. No setup.

    Figures: `operations` (sent, by kind), `body_bytes` (size of the first answer's JSON
    body, re-encoded).
    """
    mix = mix or ADD_VIEW_MIX
    token = make_admin_token("x" * 32, sub="guest_" + "0" * 32)
    if by_wrk(target, mix):
        carts = [(GuestCart(f"cart_{index:032x}", token),
                  [items[(index + k) % len(items)] for k in range(6)])
                 for index in range(target.connections * 4)]
        return {"scenario": scenario, "system": target.system,
                **(await wrk_phase(target, carts, mix["add"])), "mix": mix}
    operations: Counter[str] = Counter()
    sizes: list[int] = []

    async def connection(vu: User, index: int) -> None:
        rng = random.Random(index)
        while True:
            item = items[rng.randrange(len(items))]
            cart = f"/v1/carts/cart_{index:032x}"
            if pick(mix, rng.random()) == "view":
                reply = await vu.call("GET", cart, token=token)
                operations["view"] += 1
            else:
                body = {"product_id": item.product_id, "variant_id": item.variant_id,
                        "quantity": 1}
                reply = await vu.call("POST", f"{cart}/items", json=body, token=token)
                operations["add"] += 1
            if reply is not None and not sizes:
                sizes.append(len(orjson.dumps(reply.body)))

    async with target.session() as session:
        phase = session.phase(scenario, max_requests=target.max_requests,
                              duration_s=target.duration_s, expected=(200, 201, 204),
                              rate=target.rate)
        await phase.run_users(target.connections, connection)
    return result(scenario, target, phase, mix=mix, operations=dict(operations),
                  body_bytes=sizes[0] if sizes else None)


# --------------------------------------------------------------------------- flash sale


async def flash_sale(
    target: Target,
    *,
    buyers: int,
    units: int,
    item: Item | None = None,
    variant_id: str | None = None,
) -> dict[str, Any]:
    """A flash sale of `units` units to `buyers` buyers of one unit each.

    The product is `item`, or the product holding `variant_id`, or a fresh one PUT for the
    sale; its stock is set to `units`. When `target.max_carts` caps the buyers, `units`
    shrinks in proportion. Buyers first get a cart holding one unit (setup phase), then all
    check out at once, `connections` at a time (the measured phase).

    Figures: `buyers`, `units`, `paid_orders`, `units_sold` (in the paid orders), `refused`
    (out_of_stock at add or checkout), `other_outcomes` (other answers by error code),
    `untried` (buyers the time limit left out), the stock after (`on_hand`, `reserved`,
    `available`), `oversold_units` (sold beyond `units`), `ledger_gap` (units - on_hand -
    sold: 0 when the ledger agrees), `unsold_units`, `checkouts_per_s` (answered checkouts
    per second).
    """
    capped = target.carts(buyers)
    units = max(1, units * capped // buyers) if capped < buyers else units
    buyers = capped
    outcomes: Counter[str] = Counter()
    sold: Counter[str] = Counter()
    ready: list[GuestCart] = []

    async with target.session() as session:
        admin = session.phase("flash/admin", max_requests=MAX_PRODUCT_PAGES + 10,
                              duration_s=target.setup_s)
        if item is None:
            item = (Item(await find_product(admin, variant_id), variant_id) if variant_id
                    else await create_flash_product(admin, target.admin_token))
        await set_stock(admin, target.admin_token, item.variant_id, units)

        async def prepare(vu: User, _index: int) -> None:
            cart = await guest_cart(vu)
            if cart is None:
                outcomes["no_cart"] += 1
                return
            reply = await add_item(vu, cart, item, 1)
            if reply is not None and reply.ok:
                ready.append(cart)
            else:
                outcomes[error_code(reply)] += 1

        async def buy(vu: User, cart: GuestCart) -> None:
            await check_out(vu, cart, item, outcomes, sold)

        carts = session.phase("flash/carts", max_requests=2 * buyers,
                              duration_s=target.setup_s, expected=(200, 201, 409))
        await carts.run_pool(range(buyers), prepare, workers=target.connections)
        burst = session.phase("flash/checkout", max_requests=max(1, len(ready)),
                              duration_s=target.duration_s, expected=(201, 409))
        await burst.run_pool(list(ready), buy, workers=target.connections)
        level = await read_stock(admin, target.admin_token, item.variant_id)

    figures = flash_figures(units, buyers, outcomes, sold["units"], level)
    return result("flash", target, burst, **figures,
                  checkouts_per_s=burst.result()["requests_per_s"],
                  product_id=item.product_id, variant_id=item.variant_id,
                  setup=setup_summary(carts))


async def flash_race(
    target: Target,
    *,
    buyers: int = 4000,
    units: int = 1000,
) -> dict[str, Any]:
    """A flash sale as shoppers live it: `buyers` guests race for `units` units of a fresh
    one-variant product, `connections` at a time, each making a guest cart, adding one unit
    and checking out with `tok_ok` (own Idempotency-Key). The measured phase is the whole
    purchase of every buyer; its requests are the three calls of each. It is bounded by the
    longer of `target.duration_s` and `target.setup_s` (seconds): the race is a fixed amount
    of work, and the time it takes is the figure.

    With `target.counters`, the cumulative counters it answers (Redis commands, engine actor
    turns) are read just before and after that phase, and their growth is reported whole
    (`counted`) and per buyer (`per_buyer`).

    Figures: those of `flash_figures`, plus `buyers_per_s` (buyers served per second, bought
    or refused), `purchase_p50_ms` / `purchase_p99_ms` (a buyer's three calls, end to end),
    `counted`, `per_buyer`. When `target.max_carts` caps the buyers, `units` shrinks in
    proportion.
    """
    capped = target.carts(buyers)
    units = max(1, units * capped // buyers) if capped < buyers else units
    buyers = capped
    outcomes: Counter[str] = Counter()
    sold: Counter[str] = Counter()
    purchases = HdrHistogram(1, MAX_LATENCY_US, 3)
    async with target.session() as session:
        admin = session.phase("flash/admin", max_requests=10, duration_s=target.setup_s)
        item = await create_flash_product(admin, target.admin_token)
        await set_stock(admin, target.admin_token, item.variant_id, units)

        async def buy(vu: User, _index: int) -> None:
            started = time.perf_counter()
            cart = await guest_cart(vu)
            if cart is None:
                outcomes["no_cart"] += 1
                return
            reply = await add_item(vu, cart, item, 1)
            if reply is not None and reply.ok:
                await check_out(vu, cart, item, outcomes, sold)
            else:
                outcomes[error_code(reply)] += 1
            elapsed_us = int((time.perf_counter() - started) * 1_000_000)
            purchases.record_value(min(max(elapsed_us, 1), MAX_LATENCY_US))

        # a fixed amount of work whose time is the figure: bounded like a setup phase, so a
        # short --duration does not cut the race and leave buyers untried
        race = session.phase("flash", max_requests=3 * buyers,
                             duration_s=max(target.duration_s, target.setup_s),
                             expected=(200, 201, 409))
        counted = await counted_around(target, race.run_pool(range(buyers), buy,
                                                             workers=target.connections))
        level = await read_stock(admin, target.admin_token, item.variant_id)

    figures = flash_figures(units, buyers, outcomes, sold["units"], level)
    served = buyers - figures["untried"]
    seconds = race.result()["seconds"]
    return result(
        "flash", target, race, **figures,
        buyers_per_s=round(served / seconds, 1) if seconds else None,
        purchase_p50_ms=purchases.get_value_at_percentile(50) / 1000 if served else None,
        purchase_p99_ms=purchases.get_value_at_percentile(99) / 1000 if served else None,
        counted=counted,
        per_buyer=per_unit(counted, served),
        product_id=item.product_id, variant_id=item.variant_id,
    )


def units_of(order: Any, variant_id: str) -> int:
    """Units of `variant_id` in an Order body (1 if the body does not say)."""
    if not isinstance(order, dict) or not isinstance(order.get("lines"), list):
        return 1
    return sum(int(line.get("quantity", 0)) for line in order["lines"]
               if line.get("variant_id") == variant_id)


def flash_figures(
    units: int, buyers: int, outcomes: Counter[str], units_sold: int, level: dict[str, int]
) -> dict[str, Any]:
    """The sale's accounting (see `flash_sale`); all counts in units or buyers."""
    refused = outcomes["out_of_stock"]
    other = {k: n for k, n in outcomes.items() if k not in ("paid", "out_of_stock")}
    return {
        "buyers": buyers,
        "units": units,
        "paid_orders": outcomes["paid"],
        "units_sold": units_sold,
        "refused": refused,
        "other_outcomes": other,
        "untried": buyers - sum(outcomes.values()),
        **level,
        "oversold_units": max(0, units_sold - units),
        "ledger_gap": units - level["on_hand"] - units_sold,
        "unsold_units": max(0, units - units_sold),
    }


# --------------------------------------------------------------------------- read heavy


async def read_heavy(
    target: Target, items: list[Item], *, carts: int = 256, lines: int = 3
) -> dict[str, Any]:
    """`carts` carts of `lines` lines each, then virtual users GET random ones.

    Figures: `carts` (carts prepared), `lines_per_cart`, and with `Target.server_memory`
    `bytes_per_cart`: what the system's memory grew by while it made the carts, per cart
    (`bytes_per_cart_parts`: the same by where: processes, Redis).
    """
    carts = target.carts(carts)
    prepared: list[GuestCart] = []

    async def prepare(vu: User, index: int) -> None:
        cart = await guest_cart(vu)
        if cart is None:
            return
        for offset in range(lines):
            await add_item(vu, cart, items[(index + offset) % len(items)], 1 + offset)
        prepared.append(cart)

    async def reader(vu: User, index: int) -> None:
        rng = random.Random(index)
        for _ in range(target.max_requests):
            cart = prepared[rng.randrange(len(prepared))]
            await vu.call("GET", f"/v1/carts/{cart.cart_id}", token=cart.token)

    probe = target.server_memory or (lambda: {})
    async with target.session() as session:
        setup = session.phase("read/carts", max_requests=carts * (lines + 1),
                              duration_s=target.setup_s)
        before = probe()
        await setup.run_pool(range(carts), prepare, workers=target.connections)
        after = probe()
        if not prepared:
            raise ScenarioError("no cart could be prepared")
        parts = {where: round((after[where] - before[where]) / len(prepared))
                 for where in after if where in before}
        per_cart = sum(parts.values()) if parts else None
        figures = dict(carts=len(prepared), lines_per_cart=lines, bytes_per_cart=per_cart,
                       bytes_per_cart_parts=parts, setup=setup_summary(setup))
        if by_wrk(target, {"view": 1.0}):
            return {"scenario": "read", "system": target.system,
                    **(await wrk_phase(target, [(c, []) for c in prepared], 0.0)), **figures}
        phase = session.phase("read", max_requests=target.max_requests,
                              duration_s=target.duration_s, expected=(200,), rate=target.rate)
        await phase.run_users(target.connections, reader)
    return result("read", target, phase, **figures)
