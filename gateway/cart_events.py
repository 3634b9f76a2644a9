"""Real-time cart updates: one hub per serving process fans the outbox out to SSE streams.

The hub (`CartEventHub`, one per app: `hub_of`) tails the outbox (`snapshots.outbox_tail`:
one blocking read over every partition stream, on one connection) only while a stream is
open, and dispatches by cart id and customer:

- ``cart.updated`` (and ``cart.expired`` / ``cart.checked_out`` / ``cart.merged``) of a
  watched cart: the hub asks the cart actor for its view (the call GET makes) and sends it
  to the cart's streams as a ``cart`` event. Bursts coalesce: while a view is being fetched,
  more updates only ask for one more fetch afterwards.
- ``stock.offered`` to the customer owning a watched cart: an ``offer`` event.
- ``price_changed``: derived from the views. The hub watches reference data
  (`actors.reference.ReferenceData.listeners`); a product change refetches the views of the
  watched carts holding it, and lines whose ``current_unit_price`` moved are sent.
- ``hold_expiring`` / ``cart_expiring``: derived from the view and the clock, 60 s before a
  line's ``hold_expires_at`` and 300 s before the cart's ``expires_at``. One timer per cart,
  armed lazily; when it fires the hub fetches the view again and warns only if the deadline
  in that fresh view is still that close, so activity that pushed it back silences it.

Event ids: ``id: <cart position>.<offer position>``, two outbox entry ids: the last cart
event the stream's views reflect and the last offer it was sent. A reconnect with
``Last-Event-ID`` gets the offers it missed and, if the cart changed, its current view, both
from the outbox (`OutboxTail.since`); if the outbox no longer holds everything after the id
(trimmed) or the id is not one of ours, a ``reset`` event carrying the current view. Derived
events (``price_changed``, the warnings) carry no id; a reconnect repeats those still true.

Each stream has a bounded queue (`MAX_QUEUE` events): a consumer too slow to keep up loses
its queue and gets a ``reset`` with the current view instead, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import datetime
from typing import Any

import orjson

from actors.clock import Clock, SystemClock
from engine.errors import DomainError
from engine.timefmt import rfc3339
from snapshots.outbox_tail import OutboxTail, parse_id, tail_for

log = logging.getLogger("cart_engine.events")

#: Events a stream may have waiting before it is reset (a slow consumer).
MAX_QUEUE = 64
#: Seconds before a hold lapses / the cart expires that the warnings are sent.
HOLD_LEAD = 60.0
CART_LEAD = 300.0
#: Seconds after a catalog change that the views it touched are fetched a second time.
REFERENCE_SETTLE = 1.0
#: Outbox events that change what a cart's view shows.
CART_EVENTS = frozenset({"cart.updated", "cart.expired", "cart.checked_out", "cart.merged"})
OFFERED = "stock.offered"

Item = tuple[str, str | None, bytes]  # (SSE event type, outbox entry id or None, data)


def _epoch(text: str | None) -> float | None:
    return None if not text else datetime.fromisoformat(text).timestamp()


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


class Subscriber:
    """One open stream: its cart, its queue, and the positions its ids report."""

    __slots__ = ("cart_id", "owner", "queue", "wake", "cart_pos", "offer_pos", "last_view",
                 "overflow", "closed")

    def __init__(self, cart_id: str, position: str) -> None:
        self.cart_id = cart_id
        self.owner: str | None = None  # known once the caller is authorized
        self.queue: deque[Item] = deque()
        self.wake = asyncio.Event()
        self.cart_pos = self.offer_pos = position
        self.last_view: bytes | None = None
        self.overflow = False
        self.closed = False

    def push(self, item: Item) -> None:
        if self.closed or self.overflow:
            return
        if len(self.queue) >= MAX_QUEUE:
            self.queue.clear()
            self.overflow = True
        else:
            self.queue.append(item)
        self.wake.set()

    def event_id(self) -> str:
        return f"{self.cart_pos}.{self.offer_pos}"


class _Watch:
    """A cart with at least one open stream in this process."""

    __slots__ = ("cart_id", "owner", "subs", "view", "cursor", "refreshing", "again",
                 "timer_at", "warned", "products")

    def __init__(self, cart_id: str, cursor: str) -> None:
        self.cart_id = cart_id
        self.owner: str | None = None
        self.subs: set[Subscriber] = set()
        self.view: dict[str, Any] | None = None
        self.cursor = cursor  # the newest cart event id seen
        self.refreshing = False
        self.again = False
        self.timer_at: float | None = None
        self.warned: set[tuple[str, str, float]] = set()
        self.products: frozenset[str] = frozenset()


def price_moves(before: dict[str, Any] | None, after: dict[str, Any]) -> list[dict[str, Any]]:
    """Lines of ``after`` whose catalog price moved since ``before`` (or, with no
    ``before``, all lines showing a moved price): ``[{line_id, product_id, variant_id,
    unit_price, current_unit_price}]``."""
    old = {ln["line_id"]: ln.get("current_unit_price")
           for ln in (before or {}).get("lines", [])}
    out = []
    for ln in after.get("lines", []):
        if not ln.get("price_changed"):
            continue
        if before is not None and ln["line_id"] in old and \
                old[ln["line_id"]] == ln.get("current_unit_price"):
            continue
        out.append({k: ln.get(k) for k in ("line_id", "product_id", "variant_id",
                                           "unit_price", "current_unit_price")})
    return out


def warnings_due(view: dict[str, Any], now: float, hold_lead: float = HOLD_LEAD,
                 cart_lead: float = CART_LEAD) -> tuple[list[tuple[str, str, float]],
                                                        float | None]:
    """The warnings in their window at ``now`` (``(event type, line id or "", deadline)``)
    and the time the next one opens (None: none to come), from a cart view."""
    deadlines: list[tuple[str, str, float, float]] = []
    if view.get("status") == "active":
        expires = _epoch(view.get("expires_at"))
        if expires is not None:
            deadlines.append(("cart_expiring", "", expires, cart_lead))
        for ln in view.get("lines", []):
            until = _epoch(ln.get("hold_expires_at"))
            if until is not None:
                deadlines.append(("hold_expiring", ln["line_id"], until, hold_lead))
    due, upcoming = [], None
    for kind, line_id, deadline, lead in deadlines:
        if deadline <= now:
            continue
        if deadline - lead <= now:
            due.append((kind, line_id, deadline))
        elif upcoming is None or deadline - lead < upcoming:
            upcoming = deadline - lead
    return due, upcoming


def _warning(kind: str, line_id: str, deadline: float, view: dict[str, Any]) -> bytes:
    body: dict[str, Any] = {"cart_id": view["cart_id"], "expires_at": rfc3339(deadline)}
    if line_id:
        line = next((ln for ln in view["lines"] if ln["line_id"] == line_id), {})
        body.update(line_id=line_id, variant_id=line.get("variant_id"),
                    quantity=line.get("quantity"))
    return _json(body)


class CartEventHub:
    """The process's fan-out of outbox events to cart streams (see the module docstring).

    ``service`` is the process's `CartService` (its store is tailed, its reference data
    watched, its ``get_cart`` gives views); ``clock`` the engine's clock (timed warnings).
    """

    def __init__(self, service: Any, clock: Clock, tail: OutboxTail | None = None) -> None:
        self.service = service
        self.clock = clock
        self.tail = tail or tail_for(service.store)
        self.carts: dict[str, _Watch] = {}
        self.owners: dict[str, set[str]] = {}
        self.position = "0-0"
        self.task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        self.views_fetched = 0
        service.reference.listeners.append(self._on_reference)

    # -- streams ---------------------------------------------------------------------------
    async def open(self, cart_id: str) -> Subscriber:
        """Register a stream of ``cart_id`` (before its caller is authorized, so nothing
        that happens from now on is missed). Follow with `start` or `close`."""
        await self._ensure_running()
        sub = Subscriber(cart_id, self.position)
        watch = self.carts.get(cart_id)
        if watch is None:
            watch = self.carts[cart_id] = _Watch(cart_id, self.position)
        watch.subs.add(sub)
        return sub

    async def start(self, sub: Subscriber, view: dict[str, Any],
                    last_event_id: str | None) -> None:
        """The authorized stream's first events, ahead of anything queued since `open`:
        the view (``cart``), or with ``last_event_id`` what it missed (``reset`` when that
        cannot be told), then the derived events true now."""
        watch = self.carts[sub.cart_id]
        sub.owner = watch.owner = owner = view["owner"]
        self.owners.setdefault(owner, set()).add(sub.cart_id)
        first: list[Item] = []
        missed = None
        if last_event_id:
            missed = await self._since(last_event_id)
        if missed is None and last_event_id:
            first.append(("reset", sub.cart_pos, _json(view)))
        elif missed is None:
            first.append(("cart", sub.cart_pos, _json(view)))
        else:
            cart_after, offer_after = missed[0], missed[1]
            changed = None
            for eid, ev in missed[2]:
                kind = ev.get("type")
                if kind in CART_EVENTS and ev.get("cart_id") == sub.cart_id and \
                        _after(eid, cart_after):
                    changed = eid
                elif kind == OFFERED and ev.get("customer") == owner and \
                        _after(eid, offer_after):
                    first.append(("offer", eid, _offer(ev)))
            if changed is not None:
                first.append(("cart", changed, _json(view)))
            first.sort(key=lambda item: parse_id(item[1]) or (0, 0))
            sub.cart_pos, sub.offer_pos = cart_after, offer_after
        moved = price_moves(None, view)
        if moved:
            first.append(("price_changed", None, _json({"cart_id": sub.cart_id,
                                                         "lines": moved})))
        due, _ = warnings_due(view, self.clock.now())
        first.extend((kind, None, _warning(kind, line, at, view)) for kind, line, at in due)
        # What arrived since `open` is newer than what `first` holds, or a repeat of it.
        queued = [item for item in sub.queue if not (
            item[0] == "offer" and any(f[1] == item[1] for f in first))]
        sub.queue = deque(first + queued)
        sub.wake.set()
        if watch.view is None:
            self._on_view(watch, view, notify=False)

    async def _since(self, last_event_id: str) -> tuple[str, str, list[Any]] | None:
        cart_pos, _, offer_pos = last_event_id.partition(".")
        if parse_id(cart_pos) is None or parse_id(offer_pos) is None:
            return None
        oldest = min(cart_pos, offer_pos, key=lambda x: parse_id(x) or (0, 0))
        entries = await self.tail.since(oldest)
        return None if entries is None else (cart_pos, offer_pos, entries)

    async def next(self, sub: Subscriber) -> list[Item] | None:
        """The stream's next events, waiting for some; None once the hub closed."""
        while True:
            if sub.closed:
                return None
            if sub.overflow:
                sub.overflow = False
                view = await self._view(sub.cart_id)
                watch = self.carts.get(sub.cart_id)
                sub.cart_pos = max(sub.cart_pos, watch.cursor if watch else sub.cart_pos,
                                   key=lambda x: parse_id(x) or (0, 0))
                return [("reset", sub.cart_pos, _json(view))] if view else []
            if sub.queue:
                items = list(sub.queue)
                sub.queue.clear()
                return items
            sub.wake.clear()
            await sub.wake.wait()

    def render(self, sub: Subscriber, item: Item) -> bytes | None:
        """One queued item as SSE bytes for ``sub`` (None: a view it already has)."""
        kind, eid, data = item
        if kind in ("cart", "reset"):
            if kind == "cart" and data == sub.last_view:
                return None
            sub.last_view = data
            if eid is not None and _after(eid, sub.cart_pos):
                sub.cart_pos = eid
        elif kind == "offer" and eid is not None:
            if not _after(eid, sub.offer_pos):
                return None
            sub.offer_pos = eid
        head = f"event: {kind}\r\n"
        if eid is not None:
            head = f"id: {sub.event_id()}\r\n" + head
        return head.encode() + b"data: " + data + b"\r\n\r\n"

    def close(self, sub: Subscriber) -> None:
        """The stream ended (client gone, server stopping)."""
        sub.closed = True
        sub.wake.set()
        watch = self.carts.get(sub.cart_id)
        if watch is None:
            return
        watch.subs.discard(sub)
        if watch.subs:
            return
        del self.carts[sub.cart_id]
        if watch.owner is not None:
            mine = self.owners.get(watch.owner)
            if mine is not None:
                mine.discard(sub.cart_id)
                if not mine:
                    del self.owners[watch.owner]

    async def shutdown(self) -> None:
        """End every stream and the tail (server shutdown)."""
        self.closed = True
        for watch in list(self.carts.values()):
            for sub in list(watch.subs):
                self.close(sub)
        for task in [self.task, *self._tasks]:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(ValueError):
            self.service.reference.listeners.remove(self._on_reference)

    def stats(self) -> dict[str, int]:
        return {"streams": sum(len(w.subs) for w in self.carts.values()),
                "carts": len(self.carts), "views_fetched": self.views_fetched}

    # -- the tail --------------------------------------------------------------------------
    async def _ensure_running(self) -> None:
        if self.closed:
            raise RuntimeError("the event hub is shut down")
        async with self._starting:
            if self.task is None or self.task.done():
                self.position = await self.tail.start()
                self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        """Read while any stream is open; a failed read is retried after a second."""
        while self.carts and not self.closed:
            try:
                entries = await self.tail.read()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - Redis away: the streams wait, then resume
                log.warning("outbox read failed: %s", e)
                await asyncio.sleep(1.0)
                continue
            for eid, ev in entries:
                self._dispatch(eid, ev)
            if entries:
                self.position = entries[-1][0]

    def _dispatch(self, eid: str, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind in CART_EVENTS:
            watch = self.carts.get(ev.get("cart_id", ""))
            if watch is not None:
                watch.cursor = eid
                self._refresh(watch)
        elif kind == OFFERED:
            carts = self.owners.get(ev.get("customer", ""))
            if carts:
                data = _offer(ev)
                for cart_id in list(carts):
                    for sub in self.carts[cart_id].subs:
                        sub.push(("offer", eid, data))

    # -- views -----------------------------------------------------------------------------
    def _refresh(self, watch: _Watch) -> None:
        """Fetch the cart's view soon; one fetch at a time per cart, one more after it if
        asked meanwhile (a burst of updates costs two views at most)."""
        if watch.refreshing:
            watch.again = True
            return
        watch.refreshing = True
        self._spawn(self._fetch(watch))

    async def _fetch(self, watch: _Watch) -> None:
        try:
            while watch.subs:
                watch.again = False
                cursor = watch.cursor
                view = await self._view(watch.cart_id, watch.owner)
                if view is not None and watch.subs:
                    self._on_view(watch, view, cursor=cursor)
                if not watch.again:
                    break
        finally:
            watch.refreshing = False

    async def _view(self, cart_id: str, owner: str | None = None) -> dict[str, Any] | None:
        watch = self.carts.get(cart_id)
        owner = owner or (watch.owner if watch else None)
        if owner is None:
            return None
        self.views_fetched += 1
        try:
            return dict(await self.service.get_cart(owner, cart_id))
        except (DomainError, Exception) as e:  # noqa: BLE001 - the next change tries again
            log.warning("view of cart %s for its stream failed: %s", cart_id, e)
            return None

    def _on_view(self, watch: _Watch, view: dict[str, Any], notify: bool = True,
                 cursor: str | None = None) -> None:
        before, watch.view = watch.view, view
        watch.products = frozenset(ln["product_id"] for ln in view.get("lines", []))
        if notify and view != before:
            data = _json(view)
            for sub in watch.subs:
                if sub.owner is not None:
                    sub.push(("cart", cursor or watch.cursor, data))
            moved = price_moves(before, view)
            if moved:
                note = _json({"cart_id": watch.cart_id, "lines": moved})
                for sub in watch.subs:
                    if sub.owner is not None:
                        sub.push(("price_changed", None, note))
        self._warn(watch, view, notify)

    def _warn(self, watch: _Watch, view: dict[str, Any], notify: bool) -> None:
        now = self.clock.now()
        due, upcoming = warnings_due(view, now)
        for kind, line_id, deadline in due:
            key = (kind, line_id, deadline)
            if key in watch.warned:
                continue
            watch.warned.add(key)
            if notify:
                data = _warning(kind, line_id, deadline, view)
                for sub in watch.subs:
                    if sub.owner is not None:
                        sub.push((kind, None, data))
        if upcoming is not None and (watch.timer_at is None or upcoming < watch.timer_at):
            watch.timer_at = upcoming
            self.clock.call_at(upcoming, lambda: self._timer(watch, upcoming))

    def _timer(self, watch: _Watch, at: float) -> None:
        if watch.timer_at == at:
            watch.timer_at = None
        if watch.subs and self.carts.get(watch.cart_id) is watch:
            self._refresh(watch)  # a fresh view decides: activity may have moved it

    def _on_reference(self, kind: str, value: Any) -> None:
        if kind != "product" or not self.carts:
            return
        product_id = getattr(value, "product_id", None)
        watched = [w for w in self.carts.values() if product_id in w.products]
        for watch in watched:
            self._refresh(watch)
        if watched:
            # The cart's owner may apply the change a moment after this process (each
            # host hears it on its own): look again once it surely has.
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to look at
                asyncio.get_running_loop().call_later(
                    REFERENCE_SETTLE, lambda: [self._refresh(w) for w in watched
                                               if w.subs and self.carts.get(w.cart_id) is w])

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _after(eid: str | None, pos: str) -> bool:
    a, b = parse_id(eid), parse_id(pos)
    return a is not None and (b is None or a > b)


def _offer(ev: dict[str, Any]) -> bytes:
    expires = ev.get("expires_at")
    return _json({"variant_id": ev.get("variant_id"), "quantity": ev.get("quantity"),
                  "position": ev.get("position"),
                  "expires_at": rfc3339(expires) if isinstance(expires, int | float)
                  else expires})


def clock_of(placement: Any) -> Clock:
    """The engine clock of this process: the in-process placement's, a host's (its ingress),
    else the system clock (a gateway in front of Ray hosts)."""
    clock = getattr(placement, "clock", None)
    if clock is None:
        clock = getattr(getattr(placement, "host", None), "clock", None)
    return clock if clock is not None else SystemClock()


def hub_of(app: Any) -> CartEventHub:
    """The app's hub (one per app, so one per serving process), built on first use."""
    hub: CartEventHub | None = getattr(app.state, "cart_events", None)
    if hub is None:
        service = app.state.service
        hub = CartEventHub(service, clock_of(service.placement))
        app.state.cart_events = hub
    return hub


async def shutdown(app: Any) -> None:
    """End the app's streams and its tail, if it has a hub (app or ingress shutdown)."""
    hub: CartEventHub | None = getattr(app.state, "cart_events", None)
    if hub is not None:
        await hub.shutdown()
