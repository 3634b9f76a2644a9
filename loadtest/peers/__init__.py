"""Baseline peers of the cart engine for the comparative benchmark.

- `lua_peer`: the strongest conventional peer, FastAPI + redis.asyncio with one Lua script per
  cart mutation and per checkout (`lua_scripts`), orjson, cached token checks, one uvicorn
  worker per core. Its own app, not `common`'s.
- `raw_asgi`: the HTTP ceiling, a bare ASGI app answering a fixed 1.2 KB JSON body.
- The earlier peers, FastAPI apps sharing routes and cart logic (`common`, `domain`):
  `redis_peer` (a read-modify-write of Redis hashes per mutation, one worker), `memory_peer`
  (a bare dict) and `ray_per_cart` (one Ray actor per cart).

Run one with `python -m loadtest.peers.NAME --port P`.
"""
