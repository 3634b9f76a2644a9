"""redis-peer: the conventional design, a stateless API over Redis.

What a team would usually write: every request reads and writes Redis through one
`redis.asyncio` client (built in the app lifespan, closed at shutdown).

- A cart is a hash `{prefix}cart:{id}` (scalar fields plus one `line:{line_id}` field holding
  the line as JSON); a mutation is HGETALL, change, then HSET/HDEL in one MULTI/EXEC
  (last writer wins, like most such services).
- Stock is a counter `{prefix}stock:{variant}` in units. Checkout runs one Lua script that checks
  the cart is active and every line is covered, then decrements all counters and marks the cart
  checked_out: atomic, all-or-nothing, never below zero. A failed payment gives the units back
  with a second script; an admin delta goes through a floor-checked script.
- Orders are JSON strings `{prefix}order:{id}`, found again through `{prefix}idem:{cart}:{key}`.

    python -m loadtest.peers.redis_peer --port 8101 --redis-url redis://127.0.0.1:6379/15 \
        [--key-prefix bench:] [--catalog FILE] [--auth-secret S]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from loadtest.peers.common import serve
from loadtest.peers.domain import (
    ApiError,
    Cart,
    CartOp,
    Line,
    out_of_stock,
    stock_level,
    utc_now,
)
from loadtest.peers.lua_scripts import DELTA_LUA  # the same stock adjustment

#: Seconds a cart, order or idempotency record lives in Redis after its last write.
RECORD_TTL_S = 24 * 3600
LINE_FIELD = "line:"
SCALAR_FIELDS = ("cart_id", "owner", "currency", "status", "version",
                 "created_at", "updated_at", "expires_at")

# KEYS[1] cart hash, KEYS[2..n] stock counters; ARGV[1] updated_at, ARGV[2..n] units wanted.
# Answers {} when taken, {-1} when the cart is not active, else {index, units on hand, ...}.
TAKE_LUA = """
if redis.call('HGET', KEYS[1], 'status') ~= 'active' then return {-1} end
local short = {}
for i = 2, #KEYS do
  local have = tonumber(redis.call('GET', KEYS[i]) or '0')
  if have < tonumber(ARGV[i]) then
    table.insert(short, i - 1)
    table.insert(short, have)
  end
end
if #short > 0 then return short end
for i = 2, #KEYS do redis.call('DECRBY', KEYS[i], ARGV[i]) end
redis.call('HSET', KEYS[1], 'status', 'checked_out', 'updated_at', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'version', 1)
return {}
"""

# Same keys and arguments as TAKE_LUA: puts the units back and reopens the cart.
GIVE_BACK_LUA = """
for i = 2, #KEYS do redis.call('INCRBY', KEYS[i], ARGV[i]) end
redis.call('HSET', KEYS[1], 'status', 'active', 'updated_at', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
"""


def cart_to_hash(cart: Cart) -> dict[str, str]:
    """The hash fields of a cart: its scalars, and one JSON field per line."""
    fields = {name: str(getattr(cart, name)) for name in SCALAR_FIELDS}
    for line_id, line in cart.lines.items():
        fields[LINE_FIELD + line_id] = json.dumps(line.to_record(), separators=(",", ":"))
    return fields


def cart_from_hash(fields: Mapping[str, str]) -> Cart:
    """The cart stored by `cart_to_hash`."""
    scalars: dict[str, Any] = {name: fields[name] for name in SCALAR_FIELDS}
    scalars["version"] = int(scalars["version"])
    lines = {
        key[len(LINE_FIELD):]: Line.from_record(json.loads(value))
        for key, value in fields.items()
        if key.startswith(LINE_FIELD)
    }
    return Cart(**scalars, lines=lines)


class RedisBackend:
    """Carts, stock and orders in Redis (see `common.Backend` for the contract)."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self._take = client.register_script(TAKE_LUA)
        self._give_back = client.register_script(GIVE_BACK_LUA)
        self._delta = client.register_script(DELTA_LUA)

    def _cart_key(self, cart_id: str) -> str:
        return f"{self.prefix}cart:{cart_id}"

    def _stock_key(self, variant_id: str) -> str:
        return f"{self.prefix}stock:{variant_id}"

    def _checkout_keys(self, cart_id: str, wanted: Mapping[str, int]) -> tuple[list[str], list]:
        """KEYS and ARGV of the take and give-back scripts."""
        keys = [self._cart_key(cart_id)] + [self._stock_key(v) for v in wanted]
        return keys, [utc_now(), *wanted.values()]

    async def ready(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        await self.redis.aclose()

    async def seed_stock(self, stock: Mapping[str, int]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for variant_id, units in stock.items():
                pipe.set(self._stock_key(variant_id), units, nx=True)
            await pipe.execute()

    async def create_cart(self, cart: Cart) -> None:
        key = self._cart_key(cart.cart_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=cart_to_hash(cart))
            pipe.expire(key, RECORD_TTL_S)
            await pipe.execute()

    async def load_cart(self, cart_id: str) -> Cart | None:
        fields = await self.redis.hgetall(self._cart_key(cart_id))
        return cart_from_hash(fields) if fields else None

    async def mutate_cart(self, cart_id: str, op: CartOp) -> Cart | None:
        cart = await self.load_cart(cart_id)
        if cart is None:
            return None
        before = set(cart.lines)
        op(cart)
        key = self._cart_key(cart_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=cart_to_hash(cart))
            removed = [LINE_FIELD + line_id for line_id in before - set(cart.lines)]
            if removed:
                pipe.hdel(key, *removed)
            pipe.expire(key, RECORD_TTL_S)
            await pipe.execute()
        return cart

    async def take_stock(self, cart_id: str, wanted: Mapping[str, int]) -> None:
        keys, args = self._checkout_keys(cart_id, wanted)
        answer = await self._take(keys=keys, args=args)
        if answer and answer[0] == -1:
            raise ApiError(409, "cart_not_active", "the cart is not active")
        if answer:
            variants = list(wanted)
            raise out_of_stock([
                {"variant_id": variants[i - 1], "requested": wanted[variants[i - 1]],
                 "available": have}
                for i, have in zip(answer[::2], answer[1::2], strict=True)
            ])

    async def return_stock(self, cart_id: str, wanted: Mapping[str, int]) -> None:
        keys, args = self._checkout_keys(cart_id, wanted)
        await self._give_back(keys=keys, args=args)

    async def find_order(self, cart_id: str, key: str) -> dict[str, Any] | None:
        order_id = await self.redis.get(f"{self.prefix}idem:{cart_id}:{key}")
        if order_id is None:
            return None
        raw = await self.redis.get(f"{self.prefix}order:{order_id}")
        return None if raw is None else json.loads(raw)

    async def save_order(self, order: dict[str, Any], key: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{self.prefix}order:{order['order_id']}", json.dumps(order),
                     ex=RECORD_TTL_S)
            pipe.set(f"{self.prefix}idem:{order['cart_id']}:{key}", order["order_id"],
                     ex=RECORD_TTL_S)
            await pipe.execute()

    async def adjust_stock(
        self, variant_id: str, set_to: int | None, delta: int | None
    ) -> dict[str, Any]:
        key = self._stock_key(variant_id)
        if set_to is not None:
            await self.redis.set(key, set_to)
            return stock_level(variant_id, set_to)
        applied, units = await self._delta(keys=[key], args=[delta or 0])
        if not applied:
            raise ApiError(409, "stock_floor", f"{variant_id!r} has {units} units on hand")
        return stock_level(variant_id, units)

    async def stock_levels(self, variant_ids: list[str]) -> dict[str, int]:
        if not variant_ids:
            return {}
        values = await self.redis.mget([self._stock_key(v) for v in variant_ids])
        return {v: int(units or 0) for v, units in zip(variant_ids, values, strict=True)}


async def make_backend(options: argparse.Namespace) -> RedisBackend:
    """A backend over a new `redis.asyncio` client of `--redis-url` (the app's only one)."""
    client = aioredis.Redis.from_url(options.redis_url, decode_responses=True)
    return RedisBackend(client, options.key_prefix)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The redis-peer's own options."""
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15",
                        help="Redis to keep carts, stock and orders in")
    parser.add_argument("--key-prefix", default="bench:", help="prefix of every Redis key")


def main(argv: list[str] | None = None) -> None:
    """Serve redis-peer (see the module docstring)."""
    serve("redis-peer: conventional Redis-backed cart API", make_backend, argv, add_arguments)


if __name__ == "__main__":
    main()
