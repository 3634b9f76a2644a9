"""The actor runtime: logical actors, many per host, turn-based, persisted before replying.

A *host* keeps many logical actors (a cart, an inventory ledger, an order...) in memory, each
with its own identity ``(kind, key)``, state, mailbox and timer, in the manner of Orleans
grains and Akka sharded entities. The same ``Host`` runs in the caller's event loop (the
in-process placement) or inside a Ray actor (the Ray placement).

Guarantees, per actor:
- Turn-based: one message at a time, in arrival order (a FIFO lock per actor; an async host
  would otherwise interleave turns at every ``await``). Different actors run concurrently.
- Activation on the first message, from the actor's snapshot when one exists; passivation when
  idle or finished. An activation takes a new epoch in the store, fencing out any other host.
- A turn's changes are persisted before its reply is released. Writes of concurrent turns are
  committed together in one round trip (group commit), and only the fields a turn changed are
  written. A reply to a read waits for the actor's last write too, so nothing unpersisted is
  ever shown.
- Exactly-once effects: a message with a request id (the client's ``Idempotency-Key``) is
  answered from the actor's record of it when repeated; the same id with another body
  fingerprint is refused with ``idempotency_key_reused``.
- A turn that fails unexpectedly (a bug, a lost write) drops the actor from memory: the next
  message re-activates it from its last persisted state (Akka's "restart" supervision).

Messages are plain tuples ``(kind, key, method, args, request_id, fingerprint)`` and replies
``("ok", value)`` or ``("err", error_dict)``, so they cross process boundaries cheaply.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import re
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

from actors import tracing
from actors.clock import Clock
from engine.errors import Conflict, DomainError, Unavailable, ValidationFailed
from snapshots.store import NEW_EPOCH, PARTITIONS, SnapshotStore, Write

log = logging.getLogger(__name__)

Message = tuple[str, str, str, dict[str, Any], str | None, str | None]
Reply = tuple[str, Any]
Route = Callable[[Message], Awaitable[Reply]]

#: How many idempotency records an actor keeps per caller (that caller's oldest dropped
#: first), so that no caller can push out another's.
IDEMPOTENCY_RECORDS = 32
#: How long an idempotency record is honoured, seconds.
IDEMPOTENCY_TTL = 24 * 3600.0
#: Request ids the router gives a message that crosses hosts without one (`AUTO_ID_PREFIX`
#: then random hex): recorded only as long as a re-send after a lost reply can happen, seconds.
AUTO_ID_PREFIX = "~"
AUTO_ID_TTL = 120.0
#: Separates the caller from the client's key in a request id (`CartService._scoped`).
CALLER_SEP = "\x1f"
#: Replies never recorded: a refusal that changed nothing and reveals nothing (another
#: caller's cart is "not found"), and "retry later" answers.
_UNRECORDED = frozenset({"not_found", "forbidden", "unavailable"})


_HEX4 = re.compile(r"[0-9a-f]{4}")


def key_hash(kind: str, key: str) -> int:
    """The 16-bit hash of actor ``(kind, key)``: a stable hash (CRC-32), not ``hash``.

    An order lives with the cart it was created from: its id is ``ord_`` then the cart's
    hash in 4 hex digits (`actors.cart_keys.order_id_for`), so the checkout saga's order turns
    stay in the cart's partition, on the cart's host, instead of crossing to another.
    """
    if kind == "order" and key.startswith("ord_") and _HEX4.fullmatch(key, 4, 8):
        return int(key[4:8], 16)
    return zlib.crc32(f"{kind}:{key}".encode()) & 0xFFFF


@functools.lru_cache(maxsize=1 << 16)
def partition_of(kind: str, key: str) -> int:
    """The partition (0 .. `PARTITIONS` - 1) of actor ``(kind, key)``: the unit the directory
    assigns to hosts (`actors.directory`) and the store lays out by (one hash tag each).

    Remembered for the most recent actors: one cart request asks it about five times (the
    ingress's hand-off and forwarding, the router, the host, the commit)."""
    return key_hash(kind, key) % PARTITIONS


#: Allocations between two young-generation collections of a tuned process (`tune_gc`).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Tune Python's cyclic garbage collector for a process that holds many actors.

    A host keeps every active cart's objects alive for up to 30 minutes; with CPython's
    defaults a collection runs every 700 net allocations and the full ones walk all of those
    objects: with 50,000 carts in memory that more than halved embedded throughput on the
    2-core reference machine (``python -m loadtest.engine_bench ops --carts 50000``, against
    the same with ``--default-gc``: 8,387 against 3,515 operations/s one call each, 136,253
    against 72,697 through ``CartService.apply``, 50 per cart). So: take what start-up
    allocated (modules, catalog, reference data) out of the scans (``gc.freeze``) and collect
    the young generation every `GC_YOUNG_THRESHOLD` allocations, the older ones
    proportionally less often. Reference counting still frees everything that is not in a
    cycle at once; cycles wait a little longer. Called by the gateway and by each Ray host at
    start; an embedder may call it once its own start-up is done.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)


def host_of(kind: str, key: str, n_hosts: int) -> int:
    """The host index of actor ``(kind, key)`` in a static placement of ``n_hosts`` hosts
    (in-process): host ``i`` owns the partitions ``p`` with ``p % n_hosts == i``."""
    return partition_of(kind, key) % n_hosts


#: Reply of a host that does not serve the message's partition (now): the router refreshes
#: its copy of the directory and sends the message again. Nothing ran.
NOT_OWNER = "not_owner"


def ok(value: Any) -> Reply:
    return ("ok", value)


def err(e: DomainError) -> Reply:
    return ("err", e.to_dict())


def unwrap(reply: Reply) -> Any:
    """The value of an ``ok`` reply; raise the :class:`DomainError` of an ``err`` one."""
    status, value = reply
    if status == "ok":
        return value
    raise DomainError.from_dict(value)


class Actor:
    """Base of every logical actor. Subclasses are plain classes, testable without a runtime.

    A subclass names its ``kind``, restores itself in :meth:`load`, says which fields a turn
    changed with :meth:`mark` and what to store for a field in :meth:`field_value`. Public
    coroutine methods (no leading underscore) are its messages.
    """

    kind: ClassVar[str] = ""
    #: Seconds of idleness after which the actor leaves memory (None: only when finished).
    passivate_after: ClassVar[float | None] = 600.0
    #: Messages that may run twice with the effect of once (reads; operations keyed by the
    #: id of what they change): the router may send them again when a reply was lost.
    idempotent: ClassVar[frozenset[str]] = frozenset()
    #: An actor whose state is its request records alone (one per admin request): they are
    #: kept though it `exists` not. Others record a request only once they exist, so a
    #: request at a made-up id writes nothing.
    keeps_requests: ClassVar[bool] = False

    __slots__ = ("key", "ctx", "epoch", "_dirty", "_events", "_lock", "_idem", "_last_commit",
                 "_timer_at", "_last_turn", "_gone", "_poisoned", "_stored_deadline",
                 "_expire_after")

    def __init__(self, key: str, ctx: ActorContext) -> None:
        self.key = key
        self.ctx = ctx
        self.epoch = NEW_EPOCH
        # Allocated on first use and dropped when idle: an idle cart must stay small.
        self._dirty: dict[str, None] | None = None
        self._events: list[dict[str, Any]] | None = None
        self._lock: asyncio.Lock | None = None
        self._idem: OrderedDict[str, list[Any]] | None = None
        self._last_commit: asyncio.Future[None] | None = None
        self._timer_at: float | None = None
        self._last_turn = ctx.clock.now()
        self._gone = False  # no longer this host's live activation
        self._poisoned = False  # its memory may differ from the store: never write it
        self._stored_deadline: float | None = None
        self._expire_after: float | None = None

    # -- to implement ----------------------------------------------------------------------
    def load(self, fields: dict[str, Any]) -> None:
        """Restore state from persisted fields (field name -> engine object)."""

    def field_value(self, name: str) -> Any:
        """The object to persist for field ``name``, or None to delete the field."""
        raise NotImplementedError

    def exists(self) -> bool:
        """Whether the actor has state worth keeping (a never-created cart has none)."""
        return True

    def resident(self) -> bool:
        """Whether to stay in memory after this turn (False: passivate now)."""
        return self.exists()

    def deadline(self) -> float | None:
        """The next time (epoch seconds) :meth:`on_deadline` must run, or None."""
        return None

    async def on_deadline(self) -> None:
        """Called in a turn of its own when :meth:`deadline` has passed (timer or sweeper)."""

    # -- for subclasses --------------------------------------------------------------------
    def mark(self, *names: str) -> None:
        """Record that fields ``names`` changed in this turn (persisted when the turn ends)."""
        if self._dirty is None:
            self._dirty = {}
        for n in names:
            self._dirty[n] = None

    def emit(self, event: dict[str, Any]) -> None:
        """Append an event to the outbox, written atomically with this turn's state."""
        if self._events is None:
            self._events = []
        self._events.append(event)

    def expire_record_after(self, seconds: float | None) -> None:
        """Let the store drop this actor's record ``seconds`` from now (finished carts)."""
        self._expire_after = seconds

    def retention(self) -> float | None:
        """Seconds the store keeps this actor's record after each write (None: for good);
        a turn's `expire_record_after` wins."""
        return None

    @property
    def now(self) -> float:
        return self.ctx.clock.now()

    # -- runtime side ----------------------------------------------------------------------
    def _take_write(self, storage_key: str) -> Write | None:
        w = Write(key=storage_key, epoch=self.epoch, events=self._events or [],
                  expire_after=self._expire_after if self._expire_after is not None
                  else self.retention(), partition=partition_of(self.kind, self.key))
        for name in self._dirty or ():
            value = (self._idem or {}).get(name[2:]) if name.startswith("i:") else \
                self.field_value(name)
            if value is None:
                w.hdel.append(name)
            else:
                w.hset[name] = value
        d = self.deadline()
        if d != self._stored_deadline:
            w.deadline = (storage_key, d)
            self._stored_deadline = d
        self._dirty = None
        self._events = None
        self._expire_after = None
        return None if w.is_empty() else w


#: Keys minted by `ActorContext.local_key` a host remembers as fresh (not yet activated);
#: past it the set is emptied (those actors then read the store on activation, as any other).
MAX_FRESH = 10_000
#: Random ids `ActorContext.local_key` draws at most: with N hosts owning equal shares, the
#: chance that none is local is (1 - 1/N) ** 8, 0.4% for 2 hosts and 10% for 8.
LOCAL_KEY_TRIES = 8


class ActorContext:
    """What an actor may use from its host: clock, settings, reference data, other actors."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.clock: Clock = host.clock
        self.settings = host.settings

    @property
    def catalog(self) -> Any:
        return self.host.reference.catalog

    @property
    def reference(self) -> Any:
        return self.host.reference

    @property
    def payments(self) -> Any:
        return self.host.payments

    def local_key(self, kind: str, make: Callable[[], str],
                  tries: int = LOCAL_KEY_TRIES,
                  via: Callable[[str], tuple[str, str]] | None = None) -> str:
        """A new key for an actor of ``kind`` from ``make()`` (random ids), preferring one
        whose partition this host serves, so the new actor activates beside its creator
        (Orleans' prefer-local placement): the first of ``tries`` that is local, else the
        last made. Only where an id lands is chosen, never what it says.

        ``via``: the ``(kind, key)`` of the actor a new key's first message goes to, when
        that is another actor derived from it (a new guest's first cart,
        `actors.user.first_cart_id`): that actor is the one placed here and known fresh."""
        host = self.host
        for _ in range(max(1, tries)):
            key = make()
            target = (kind, key) if via is None else via(key)
            local = host.ownership.accepts(partition_of(*target), False)
            if local:
                break
        if local:
            host.note_fresh(f"{target[0]}:{target[1]}")
        return key

    async def ask(self, kind: str, key: str, method: str, args: dict[str, Any] | None = None,
                  request_id: str | None = None, fingerprint: str | None = None) -> Any:
        """Send a message to another actor and await its reply value (or its DomainError);
        ``request_id`` and ``fingerprint`` make it idempotent there (`Host.deliver`)."""
        return unwrap(await self.host.send((kind, key, method, args or {}, request_id,
                                            fingerprint)))


class _Committer:
    """Group commit: every write submitted while a flush is in flight goes in the next one.

    Writes of one actor within a flush are merged into one (its epoch is read at flush time,
    so a brand-new actor's second turn never races its first).
    """

    def __init__(self, store: SnapshotStore) -> None:
        self.store = store
        self.pending: list[tuple[Actor, Write, asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None
        self.flushes = 0
        self.writes = 0

    def submit(self, actor: Actor, write: Write) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((actor, write, fut))
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
        return fut

    async def _run(self) -> None:
        await asyncio.sleep(0)  # let the other turns of this batch join the flush
        while self.pending:
            batch, self.pending = self.pending, []
            await self._flush(batch)

    async def _flush(self, batch: list[tuple[Actor, Write, asyncio.Future[None]]]) -> None:
        merged: dict[int, tuple[Actor, Write, list[asyncio.Future[None]]]] = {}
        for actor, w, fut in batch:
            if actor._poisoned:
                fut.set_exception(Unavailable("actor_restarted",
                                              "the actor restarted; retry the request"))
                continue
            entry = merged.get(id(actor))
            if entry is None:
                merged[id(actor)] = (actor, w, [fut])
            else:
                _merge(entry[1], w)
                entry[2].append(fut)
        entries = list(merged.values())
        for actor, w, _ in entries:
            w.epoch = actor.epoch
        self.flushes += 1
        self.writes += len(entries)
        down: Exception | None = None
        try:
            results = await self.store.commit([w for _, w, _ in entries])
        except Exception as e:  # noqa: BLE001 - the store is down: every waiter learns it
            log.warning("snapshot commit failed: %s", e)
            down = e
            results = [e] * len(entries)
        for (actor, _, futs), res in zip(entries, results, strict=True):
            if isinstance(res, int):
                actor.epoch = res
                for f in futs:
                    f.set_result(None)
                continue
            if isinstance(res, Exception) and res is not down:  # this write alone failed
                log.warning("write of %s:%s refused: %s", actor.kind, actor.key, res)
            actor.ctx.host._poison(actor)
            error = Unavailable("store_unavailable", "state could not be persisted; retry") \
                if isinstance(res, Exception) else \
                Unavailable("actor_moved", "the actor was activated elsewhere; retry")
            for f in futs:
                f.set_exception(error)


def _merge(into: Write, w: Write) -> None:
    for f, v in w.hset.items():
        into.hset[f] = v
        if f in into.hdel:
            into.hdel.remove(f)
    for f in w.hdel:
        into.hset.pop(f, None)
        if f not in into.hdel:
            into.hdel.append(f)
    if w.deadline is not None:
        into.deadline = w.deadline
    into.events.extend(w.events)
    if w.expire_after is not None:
        into.expire_after = w.expire_after


def consume_outcome(task: asyncio.Future[Any]) -> None:
    """Retrieve a background task's outcome, so that one nobody came to await is not
    reported as an error never retrieved (its awaiters, or the code it ran, handle it)."""
    if not task.cancelled():
        task.exception()


def _caller_of(rid: str) -> str:
    head, sep, _ = rid.partition(CALLER_SEP)
    return head if sep else ""


class Ownership(Protocol):
    """Which partitions a host serves now (`actors.membership.Membership` on a cluster)."""

    def accepts(self, partition: int, internal: bool) -> bool:
        """Whether to run a message for ``partition``; ``internal``: sent by a turn of this
        host (accepted while the partition is being handed off, so the turn can finish)."""
        ...

    def partitions(self) -> list[int]:
        """The partitions whose stored deadlines this host sweeps."""
        ...


class StaticOwnership:
    """Host ``index`` of ``n_hosts`` owns the partitions ``p % n_hosts == index`` (in-process
    placement: hosts neither come nor go)."""

    def __init__(self, index: int, n_hosts: int) -> None:
        self.index = index
        self.n_hosts = n_hosts
        self._parts = [p for p in range(PARTITIONS) if p % n_hosts == index]

    def accepts(self, partition: int, internal: bool) -> bool:
        return partition % self.n_hosts == self.index

    def partitions(self) -> list[int]:
        return self._parts


#: Message kind of a host's own services (``(SYSTEM, host_id, method, args, None, None)``):
#: reference data, statistics, the manual clock. Routed by host id, not by partition.
SYSTEM = "_host"
SystemCall = Callable[..., Awaitable[Any]]


class Host:
    """Hosts many logical actors; a Ray actor wraps one, the in-process placement several.

    ``route`` sends a message to whichever host owns its actor (set by the placement);
    messages for actors of this host are delivered directly. ``ownership`` says which
    partitions it serves; ``system`` its own services (`SYSTEM` messages), by method name.
    """

    def __init__(self, *, host_id: str, store: SnapshotStore, clock: Clock,
                 registry: dict[str, type[Actor]], settings: Any, reference: Any,
                 payments: Any, ownership: Ownership, sweep_interval: float = 5.0) -> None:
        self.host_id = host_id
        self.store = store
        self.clock = clock
        self.registry = registry
        self.settings = settings
        self.reference = reference
        self.payments = payments
        self.ownership = ownership
        self.route: Route | None = None
        self.system: dict[str, SystemCall] = {"stats": self._stats_call}
        # kind -> key -> actor: no per-actor composite key string kept in memory
        self.actors: dict[str, dict[str, Actor]] = {kind: {} for kind in registry}
        self._activating: dict[str, asyncio.Future[Actor]] = {}
        #: Storage keys (``kind:key``) this host minted for new actors and has not activated
        #: yet (`ActorContext.local_key`): nothing is stored under them, so their activation
        #: skips the store's read (their first write creates them, refused if a key exists).
        self.fresh: set[str] = set()
        #: (kind, key) -> deliveries under way for that actor (no entry when none)
        self._deliveries: dict[tuple[str, str], int] = {}
        #: deliveries under way per partition, and who waits for a partition to go quiet
        self._busy = [0] * PARTITIONS
        self._quiet: dict[int, asyncio.Event] = {}
        self.committer = _Committer(store)
        self.ctx = ActorContext(self)
        #: Whether cart actors render their views to JSON in the turn (`actors.views.CartView`):
        #: on where an HTTP app answers from this host (`CartService.serve_http`), off for an
        #: embedded engine, which reads the dicts and never sends the bytes.
        self.renders_json = False
        self.sweep_interval = sweep_interval
        self._sweeper: Any = None
        self.turns = 0
        self.activations = 0
        self.passivations = 0
        self.refused = 0

    # -- messaging -------------------------------------------------------------------------
    async def handle_batch(self, messages: list[Message]) -> list[Reply]:
        """Deliver a batch (concurrently across actors, in order per actor) and reply to each."""
        if len(messages) == 1:
            return [await self.deliver(messages[0])]
        return list(await asyncio.gather(*(self.deliver(m) for m in messages)))

    async def send(self, msg: Message) -> Reply:
        """Deliver ``msg`` here if this host serves its partition, else through the route."""
        if self.route is None or (msg[0] != SYSTEM and self.ownership.accepts(
                partition_of(msg[0], msg[1]), True)):
            return await self.deliver(msg, internal=True)
        return await self.route(msg)

    async def deliver(self, msg: Message, internal: bool = False) -> Reply:
        """Run one turn of actor ``(kind, key)``; its reply, once its state is persisted.

        A message for a partition this host does not serve (now) answers `NOT_OWNER` and runs
        nothing; ``internal`` (sent by a turn of this host) is accepted during a hand-off.
        """
        kind, key, method, args, request_id, fingerprint = msg
        if kind == SYSTEM:
            call = self.system.get(method)
            if call is None:
                return err(ValidationFailed("unknown_message", f"host.{method} is not a message"))
            return ok(await call(**args))
        cls = self.registry.get(kind)
        if cls is None or (method != "_deadline" and (
                method.startswith("_") or not callable(getattr(cls, method, None)))):
            return err(ValidationFailed("unknown_message", f"{kind}.{method} is not a message"))
        part = partition_of(kind, key)
        if not self.ownership.accepts(part, internal):
            self.refused += 1
            return err(Unavailable(NOT_OWNER, "this host does not serve that actor now; retry",
                                   [{"retry_after": 1, "partition": part}]))
        self._busy[part] += 1
        busy = self._deliveries
        busy[kind, key] = busy.get((kind, key), 0) + 1
        try:
            return await self._deliver(cls, kind, key, method, args, request_id, fingerprint)
        finally:
            if busy[kind, key] == 1:
                del busy[kind, key]
            else:
                busy[kind, key] -= 1
            self._busy[part] -= 1
            if not self._busy[part] and part in self._quiet:
                self._quiet[part].set()

    async def _deliver(self, cls: type[Actor], kind: str, key: str, method: str,
                       args: dict[str, Any], request_id: str | None,
                       fingerprint: str | None) -> Reply:
        for _ in range(3):
            try:
                actor = await self._get(cls, kind, key)
            except DomainError as e:
                return err(e)
            if actor._lock is None:
                actor._lock = asyncio.Lock()
            lock = actor._lock
            async with lock:
                if actor._gone:
                    continue  # passivated or restarted while we waited: re-activate
                reply, write = await self._turn(actor, method, args, request_id, fingerprint)
                pending = self.committer.submit(actor, write) if write is not None \
                    else actor._last_commit
                if write is not None:
                    actor._last_commit = pending
                if not actor._gone:
                    self._arm(actor)
            if not lock.locked() and not lock._waiters:  # type: ignore[attr-defined]
                actor._lock = None  # nobody queued: free the mailbox until the next message
            if pending is not None:
                try:
                    await asyncio.shield(pending)
                except DomainError as e:
                    return err(e)
                finally:
                    if actor._last_commit is pending and pending.done():
                        actor._last_commit = None
            if not actor._gone and not actor.resident():
                self._try_passivate(actor, own=1)
            return reply
        return err(Unavailable("actor_busy", "the actor kept restarting; retry"))

    # -- partitions coming and going -------------------------------------------------------
    async def release(self, parts: set[int]) -> int:
        """Hand-off: once ``parts`` are refused to new messages (the ownership's job), wait
        for their deliveries under way and every pending write, then passivate their actors.
        Answers how many actors left memory."""
        for p in parts:
            while self._busy[p]:
                ev = self._quiet.setdefault(p, asyncio.Event())
                ev.clear()
                await ev.wait()
            self._quiet.pop(p, None)
        await self.drain()
        return self.drop(parts)

    def drop(self, parts: set[int]) -> int:
        """Forget the actors of ``parts`` at once (the partition is another host's now: its
        late writes are fenced by the activation epoch). Answers how many left memory."""
        gone = [a for of_kind in self.actors.values() for a in of_kind.values()
                if partition_of(a.kind, a.key) in parts]
        # Keys minted here for those partitions may be created by their next owner: from now
        # on their activation reads the store.
        self.fresh = {k for k in self.fresh if partition_of(*k.split(":", 1)) not in parts}
        for a in gone:
            self._forget(a)
        return len(gone)

    async def _stats_call(self) -> dict[str, Any]:
        return self.stats()

    async def _turn(self, actor: Actor, method: str, args: dict[str, Any],
                    request_id: str | None, fingerprint: str | None) -> tuple[Reply, Write | None]:
        self.turns += 1
        now = self.clock.now()
        actor._last_turn = now
        storage_key = f"{actor.kind}:{actor.key}"
        if request_id is not None:
            rec = actor._idem.get(request_id) if actor._idem is not None else None
            if rec is not None and now - rec[2] < IDEMPOTENCY_TTL:
                if rec[0] != fingerprint:
                    return err(Conflict(
                        "idempotency_key_reused",
                        "this Idempotency-Key was used with another request",
                        [{"idempotency_key": request_id}])), None
                return tuple(rec[1]), None  # type: ignore[return-value]
        try:
            if method == "_deadline":
                d = actor.deadline()
                if d is not None and d <= now:
                    await actor.on_deadline()
                value = None
            else:
                with tracing.turn(actor.kind, actor.key, method):
                    value = await getattr(actor, method)(**args)
            reply = ok(value)
        except DomainError as e:
            reply = err(e)
        except Exception:
            log.exception("turn %s.%s of %s failed; restarting the actor", actor.kind, method,
                          actor.key)
            self._poison(actor)
            return err(Unavailable("internal_error", "the request failed; retry")), None
        if request_id is not None and (actor.exists() or actor.keeps_requests) and not (
                reply[0] == "err" and reply[1]["category"] in _UNRECORDED):
            self._remember(actor, request_id, fingerprint, reply, now)
        return reply, actor._take_write(storage_key)

    def _remember(self, actor: Actor, rid: str, fp: str | None, reply: Reply, now: float) -> None:
        """Record ``rid``'s reply; drop what expired and the caller's records past
        `IDEMPOTENCY_RECORDS` (oldest first), marking each for the next write."""
        if actor._idem is None:
            actor._idem = OrderedDict()
        idem = actor._idem
        idem[rid] = [fp, list(reply), now]
        actor.mark(f"i:{rid}")
        caller = _caller_of(rid)
        mine = 0
        for old in reversed(list(idem)):
            ttl = AUTO_ID_TTL if old.startswith(AUTO_ID_PREFIX) else IDEMPOTENCY_TTL
            if now - idem[old][2] >= ttl:
                del idem[old]
                actor.mark(f"i:{old}")
            elif _caller_of(old) == caller:
                mine += 1
                if mine > IDEMPOTENCY_RECORDS:
                    del idem[old]
                    actor.mark(f"i:{old}")

    # -- activation and passivation --------------------------------------------------------
    async def _get(self, cls: type[Actor], kind: str, key: str) -> Actor:
        actor = self.actors[kind].get(key)
        if actor is not None:
            return actor
        skey = f"{kind}:{key}"
        fut = self._activating.get(skey)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._activating[skey] = fut
        try:
            if skey in self.fresh:  # minted here: nothing stored yet, no read needed
                self.fresh.discard(skey)
                epoch, fields = NEW_EPOCH, {}
            else:
                epoch, fields = await self.store.activate(skey, partition_of(kind, key))
            actor = cls(key, self.ctx)
            actor.epoch = epoch
            idem = {k[2:]: v for k, v in fields.items() if k.startswith("i:")}
            if idem:
                actor._idem = OrderedDict(sorted(idem.items(), key=lambda kv: kv[1][2]))
            actor.load({k: v for k, v in fields.items() if not k.startswith("i:")})
            actor._stored_deadline = actor.deadline() if fields else None
            self.actors[kind][key] = actor
            self.activations += 1
            fut.set_result(actor)
            self._arm(actor)
            return actor
        except Exception as e:
            log.exception("activation of %s failed", skey)
            error = Unavailable("activation_failed", f"could not load {kind} {key}: {e}")
            fut.set_exception(error)
            fut.exception()  # consumed here; waiters get it through shield
            raise error from e
        finally:
            self._activating.pop(skey, None)

    def assume_new(self, kind: str, key: str) -> bool:
        """Let the next activation of actor ``(kind, key)`` skip the store's read, as for a
        key this host minted (`fresh`): for an id derived from something new, such as the
        order of a checkout's first try, which is almost never stored yet. If it is, after
        all, the actor's first write is refused (the store creates only what is absent), the
        actor leaves memory and its message answers Unavailable ``actor_moved``; sent again,
        it reads the record. Only for an actor of a partition this host serves, neither in
        memory nor being activated; answers whether the key was marked.
        """
        skey = f"{kind}:{key}"
        if key in self.actors.get(kind, ()) or skey in self._activating or \
                not self.ownership.accepts(partition_of(kind, key), False):
            return False
        self.note_fresh(skey)
        return True

    def note_fresh(self, skey: str) -> None:
        """Add storage key ``skey`` to `fresh` (past `MAX_FRESH` the set is emptied first:
        keys marked and never used are forgotten, no harm)."""
        if len(self.fresh) >= MAX_FRESH:
            self.fresh.clear()
        self.fresh.add(skey)

    def _poison(self, actor: Actor) -> None:
        actor._poisoned = True
        self._forget(actor)

    def _try_passivate(self, actor: Actor, own: int = 0) -> bool:
        """Drop an idle actor from memory once its last write is persisted, no turn runs and
        no delivery for it is under way but the caller's ``own`` (a queued message would
        otherwise find it gone and re-activate it: under a burst, again and again)."""
        if self._deliveries.get((actor.kind, actor.key), 0) > own or \
                (actor._lock is not None and actor._lock.locked()) or \
                (actor._last_commit is not None and not actor._last_commit.done()):
            return False
        self._forget(actor)
        return True

    def _forget(self, actor: Actor) -> None:
        of_kind = self.actors[actor.kind]
        if of_kind.get(actor.key) is actor:
            del of_kind[actor.key]
            self.passivations += 1
        actor._gone = True

    def _timer_due(self, actor: Actor) -> float | None:
        d = actor.deadline()
        if actor.passivate_after is not None:
            idle = actor._last_turn + actor.passivate_after
            d = idle if d is None else min(d, idle)
        return d

    def _arm(self, actor: Actor) -> None:
        """Make sure a timer fires no later than the actor's next deadline (lazy re-arming)."""
        due = self._timer_due(actor)
        if due is None or (actor._timer_at is not None and actor._timer_at <= due):
            return
        actor._timer_at = due
        self.clock.call_at(due, lambda: self._timer_fired(actor, due))

    async def _timer_fired(self, actor: Actor, at: float) -> None:
        if actor._timer_at != at or actor._gone:
            return
        actor._timer_at = None
        now = self.clock.now()
        d = actor.deadline()
        if d is not None and d <= now:
            await self.deliver((actor.kind, actor.key, "_deadline", {}, None, None), internal=True)
            return
        if actor.passivate_after is not None and \
                actor._last_turn + actor.passivate_after <= now and self._try_passivate(actor):
            return
        self._arm(actor)

    # -- deadlines kept in the store (they outlive this process) ---------------------------
    def start_sweeper(self) -> None:
        """Sweep the store's deadline index now and every ``sweep_interval`` seconds."""
        self._sweeper = self.clock.call_at(self.clock.now(), self._sweep)

    def stop_sweeper(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def _sweep(self) -> None:
        try:
            await self.sweep_once()
        except Exception:  # noqa: BLE001 - a sweep that fails is retried next interval
            log.exception("deadline sweep failed")
        if self._sweeper is not None:
            self._sweeper = self.clock.call_at(self.clock.now() + self.sweep_interval,
                                               self._sweep)

    async def sweep_once(self, limit: int = 1000, parts: list[int] | None = None) -> int:
        """Deliver ``_deadline`` to this host's actors whose stored deadline has passed, in
        ``parts`` (default: every partition it owns)."""
        owned = self.ownership.partitions() if parts is None else parts
        if not owned:
            return 0
        due = await self.store.due(self.clock.now(), limit, owned)
        mine = []
        for member, _ in due:
            kind, _, key = member.partition(":")
            if kind in self.registry and self.ownership.accepts(partition_of(kind, key), True):
                mine.append((kind, key, "_deadline", {}, None, None))
        if mine:
            await asyncio.gather(*(self.deliver(m, internal=True) for m in mine))
        return len(mine)

    async def drain(self) -> None:
        """Wait for every pending write (clean shutdown)."""
        while self.committer.task is not None and not self.committer.task.done():
            await asyncio.shield(self.committer.task)

    def stats(self) -> dict[str, Any]:
        return {"host": self.host_id, "actors": sum(map(len, self.actors.values())),
                "refused": self.refused,
                "turns": self.turns,
                "activations": self.activations, "passivations": self.passivations,
                "flushes": self.committer.flushes, "writes": self.committer.writes}
