"""lua-peer: the strongest conventional peer, a stateless FastAPI app over Redis Lua scripts.

What a competent team would deploy on one machine in a day: FastAPI with pydantic request
bodies, one `redis.asyncio` client per worker, ONE Lua script per cart mutation (the cart is a
Redis hash; the script checks ownership, status, catalog, limits, applies the change and
answers the new cart), orjson responses, an LRU of verified JWTs, and as many uvicorn worker
processes as cores (`--workers`, default `os.cpu_count()`). A checkout is one Lua script that
takes every line's units or none, records the order and its Idempotency-Key and closes the
cart. Key layout and scripts: `loadtest.peers.lua_scripts`.

A purchase by a guest is three Redis calls: HSET (+EXPIRE, pipelined) for the cart, one
EVALSHA to add the unit, one EVALSHA for the checkout; a view is one read-only script. Every
script answers the cart as one JSON string, which orjson decodes: redis-py's RESP parser is
pure Python without hiredis, and parsing a cart hash field by field cost more than the rest of
the request. The test payment provider answers at
once, so the payment is authorized before the checkout script, which refuses a failed one
without taking anything (`tok_slow` waits `SLOW_PAYMENT_S` first).

Serves the API.md subset of `loadtest.peers.common` (guest carts, add / PATCH / DELETE / GET,
checkout, products listing, admin product PUT and stock); an add without `variant_id` means
the variant named like its product (no `variant_required` check). The catalog file is loaded into
Redis once by the parent process before the workers start, so every worker sees the same
catalog and admin changes.

    python -m loadtest.peers.lua_peer --port 8102 --redis-url redis://127.0.0.1:6379/15 \
        [--workers N] [--key-prefix lp:] [--catalog FILE] [--auth-secret S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any

import jwt
import orjson
import redis
import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from loadtest.peers.common import (
    DEV_SECRET,
    GUEST_TOKEN_TTL,
    SLOW_PAYMENT_S,
    AddItemIn,
    CatalogEntryIn,
    CheckoutIn,
    PatchItemIn,
    ProductIn,
    StockIn,
    on_http_error,
    on_validation_error,
)
from loadtest.peers.domain import (
    CART_TTL,
    MAX_LINES,
    MAX_QUANTITY,
    ApiError,
    format_time,
    line_id_for,
    money,
    new_id,
    stock_level,
)
from loadtest.peers.lua_scripts import ADD_LUA, CHECKOUT_LUA, DELTA_LUA, SET_LUA, VIEW_LUA

#: Seconds a cart lives after its last write, and an order or idempotency record after its own.
CART_TTL_S = int(CART_TTL.total_seconds())
RECORD_TTL_S = 24 * 3600
#: Verified tokens kept (an LRU per worker): a repeated token costs a dict lookup, not HMAC.
TOKEN_CACHE_SIZE = 65_536
#: Environment variables that carry the options from the parent to the uvicorn workers.
ENV_REDIS, ENV_PREFIX, ENV_SECRET = "LUA_PEER_REDIS_URL", "LUA_PEER_PREFIX", "LUA_PEER_SECRET"
SCALARS = ("owner", "status", "currency", "version", "created_at", "updated_at", "expires_at")
AuthHeader = Annotated[str | None, Header(alias="Authorization")]
KeyHeader = Annotated[str | None, Header(alias="Idempotency-Key")]


def utc_now() -> str:
    """Now as an RFC 3339 UTC string (seconds)."""
    return format_time(datetime.now(UTC))


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    """An orjson-encoded JSON answer."""
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


def api_error_response(error: ApiError) -> Response:
    """The API.md error body of `error`."""
    return json_response(error.body(), error.status)


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified bearer token says: subject, the guest's cart (if any), role, expiry
    (POSIX seconds)."""

    sub: str
    cart_id: str | None
    admin: bool
    exp: float


class TokenCache:
    """HS256 bearer tokens (RFC 7519) verified once and kept in an LRU of `size` tokens.

    A cached token is still refused once its `exp` has passed; an invalid token is never
    cached (the decoder raises, and `lru_cache` keeps only answers).
    """

    def __init__(self, secret: str, size: int = TOKEN_CACHE_SIZE) -> None:
        self.secret = secret
        self._verify = lru_cache(maxsize=size)(self._verify_uncached)

    def _verify_uncached(self, token: str) -> Claims:
        claims = jwt.decode(token, self.secret, algorithms=["HS256"])
        return Claims(str(claims.get("sub", "")), claims.get("cart_id"),
                      claims.get("role") == "admin", float(claims.get("exp", float("inf"))))

    def caller(self, authorization: str | None) -> Claims:
        """The verified claims of an `Authorization: Bearer` header; ApiError 401 otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthenticated", "a Bearer token is required")
        try:
            claims = self._verify(token)
        except jwt.PyJWTError as exc:
            raise ApiError(401, "invalid_token", f"the token is not valid: {exc}") from exc
        if claims.exp <= time.time():
            raise ApiError(401, "invalid_token", "the token has expired")
        return claims

    def admin(self, authorization: str | None) -> Claims:
        """The caller, who must hold `role: admin` (else 403)."""
        claims = self.caller(authorization)
        if not claims.admin:
            raise ApiError(403, "forbidden", "this route needs an admin token")
        return claims

    def guest_token(self, cart_id: str, owner: str) -> str:
        """A token for the guest who owns `cart_id` (valid for `GUEST_TOKEN_TTL`)."""
        exp = datetime.now(UTC) + GUEST_TOKEN_TTL
        claims = {"sub": owner, "cart_id": cart_id, "role": "guest", "exp": exp}
        return jwt.encode(claims, self.secret, algorithm="HS256")


# --------------------------------------------------------------------------- rendering


def render_lines(fields: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
    """The API.md lines of a cart hash (in the order they were added) and their subtotal in
    minor units."""
    lines, subtotal = [], 0
    for name, raw in fields.items():
        if not name.startswith("d:"):
            continue
        line_id = name[2:]
        data = orjson.loads(raw)
        quantity = int(fields["q:" + line_id])
        currency = data["currency"]
        total = data["unit_price"] * quantity
        subtotal += total
        lines.append((data["seq"], {
            "line_id": line_id, "product_id": data["product_id"],
            "variant_id": data["variant_id"], "name": data["name"], "quantity": quantity,
            "unit_price": money(data["unit_price"], currency),
            "options": orjson.loads(data["options"]), "added_at": data["added_at"],
            "updated_at": fields["t:" + line_id], "line_total": money(total, currency),
            "discounts": [],
        }))
    lines.sort(key=lambda pair: pair[0])
    return [line for _, line in lines], subtotal


def totals(subtotal: int, currency: str) -> dict[str, Any]:
    """API.md totals (no promotions, shipping or tax here), minor units."""
    zero = money(0, currency)
    return {"subtotal": money(subtotal, currency), "discount": zero, "shipping": zero,
            "tax": zero, "total": money(subtotal, currency)}


def render_cart(cart_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """The API.md Cart of a cart hash."""
    lines, subtotal = render_lines(fields)
    currency = fields["currency"]
    return {"cart_id": cart_id, "owner": fields["owner"], "status": fields["status"],
            "currency": currency, "version": int(fields["version"]),
            "created_at": fields["created_at"], "updated_at": fields["updated_at"],
            "expires_at": fields["expires_at"], "lines": lines, "discounts": [],
            "totals": totals(subtotal, currency)}


def render_order(fields: dict[str, str]) -> dict[str, Any]:
    """The API.md Order of an order hash (the cart's fields at checkout)."""
    lines, subtotal = render_lines(fields)
    order_totals = totals(subtotal, fields["currency"])
    return {"order_id": fields["order_id"], "cart_id": fields["cart_id"],
            "owner": fields["owner"], "status": "paid", "lines": lines, "totals": order_totals,
            "payment": {"provider": "test", "status": "captured",
                        "amount": order_totals["total"]},
            "created_at": fields["paid_at"]}


def payment_outcome(token: str) -> str:
    """The test provider's answer: ``ok`` (tok_ok, tok_slow), ``error`` (tok_error, a 503),
    else ``declined`` (402)."""
    if token in ("tok_ok", "tok_slow"):
        return "ok"
    return "error" if token == "tok_error" else "declined"


# --------------------------------------------------------------------------- the service


class LuaPeer:
    """Routes' logic over one `redis.asyncio` client and the four scripts."""

    def __init__(self, client: aioredis.Redis, prefix: str, tokens: TokenCache) -> None:
        self.redis = client
        self.prefix = prefix
        self.tokens = tokens
        self._view = client.register_script(VIEW_LUA)
        self._add = client.register_script(ADD_LUA)
        self._set = client.register_script(SET_LUA)
        self._checkout = client.register_script(CHECKOUT_LUA)
        self._delta = client.register_script(DELTA_LUA)

    def key(self, kind: str, ident: str) -> str:
        """`{prefix}{kind}:{ident}` (kinds in `lua_scripts`)."""
        return f"{self.prefix}{kind}:{ident}"

    def guard(self, cart_id: str, authorization: str | None) -> list[str]:
        """ARGV[1..2] of every cart script: the caller's sub, "1" if the token names the cart."""
        claims = self.tokens.caller(authorization)
        return [claims.sub, "1" if claims.cart_id == cart_id else "0"]

    @staticmethod
    def answer(cart_id: str, reply: list[Any]) -> dict[str, Any]:
        """The cart a script answered, or the ApiError it reported."""
        if reply[0] == "e":
            raise ApiError(int(reply[1]), reply[2], reply[3])
        return render_cart(cart_id, orjson.loads(reply[1]))

    async def create_guest_cart(self) -> dict[str, Any]:
        cart_id, owner, now = new_id("cart"), new_id("guest"), datetime.now(UTC)
        stamp = format_time(now)
        fields = {"owner": owner, "status": "active", "currency": "USD", "version": 1,
                  "created_at": stamp, "updated_at": stamp,
                  "expires_at": format_time(now + CART_TTL), "n": 0, "seq": 0}
        key = self.key("c", cart_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, CART_TTL_S)
            await pipe.execute()
        cart = render_cart(cart_id, {k: str(v) for k, v in fields.items()})
        return dict(cart, token=self.tokens.guest_token(cart_id, owner))

    async def get_cart(self, cart_id: str, authorization: str | None) -> dict[str, Any]:
        reply = await self._view(keys=[self.key("c", cart_id)],
                                 args=self.guard(cart_id, authorization))
        return self.answer(cart_id, reply)

    async def add_item(self, cart_id: str, authorization: str | None,
                       body: AddItemIn) -> dict[str, Any]:
        guard = self.guard(cart_id, authorization)
        variant_id = body.variant_id or body.product_id
        options = orjson.dumps(dict(sorted(body.options.items()))).decode()
        reply = await self._add(
            keys=[self.key("c", cart_id), self.key("v", variant_id),
                  self.key("p", body.product_id), self.key("s", variant_id)],
            args=[*guard, line_id_for(variant_id, body.options), body.product_id,
                  body.quantity, utc_now(), options, CART_TTL_S, MAX_LINES, MAX_QUANTITY,
                  variant_id])
        return self.answer(cart_id, reply)

    async def set_quantity(self, cart_id: str, authorization: str | None, line_id: str,
                           quantity: int) -> dict[str, Any]:
        guard = self.guard(cart_id, authorization)
        reply = await self._set(keys=[self.key("c", cart_id)],
                                args=[*guard, line_id, quantity, utc_now(), CART_TTL_S])
        return self.answer(cart_id, reply)

    async def checkout(self, cart_id: str, authorization: str | None, body: CheckoutIn,
                       key: str) -> dict[str, Any]:
        guard = self.guard(cart_id, authorization)
        if body.payment.token == "tok_slow":
            await asyncio.sleep(SLOW_PAYMENT_S)
        order_id, now = new_id("ord"), utc_now()
        reply = await self._checkout(
            keys=[self.key("c", cart_id), self.key("i", f"{cart_id}:{key}")],
            args=[*guard, payment_outcome(body.payment.token), order_id, now, RECORD_TTL_S,
                  self.prefix])
        kind = reply[0]
        if kind == "e":
            raise ApiError(int(reply[1]), reply[2], reply[3])
        if kind == "short":
            flat = reply[1]
            raise ApiError(409, "out_of_stock", "not enough stock for some lines", [
                {"variant_id": flat[i], "requested": int(flat[i + 1]),
                 "available": int(flat[i + 2])} for i in range(0, len(flat), 3)])
        if kind == "replay":
            return render_order(orjson.loads(reply[1]))
        fields = orjson.loads(reply[1])
        fields.update(order_id=order_id, cart_id=cart_id, paid_at=now)
        return render_order(fields)

    async def products(self, limit: int, cursor: str | None) -> dict[str, Any]:
        low = f"({cursor}" if cursor else "-"
        ids = await self.redis.zrangebylex(self.key("products", "all"), low, "+", 0, limit + 1)
        chosen = ids[:limit]
        bodies = await self.redis.mget([self.key("p", pid) for pid in chosen]) if chosen else []
        items = []
        for body in bodies:
            if body is None:
                continue
            product = orjson.loads(body)
            variants = [v["variant_id"] for v in product["variants"]]
            units = await self.redis.mget([self.key("s", v) for v in variants])
            for variant, on_hand in zip(product["variants"], units, strict=True):
                variant["available"] = int(on_hand or 0)
            items.append(product)
        return {"items": items, "next_cursor": chosen[-1] if len(ids) > limit else None}

    async def adjust_stock(self, variant_id: str, body: StockIn) -> dict[str, Any]:
        key = self.key("s", variant_id)
        if body.set is not None:
            await self.redis.set(key, body.set)
            return stock_level(variant_id, body.set)
        applied, units = await self._delta(keys=[key], args=[body.delta or 0])
        if not applied:
            raise ApiError(409, "stock_floor", f"{variant_id!r} has {units} units on hand")
        return stock_level(variant_id, int(units))


def product_records(prefix: str, product_id: str, body: dict[str, Any]
                    ) -> tuple[dict[str, dict[str, Any]], dict[str, int], dict[str, Any]]:
    """The variant hashes, initial stock (units) and listing body of a product body."""
    variants = body.get("variants") or [{"variant_id": product_id}]
    hashes, stock, listed = {}, {}, []
    for raw in variants:
        price = raw.get("price") or body["price"]
        hashes[f"{prefix}v:{raw['variant_id']}"] = {
            "product_id": product_id, "name": str(body["name"]),
            "price": int(price["amount"]), "currency": str(price["currency"])}
        if raw.get("stock") is not None:
            stock[raw["variant_id"]] = int(raw["stock"])
        listed.append({"variant_id": raw["variant_id"], "sku": raw.get("sku") or
                       raw["variant_id"], "attributes": dict(raw.get("attributes") or {}),
                       "price": money(int(price["amount"]), str(price["currency"]))})
    listing = {"product_id": product_id, "name": body["name"],
               "description": body.get("description", ""),
               "category": body.get("category", ""), "price": body["price"],
               "variants": listed}
    return hashes, stock, listing


def store_product(client: Any, prefix: str, product_id: str, body: dict[str, Any],
                  overwrite_stock: bool) -> Any:
    """Queue a product's writes on a pipeline `client` (sync or async); stock is SET, or SET
    NX when `overwrite_stock` is false (a restart keeps what was sold)."""
    hashes, stock, listing = product_records(prefix, product_id, body)
    for key, mapping in hashes.items():
        client.delete(key)
        client.hset(key, mapping=mapping)
    for variant_id, units in stock.items():
        client.set(f"{prefix}s:{variant_id}", units, nx=not overwrite_stock)
    client.set(f"{prefix}p:{product_id}", orjson.dumps(listing))
    client.zadd(f"{prefix}products:all", {product_id: 0})
    return listing


def seed_catalog(redis_url: str, prefix: str, path: str | None) -> int:
    """Load a catalog file into Redis before the workers start; answers the products loaded."""
    if path is None:
        return 0
    with open(path, "rb") as handle:
        entries = [CatalogEntryIn.model_validate(raw) for raw in orjson.loads(handle.read())]
    client = redis.Redis.from_url(redis_url)
    try:
        with client.pipeline(transaction=False) as pipe:
            for entry in entries:
                body = entry.model_dump(exclude_none=True)
                store_product(pipe, prefix, body.pop("product_id"), body, overwrite_stock=False)
            pipe.execute()
    finally:
        client.close()
    return len(entries)


# --------------------------------------------------------------------------- app


def peer_of(request: Request) -> LuaPeer:
    return request.app.state.peer


def create_app() -> FastAPI:
    """The app of one worker; options come from the `LUA_PEER_*` environment variables."""
    redis_url = os.environ.get(ENV_REDIS, "redis://127.0.0.1:6379/15")
    prefix = os.environ.get(ENV_PREFIX, "lp:")
    secret = os.environ.get(ENV_SECRET, DEV_SECRET)

    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        app.state.peer = LuaPeer(client, prefix, TokenCache(secret))
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(title="lua-peer", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)

    async def on_api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return api_error_response(exc)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        try:
            ready = bool(await peer_of(request).redis.ping())
        except redis.RedisError:
            ready = False
        return json_response({"status": "ready" if ready else "unavailable"},
                             200 if ready else 503)

    @app.post("/v1/carts")
    async def create_cart(request: Request, authorization: AuthHeader = None) -> Response:
        peer = peer_of(request)
        if authorization:
            claims = peer.tokens.caller(authorization)
            if claims.cart_id is not None:
                cart = await peer.get_cart(claims.cart_id, authorization)
                if cart["status"] == "active":
                    return json_response(cart, 200, {"ETag": f'"{cart["version"]}"'})
        return json_response(await peer.create_guest_cart(), 201)

    @app.get("/v1/carts/{cart_id}")
    async def get_cart(request: Request, cart_id: str,
                       authorization: AuthHeader = None) -> Response:
        return cart_answer(await peer_of(request).get_cart(cart_id, authorization))

    @app.post("/v1/carts/{cart_id}/items")
    async def add_item(request: Request, cart_id: str, body: AddItemIn,
                       authorization: AuthHeader = None) -> Response:
        return cart_answer(await peer_of(request).add_item(cart_id, authorization, body))

    @app.patch("/v1/carts/{cart_id}/items/{line_id}")
    async def patch_item(request: Request, cart_id: str, line_id: str, body: PatchItemIn,
                         authorization: AuthHeader = None) -> Response:
        return cart_answer(await peer_of(request).set_quantity(
            cart_id, authorization, line_id, body.quantity))

    @app.delete("/v1/carts/{cart_id}/items/{line_id}")
    async def delete_item(request: Request, cart_id: str, line_id: str,
                          authorization: AuthHeader = None) -> Response:
        return cart_answer(await peer_of(request).set_quantity(cart_id, authorization,
                                                                line_id, 0))

    @app.post("/v1/carts/{cart_id}/checkout")
    async def checkout(request: Request, cart_id: str, body: CheckoutIn,
                       authorization: AuthHeader = None,
                       idempotency_key: KeyHeader = None) -> Response:
        key = idempotency_key or new_id("idem")
        order = await peer_of(request).checkout(cart_id, authorization, body, key)
        return json_response(order, 201)

    @app.get("/v1/products")
    async def list_products(request: Request, limit: int = 50,
                            cursor: str | None = None) -> Response:
        page = await peer_of(request).products(max(1, min(limit, 200)), cursor)
        return json_response(page)

    @app.put("/v1/admin/products/{product_id}")
    async def put_product(request: Request, product_id: str, body: ProductIn,
                          authorization: AuthHeader = None) -> Response:
        peer = peer_of(request)
        peer.tokens.admin(authorization)
        async with peer.redis.pipeline(transaction=True) as pipe:
            listing = store_product(pipe, prefix, product_id, body.model_dump(exclude_none=True),
                                    overwrite_stock=True)
            await pipe.execute()
        return json_response(listing)

    @app.post("/v1/admin/stock/{variant_id}")
    async def adjust_stock(request: Request, variant_id: str, body: StockIn,
                           authorization: AuthHeader = None) -> Response:
        peer = peer_of(request)
        peer.tokens.admin(authorization)
        return json_response(await peer.adjust_stock(variant_id, body))

    return app


def cart_answer(cart: dict[str, Any]) -> Response:
    """A cart answer with its ETag (the cart version)."""
    return json_response(cart, 200, {"ETag": f'"{cart["version"]}"'})


def main(argv: list[str] | None = None) -> None:
    """Seed the catalog, then serve with `--workers` uvicorn workers until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--catalog", help="catalog file: a JSON list of product entries")
    parser.add_argument("--auth-secret",
                        default=os.environ.get("CART_ENGINE_AUTH_SECRET", DEV_SECRET),
                        help="HS256 secret of the bearer tokens (env CART_ENGINE_AUTH_SECRET)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--key-prefix", default="lp:", help="prefix of every Redis key")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="uvicorn worker processes (default: one per core)")
    options = parser.parse_args(argv)
    seed_catalog(options.redis_url, options.key_prefix, options.catalog)
    os.environ.update({ENV_REDIS: options.redis_url, ENV_PREFIX: options.key_prefix,
                       ENV_SECRET: options.auth_secret})
    uvicorn.run("loadtest.peers.lua_peer:create_app", factory=True, host=options.host,
                port=options.port, workers=max(1, options.workers), log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
