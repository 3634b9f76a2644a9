"""Carts and their line items and coupon codes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path

from engine.errors import ValidationFailed
from gateway.auth import decode_token, issue_token, new_guest_id
from gateway.deps import (
    CartId,
    CurrentCaller,
    Idem,
    IfMatch,
    LineId,
    OptionalCaller,
    Service,
    Settings,
    etag,
)
from gateway.routes._respond import ERRORS, JSONResponse, cart_response
from gateway.schemas import (
    CartCreate,
    CartPublic,
    CodeCreate,
    ItemCreate,
    ItemUpdate,
    MergeCreate,
)

router = APIRouter(prefix="/v1/carts", tags=["carts"], responses=ERRORS)


@router.post("", status_code=201, responses={200: {"model": CartPublic},
                                              201: {"model": CartPublic}})
async def open_cart(service: Service, settings: Settings, caller: OptionalCaller, idem: Idem,
                    body: Annotated[CartCreate | None, Body()] = None) -> JSONResponse:
    """The caller's active cart (201 new, 200 existing); without a token, a guest cart and token."""
    currency = body.currency if body else None
    token = None
    if caller is None:
        sub = new_guest_id()
        token = issue_token(settings.auth_secret, sub, "guest", settings.guest_token_ttl)
    else:
        sub = caller.sub
    groups = list(caller.groups) if caller else None
    out = await service.active_cart(sub, currency, idem.key, idem.fingerprint, groups)
    view: dict[str, Any] = dict(out["cart"])
    if token is not None:
        view["token"] = token
    return cart_response(view, 201 if out["created"] else 200)


@router.get("/{cart_id}", responses={200: {"model": CartPublic}})
async def get_cart(service: Service, caller: CurrentCaller, cart_id: CartId) -> JSONResponse:
    """The cart with its lines, discounts and totals."""
    return cart_response(await service.get_cart(caller.sub, cart_id, list(caller.groups)))


@router.post("/{cart_id}/items", responses={200: {"model": CartPublic}})
async def add_item(service: Service, caller: CurrentCaller, cart_id: CartId, body: ItemCreate,
                   idem: Idem, version: IfMatch) -> JSONResponse:
    """Add a product variant; the same variant and options again adds to that line."""
    return cart_response(await service.add_item(
        caller.sub, cart_id, product_id=body.product_id, variant_id=body.variant_id,
        quantity=body.quantity, options=body.options, if_match=version,
        request_id=idem.key, fingerprint=idem.fingerprint, groups=list(caller.groups)))


@router.patch("/{cart_id}/items/{line_id}", responses={200: {"model": CartPublic}})
async def set_quantity(service: Service, caller: CurrentCaller, cart_id: CartId,
                       line_id: LineId, body: ItemUpdate, idem: Idem,
                       version: IfMatch) -> JSONResponse:
    """Set a line's quantity; 0 removes the line."""
    return cart_response(await service.set_quantity(
        caller.sub, cart_id, line_id, body.quantity, if_match=version, request_id=idem.key,
        fingerprint=idem.fingerprint, groups=list(caller.groups)))


@router.delete("/{cart_id}/items/{line_id}", responses={200: {"model": CartPublic}})
async def remove_line(service: Service, caller: CurrentCaller, cart_id: CartId,
                      line_id: LineId, idem: Idem, version: IfMatch) -> JSONResponse:
    """Remove a line."""
    return cart_response(await service.remove_line(
        caller.sub, cart_id, line_id, if_match=version, request_id=idem.key,
        fingerprint=idem.fingerprint, groups=list(caller.groups)))


@router.post("/{cart_id}/discounts", responses={200: {"model": CartPublic}})
async def add_code(service: Service, caller: CurrentCaller, cart_id: CartId, body: CodeCreate,
                   idem: Idem, version: IfMatch) -> JSONResponse:
    """Apply a coupon code (case-insensitive)."""
    return cart_response(await service.add_code(
        caller.sub, cart_id, body.code, if_match=version, request_id=idem.key,
        fingerprint=idem.fingerprint, groups=list(caller.groups)))


@router.delete("/{cart_id}/discounts/{code}", responses={200: {"model": CartPublic}})
async def remove_code(service: Service, caller: CurrentCaller, cart_id: CartId, idem: Idem,
                      version: IfMatch,
                      code: str = Path(min_length=1, max_length=64)) -> JSONResponse:
    """Remove a coupon code."""
    return cart_response(await service.remove_code(
        caller.sub, cart_id, code, if_match=version, request_id=idem.key,
        fingerprint=idem.fingerprint, groups=list(caller.groups)))


@router.post("/{cart_id}/merge")
async def merge(service: Service, settings: Settings, caller: CurrentCaller, cart_id: CartId,
                body: MergeCreate, idem: Idem) -> JSONResponse:
    """Merge a guest cart (named by its guest token) into the caller's cart: ``{cart, report}``."""
    guest = decode_token(settings.auth_secret, body.guest_token)
    if not guest.is_guest:
        raise ValidationFailed("not_a_guest_token", "guest_token must be a guest cart's token",
                               [{"field": "guest_token"}])
    out = await service.merge(caller.sub, cart_id, guest.sub,
                              body.strategy or settings.merge_strategy, idem.key,
                              idem.fingerprint)
    return JSONResponse(out, headers={"ETag": etag(out["cart"]["version"])})


@router.post("/{cart_id}/items/{line_id}/save-for-later")
async def save_for_later(service: Service, caller: CurrentCaller, cart_id: CartId,
                         line_id: LineId, idem: Idem) -> JSONResponse:
    """Move a line to the caller's saved-for-later list: ``{cart, saved}``."""
    return JSONResponse(await service.save_for_later(caller.sub, cart_id, line_id, idem.key,
                                                     idem.fingerprint))
