"""What one hop between two hosts costs: CPU per message over the hosts' channel.

Usage (from the project root, with the project's venv):

    python -m loadtest.hop_bench [--messages 20000] [--concurrency 1,8,32] [--body 1200]
        [--json]

A `actors.channel.ChannelServer` runs in a child process and answers every message with a
``--body``-byte reply (about a rendered cart); this process sends ``--messages`` one-message
requests through a `actors.router.BatchingRouter`, ``--concurrency`` at a time, as an
ingress forwarding cart requests does. It prints, per concurrency: messages per second,
messages per batch, and the CPU time per message of each side (``time.process_time`` here,
``/proc`` times of the server process there).

Why: with one message per batch (a host forwarding a few hundred requests a second) the
fixed cost of a round trip (two writes, two wake-ups, the frames' tasks) dominates, and it
sets how much an ingress on every host can gain on a small machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from typing import Any

from actors.channel import TOKEN_BYTES, ChannelClient, ChannelServer
from actors.router import BatchingRouter
from actors.runtime import Message, Reply, ok


def _serve(token: bytes, body: int, ready: Any) -> None:
    import uvloop

    async def main() -> None:
        async def handler(batch: list[Message]) -> list[Reply]:
            return [ok([200, [], b"x" * body]) for _ in batch]

        server = ChannelServer(handler, token)
        ready.send((await server.start("127.0.0.1"))[1])
        await asyncio.Event().wait()

    uvloop.run(main())


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(port: int, token: bytes, server_pid: int, messages: int,
                   concurrency: int) -> dict[str, Any]:
    client = ChannelClient(("127.0.0.1", port), token)

    async def call(_: Any, batch: list[Message], on_reply: Any = None) -> list[Reply]:
        return await client.call(batch, on_reply)  # type: ignore[no-any-return]

    router = BatchingRouter(call, n_hosts=1, stream_replies=True)
    msg: Message = ("_host", "h0", "http", {"method": "GET", "path": "/v1/carts/c_1",
                                            "headers": [[b"authorization", b"Bearer " +
                                                         b"t" * 200]], "body": b""},
                    None, None)
    await router.send(msg)  # connect and authenticate outside the measurement

    async def worker(n: int) -> None:
        for _ in range(n):
            await router.send(msg)

    per = messages // concurrency
    batches0 = router.batches
    server0, own0, t0 = _cpu_seconds(server_pid), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(per) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    own, server = time.process_time() - own0, _cpu_seconds(server_pid) - server0
    sent = per * concurrency
    await client.close()
    return {"concurrency": concurrency, "messages": sent,
            "messages_per_s": round(sent / wall),
            "messages_per_batch": round(sent / max(1, router.batches - batches0), 1),
            "caller_cpu_us": round(own / sent * 1e6, 1),
            "host_cpu_us": round(server / sent * 1e6, 1)}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--concurrency", type=lambda v: [int(x) for x in v.split(",")],
                   default=[1, 8, 32])
    p.add_argument("--body", type=int, default=1200, help="reply bytes (a rendered cart)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = p.parse_args(argv)
    import uvloop

    token = os.urandom(TOKEN_BYTES)
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(token, args.body, theirs), daemon=True)
    server.start()
    try:
        port = ours.recv()
        rows = [uvloop.run(_measure(port, token, server.pid or 0, args.messages, c))
                for c in args.concurrency]
    finally:
        server.terminate()
        server.join()
    if args.json:
        print(json.dumps(rows))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="one hop over the hosts' channel, per message")
        for col in ("concurrency", "messages/s", "messages/batch", "caller CPU us",
                    "host CPU us"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(str(r["concurrency"]), f"{r['messages_per_s']:,}",
                          str(r["messages_per_batch"]), str(r["caller_cpu_us"]),
                          str(r["host_cpu_us"]))
        Console().print(table)
    return rows


if __name__ == "__main__":
    main()
