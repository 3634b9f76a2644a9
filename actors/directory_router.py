"""Routing that follows the partition directory, re-sending what bounced.

Each message goes to the owner of its partition in this process's copy of the directory
(`actors.membership.ClusterView`): run here if this process hosts that owner, else batched
to it over the channel (`actors.router.BatchingRouter`). When it bounces, the copy is
refreshed and the message sent again to the owner it names, with backoff, for up to
`RESEND_DEADLINE` seconds; then the caller gets 503 ``host_unavailable`` with Retry-After.

What may be sent again, so that no mutation runs twice:
- a ``not_owner`` answer, or a batch that never left (`actors.router.NotSent`): nothing ran;
- a message whose reply was lost (the host died with it in flight) or whose write was fenced
  (``actor_moved``) only if it is `actors.placement.resendable`: it carries a request id,
  which the actor records with its reply in the same write as the change, so the new owner
  answers a repeat from that record; or its method is idempotent by design. A message that
  crosses hosts without a request id is given one first (`AUTO_ID_PREFIX`), which the actor
  keeps for `AUTO_ID_TTL` seconds, longer than any re-send.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

from actors.membership import ClusterView
from actors.router import BatchingRouter, NotSent, unavailable
from actors.runtime import AUTO_ID_PREFIX, NOT_OWNER, SYSTEM, Host, Message, Reply, partition_of

log = logging.getLogger(__name__)

#: Seconds a message keeps being re-sent while its partition has no reachable owner:
#: longer than a lease (`actors.directory.LEASE`) plus a restart, so a host's death costs
#: callers a delay rather than an error.
RESEND_DEADLINE = 10.0
#: First and largest pause between re-sends, seconds.
BACKOFF_FIRST, BACKOFF_MAX = 0.02, 0.5

#: Makes (or finds) the channel client to a host at an address: ``call(batch)``.
Connect = Callable[[tuple[str, int]], Any]


class DirectoryRouter:
    """Sends messages to the owners of their partitions; ``local``: the host of this process
    (None for a process that hosts no actors, such as a test driver)."""

    def __init__(self, view: ClusterView, connect: Connect, local: Host | None,
                 resendable: Callable[[Message], bool], *, max_delay: float = 0.001,
                 max_batch: int = 256, max_queue: int = 20_000,
                 deadline: float = RESEND_DEADLINE) -> None:
        self.view = view
        self.connect = connect
        self.local = local
        self.resendable = resendable
        self.deadline = deadline
        self.batcher = BatchingRouter(self._call, max_delay=max_delay, max_batch=max_batch,
                                      max_queue=max_queue, stream_replies=True)
        self._clients: dict[tuple[str, int], Any] = {}
        self.resent = 0
        self.gave_up = 0

    async def _call(self, host_id: str, batch: list[Message],
                    on_reply: Callable[[int, Reply], None]) -> list[Reply]:
        address = self.view.address(host_id)
        if address is None:
            raise NotSent(f"host {host_id} is not in the directory")
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = self.connect(address)
        return await client.call(batch, on_reply)  # type: ignore[no-any-return]

    async def send(self, msg: Message) -> Reply:
        """Deliver ``msg`` to the owner of its actor (or, for `SYSTEM` messages, to the host
        it names) and await the reply."""
        loop = asyncio.get_running_loop()
        give_up = None
        pause = BACKOFF_FIRST
        while True:
            reply, msg = await self._once(msg)
            if reply[0] == "ok" or not self._again(msg, reply[1]):
                return reply
            if give_up is None:
                give_up = loop.time() + self.deadline
            elif loop.time() >= give_up:
                self.gave_up += 1
                return unavailable(True) if reply[1]["code"] == NOT_OWNER else reply
            self.resent += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, BACKOFF_MAX)
            try:
                await self.view.refresh()
            except Exception as e:  # noqa: BLE001 - no directory, no routing: fail fast
                log.warning("directory unreachable while re-sending: %s", e)
                return reply

    async def _once(self, msg: Message) -> tuple[Reply, Message]:
        """One attempt: the reply, and the message as sent (with an id it was given)."""
        owner = msg[1] if msg[0] == SYSTEM else self.view.owners[partition_of(msg[0], msg[1])]
        if not owner:
            return unavailable(False), msg
        if self.local is not None and owner == self.local.host_id:
            return await self.local.deliver(msg), msg
        if msg[4] is None and msg[0] != SYSTEM and not self.resendable(msg):
            # Crossing hosts may lose the reply: give the message an id to be re-sent by.
            msg = (*msg[:4], f"{AUTO_ID_PREFIX}{secrets.token_hex(8)}", msg[5])
        return await self.batcher.send_to(owner, msg), msg

    def _again(self, msg: Message, error: dict[str, Any]) -> bool:
        code = error.get("code")
        if code == NOT_OWNER:
            return True
        if code == "host_unavailable":
            sent = any(d.get("sent", True) for d in error.get("details") or ())
            return not sent or self.resendable(msg)
        return code == "actor_moved" and self.resendable(msg)

    async def broadcast(self, method: str, args: dict[str, Any]) -> list[Reply]:
        """Send a `SYSTEM` message to every live host; their replies, in host id order."""
        return list(await asyncio.gather(*(
            self.send((SYSTEM, h, method, args, None, None)) for h in self.view.live())))

    def stats(self) -> dict[str, Any]:
        s = self.batcher.stats()
        s.update(resent=self.resent, gave_up=self.gave_up)
        return s

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()
        self._clients.clear()

