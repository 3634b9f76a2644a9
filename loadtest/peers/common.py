"""The HTTP side shared by the baseline peers: request models, auth, routes and the CLI.

A peer is a `Backend` (where carts, stock and orders live) plugged into `build_app`; the routes,
validation, tokens, totals and the checkout flow are written once, here and in `domain`, so the
peers differ only in their storage. They implement the API.md subset the load-test scenarios
use:

    POST /v1/carts                              guest cart (201, with its `token`)
    GET  /v1/carts/{cart_id}                    cart with totals (integer minor units)
    POST /v1/carts/{cart_id}/items              {product_id, variant_id?, quantity, options?}
    PATCH/DELETE /v1/carts/{cart_id}/items/{line_id}
    POST /v1/carts/{cart_id}/checkout           {payment: {token}} + Idempotency-Key -> 201 Order
    GET  /v1/products, PUT /v1/admin/products/{product_id}, POST /v1/admin/stock/{variant_id}
    GET  /healthz, GET /readyz

Idempotency-Key replays answer the first order without comparing bodies.
Not implemented: users' carts, discounts, merge, If-Match, expiry, orders lookup, metrics.
Tokens are HS256 JWTs signed with `--auth-secret` (a guest token names its cart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any, Protocol

import jwt
import uvicorn
from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from loadtest.peers.domain import (
    MAX_QUANTITY,
    ApiError,
    Cart,
    CartOp,
    Catalog,
    build_order,
    new_id,
    payment_outcome,
    utc_now,
)

#: Lifetime of a guest token.
GUEST_TOKEN_TTL = timedelta(days=1)
#: Delay of the `tok_slow` test payment token, in seconds.
SLOW_PAYMENT_S = 2.0
#: Seconds a client should wait after a 503 before retrying.
RETRY_AFTER_S = 1
#: Development secret (32 bytes, the HS256 minimum); never use it beyond loopback tests.
DEV_SECRET = "dev-only-secret-0123456789abcdef"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"


# --------------------------------------------------------------------------- request bodies


class MoneyIn(BaseModel):
    """Money: an integer `amount` of minor units of an ISO 4217 `currency`."""

    amount: int = Field(ge=0, le=10**12)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class VariantIn(BaseModel):
    """A variant of a product body; `stock` (units) only in catalog files and product PUTs."""

    variant_id: str = Field(pattern=ID_PATTERN)
    sku: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    price: MoneyIn | None = None
    stock: int | None = Field(default=None, ge=0)


class ProductIn(BaseModel):
    """The body of `PUT /v1/admin/products/{product_id}`."""

    name: str = Field(min_length=1)
    description: str = ""
    category: str = ""
    price: MoneyIn
    variants: list[VariantIn] = Field(default_factory=list)


class CatalogEntryIn(ProductIn):
    """One entry of a catalog file: a product body with its id."""

    product_id: str = Field(pattern=ID_PATTERN)


class AddItemIn(BaseModel):
    """The body of `POST /v1/carts/{cart_id}/items`; `quantity` in units."""

    product_id: str
    variant_id: str | None = None
    quantity: int = Field(ge=1, le=MAX_QUANTITY)
    options: dict[str, str] = Field(default_factory=dict)


class PatchItemIn(BaseModel):
    """The body of `PATCH /v1/carts/{cart_id}/items/{line_id}`; 0 removes the line."""

    quantity: int = Field(ge=0, le=MAX_QUANTITY)


class StockIn(BaseModel):
    """The body of `POST /v1/admin/stock/{variant_id}`: exactly one of `set` or `delta` (units)."""

    set: int | None = Field(default=None, ge=0)
    delta: int | None = None

    @model_validator(mode="after")
    def _one_of(self) -> StockIn:
        if (self.set is None) == (self.delta is None):
            raise ValueError("give exactly one of set or delta")
        return self


class PaymentIn(BaseModel):
    """A payment method: a test-provider token such as `tok_ok`."""

    token: str


class CheckoutIn(BaseModel):
    """The body of `POST /v1/carts/{cart_id}/checkout`."""

    payment: PaymentIn
    accept_price_changes: bool = False
    shipping_address: dict[str, Any] | None = None


def load_catalog(path: str | None) -> tuple[Catalog, dict[str, int]]:
    """The catalog of a JSON file (a list of catalog entries) and its initial stock (units)."""
    if path is None:
        return Catalog(), {}
    with open(path, encoding="utf-8") as handle:
        entries = [CatalogEntryIn.model_validate(raw) for raw in json.load(handle)]
    return Catalog.from_entries(entry.model_dump(exclude_none=True) for entry in entries)


# --------------------------------------------------------------------------- auth


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the token's subject, and the cart a guest token was issued for."""

    sub: str
    cart_id: str | None
    admin: bool

    def check_owns(self, cart: Cart) -> None:
        """Raise 404 (not 403: API.md hides others' carts) unless `cart` is the caller's."""
        if cart.cart_id != self.cart_id and cart.owner != self.sub:
            raise ApiError(404, "cart_not_found", f"no cart {cart.cart_id!r}")


class Auth:
    """HS256 JWTs signed with the server's secret: guest tokens issued, bearer tokens checked."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def guest_token(self, cart_id: str, owner: str) -> str:
        """A token for the guest who owns `cart_id`."""
        exp = datetime.now(UTC) + GUEST_TOKEN_TTL
        claims = {"sub": owner, "cart_id": cart_id, "role": "guest", "exp": exp}
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def caller(self, authorization: str | None) -> Caller:
        """The caller named by an `Authorization: Bearer` header; 401 if missing or invalid."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthenticated", "a Bearer token is required")
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            raise ApiError(401, "invalid_token", f"the token is not valid: {exc}") from exc
        return Caller(str(claims.get("sub", "")), claims.get("cart_id"),
                      claims.get("role") == "admin")

    def admin(self, authorization: str | None) -> Caller:
        """The caller, who must hold `role: admin` (else 403)."""
        caller = self.caller(authorization)
        if not caller.admin:
            raise ApiError(403, "forbidden", "this route needs an admin token")
        return caller


def guarded(caller: Caller, op: CartOp, cart: Cart) -> None:
    """Apply `op` to `cart` if it is the caller's (bind the first two with `partial`)."""
    caller.check_owns(cart)
    op(cart)


# --------------------------------------------------------------------------- storage


class Backend(Protocol):
    """Where a peer keeps carts, stock and orders. All quantities are units."""

    async def ready(self) -> bool:
        """True when the backing store answers."""

    async def close(self) -> None:
        """Release connections, processes and clusters."""

    async def seed_stock(self, stock: Mapping[str, int]) -> None:
        """Set the stock of variants that have none yet."""

    async def create_cart(self, cart: Cart) -> None:
        """Store a new cart (503 `capacity` if the peer holds no more)."""

    async def load_cart(self, cart_id: str) -> Cart | None:
        """The cart, or None."""

    async def mutate_cart(self, cart_id: str, op: CartOp) -> Cart | None:
        """Apply `op` to the stored cart and store the result; None if there is no such cart."""

    async def take_stock(self, cart_id: str, wanted: Mapping[str, int]) -> None:
        """Atomically: the cart must be active, every wanted unit is taken, the cart becomes
        checked_out. Raises 409 `cart_not_active` or `out_of_stock` (and takes nothing)."""

    async def return_stock(self, cart_id: str, wanted: Mapping[str, int]) -> None:
        """Undo `take_stock`: units back on hand, the cart active again."""

    async def find_order(self, cart_id: str, key: str) -> dict[str, Any] | None:
        """The order a checkout of `cart_id` with Idempotency-Key `key` made, if any."""

    async def save_order(self, order: dict[str, Any], key: str) -> None:
        """Store an order and index it by (cart, key)."""

    async def adjust_stock(
        self, variant_id: str, set_to: int | None, delta: int | None
    ) -> dict[str, Any]:
        """Set or shift a variant's units (floor at zero: 409); answers the stock level."""

    async def stock_levels(self, variant_ids: list[str]) -> dict[str, int]:
        """Units on hand per variant id."""


BackendFactory = Callable[[argparse.Namespace], Awaitable[Backend]]


# --------------------------------------------------------------------------- the service


class Peer:
    """The route logic over a catalog, a backend and the token scheme."""

    def __init__(self, catalog: Catalog, backend: Backend, auth: Auth) -> None:
        self.catalog = catalog
        self.backend = backend
        self.auth = auth

    async def create_guest_cart(self) -> dict[str, Any]:
        """A new guest cart with its token."""
        cart = Cart.new(new_id("cart"), new_id("guest"), datetime.now(UTC))
        await self.backend.create_cart(cart)
        return dict(cart.to_json(), token=self.auth.guest_token(cart.cart_id, cart.owner))

    async def cart(self, cart_id: str, authorization: str | None) -> Cart:
        """The caller's cart `cart_id` (404 if missing or someone else's)."""
        caller = self.auth.caller(authorization)
        cart = await self.backend.load_cart(cart_id)
        if cart is None:
            raise ApiError(404, "cart_not_found", f"no cart {cart_id!r}")
        caller.check_owns(cart)
        return cart

    async def mutate(self, cart_id: str, authorization: str | None, op: CartOp) -> Cart:
        """Apply `op` to the caller's cart and answer the new cart."""
        caller = self.auth.caller(authorization)
        cart = await self.backend.mutate_cart(cart_id, partial(guarded, caller, op))
        if cart is None:
            raise ApiError(404, "cart_not_found", f"no cart {cart_id!r}")
        return cart

    def add_op(self, body: AddItemIn) -> CartOp:
        """The mutation adding `body` (priced now, from the catalog)."""
        variant = self.catalog.variant(body.product_id, body.variant_id)
        return partial(Cart.add_item, variant=variant, quantity=body.quantity,
                       options=body.options, now=utc_now())

    async def checkout(
        self, cart_id: str, authorization: str | None, body: CheckoutIn, key: str
    ) -> dict[str, Any]:
        """Take the stock, authorize the payment, record the order (idempotent on `key`)."""
        cart = await self.cart(cart_id, authorization)
        prior = await self.backend.find_order(cart_id, key)
        if prior is not None:
            return prior
        if not cart.lines:
            raise ApiError(409, "cart_empty", "the cart has no lines")
        wanted = cart.quantities()
        await self.backend.take_stock(cart_id, wanted)
        if body.payment.token == "tok_slow":
            await asyncio.sleep(SLOW_PAYMENT_S)
        failure = payment_outcome(body.payment.token)
        if failure is not None:
            await self.backend.return_stock(cart_id, wanted)
            raise failure
        order = build_order(cart, new_id("ord"), utc_now())
        await self.backend.save_order(order, key)
        return order

    async def products(self, limit: int, cursor: str | None) -> dict[str, Any]:
        """A page of products with the units available of each variant."""
        ids, next_cursor = self.catalog.page(limit, cursor)
        variant_ids = [v for pid in ids for v in self.catalog.variant_ids(pid)]
        available = await self.backend.stock_levels(variant_ids)
        items = [self.catalog.product_json(pid, available) for pid in ids]
        return {"items": items, "next_cursor": next_cursor}

    async def put_product(self, product_id: str, body: ProductIn) -> dict[str, Any]:
        """Create or replace a product; stock given on its variants is set."""
        stock = self.catalog.put(product_id, body.model_dump(exclude_none=True))
        for variant_id, units in stock.items():
            await self.backend.adjust_stock(variant_id, units, None)
        available = await self.backend.stock_levels(self.catalog.variant_ids(product_id))
        return self.catalog.product_json(product_id, available)


# --------------------------------------------------------------------------- routes

router = APIRouter()
AuthHeader = Annotated[str | None, Header(alias="Authorization")]
KeyHeader = Annotated[str | None, Header(alias="Idempotency-Key")]


def peer_of(request: Request) -> Peer:
    """The `Peer` built by the app's lifespan."""
    return request.app.state.peer


def cart_response(cart: Cart, status: int = 200) -> JSONResponse:
    """A cart answer with its ETag (the cart version)."""
    return JSONResponse(cart.to_json(), status, headers={"ETag": f'"{cart.version}"'})


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    ready = await peer_of(request).backend.ready()
    return JSONResponse({"status": "ready" if ready else "unavailable"}, 200 if ready else 503)


@router.post("/v1/carts", status_code=201)
async def create_cart(request: Request, authorization: AuthHeader = None) -> JSONResponse:
    peer = peer_of(request)
    if authorization:
        caller = peer.auth.caller(authorization)
        if caller.cart_id is not None:
            cart = await peer.cart(caller.cart_id, authorization)
            if cart.status == "active":
                return cart_response(cart)
    return JSONResponse(await peer.create_guest_cart(), 201)


@router.get("/v1/carts/{cart_id}")
async def get_cart(request: Request, cart_id: str, authorization: AuthHeader = None):
    return cart_response(await peer_of(request).cart(cart_id, authorization))


@router.post("/v1/carts/{cart_id}/items")
async def add_item(request: Request, cart_id: str, body: AddItemIn,
                   authorization: AuthHeader = None) -> JSONResponse:
    peer = peer_of(request)
    return cart_response(await peer.mutate(cart_id, authorization, peer.add_op(body)))


@router.patch("/v1/carts/{cart_id}/items/{line_id}")
async def patch_item(request: Request, cart_id: str, line_id: str, body: PatchItemIn,
                     authorization: AuthHeader = None) -> JSONResponse:
    op = partial(Cart.set_quantity, line_id=line_id, quantity=body.quantity, now=utc_now())
    return cart_response(await peer_of(request).mutate(cart_id, authorization, op))


@router.delete("/v1/carts/{cart_id}/items/{line_id}")
async def delete_item(request: Request, cart_id: str, line_id: str,
                      authorization: AuthHeader = None) -> JSONResponse:
    op = partial(Cart.remove_line, line_id=line_id, now=utc_now())
    return cart_response(await peer_of(request).mutate(cart_id, authorization, op))


@router.post("/v1/carts/{cart_id}/checkout", status_code=201)
async def checkout(request: Request, cart_id: str, body: CheckoutIn,
                   authorization: AuthHeader = None,
                   idempotency_key: KeyHeader = None) -> JSONResponse:
    key = idempotency_key or new_id("idem")
    order = await peer_of(request).checkout(cart_id, authorization, body, key)
    return JSONResponse(order, 201)


@router.get("/v1/products")
async def list_products(request: Request, limit: int = 50, cursor: str | None = None):
    return await peer_of(request).products(max(1, min(limit, 200)), cursor)


@router.put("/v1/admin/products/{product_id}")
async def put_product(request: Request, product_id: str, body: ProductIn,
                      authorization: AuthHeader = None) -> dict[str, Any]:
    peer = peer_of(request)
    peer.auth.admin(authorization)
    return await peer.put_product(product_id, body)


@router.post("/v1/admin/stock/{variant_id}")
async def adjust_stock(request: Request, variant_id: str, body: StockIn,
                       authorization: AuthHeader = None) -> dict[str, Any]:
    peer = peer_of(request)
    peer.auth.admin(authorization)
    return await peer.backend.adjust_stock(variant_id, body.set, body.delta)


# --------------------------------------------------------------------------- errors


def error_response(error: ApiError) -> JSONResponse:
    """The API.md error answer; 429 and 503 carry `Retry-After` (seconds)."""
    headers = {"Retry-After": str(RETRY_AFTER_S)} if error.status in (429, 503) else None
    return JSONResponse(error.body(), error.status, headers=headers)


async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [{"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors()]
    return error_response(ApiError(422, "validation_error", "the request is not valid", details))


async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = "not_found" if exc.status_code == 404 else "http_error"
    return error_response(ApiError(exc.status_code, code, str(exc.detail)))


# --------------------------------------------------------------------------- app and CLI


def build_app(make_backend: BackendFactory, options: argparse.Namespace, title: str) -> FastAPI:
    """The peer's FastAPI app; the lifespan loads the catalog and builds the backend."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        catalog, stock = load_catalog(options.catalog)
        backend = await make_backend(options)
        try:
            await backend.seed_stock(stock)
            app.state.peer = Peer(catalog, backend, Auth(options.auth_secret))
            yield
        finally:
            await backend.close()

    app = FastAPI(title=title, lifespan=lifespan)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.include_router(router)
    return app


def serve(
    title: str,
    make_backend: BackendFactory,
    argv: list[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Parse the peer's command line and serve it with uvicorn until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=title)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--catalog", help="catalog file: a JSON list of product entries")
    parser.add_argument(
        "--auth-secret",
        default=os.environ.get("CART_ENGINE_AUTH_SECRET", DEV_SECRET),
        help="HS256 secret of the bearer tokens (env CART_ENGINE_AUTH_SECRET)",
    )
    if add_arguments is not None:
        add_arguments(parser)
    options = parser.parse_args(argv)
    app = build_app(make_backend, options, title)
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning", access_log=False)
