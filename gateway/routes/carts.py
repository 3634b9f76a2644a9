"""Carts and their line items and coupon codes.

These are the hot routes: each declares only ``request`` and reads it with `read_call` (one
pass, no dependency solving; see `gateway.deps`), documenting its parameters with `documented`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError

from actors.views import with_field
from engine.errors import ValidationFailed
from gateway.auth import decode_token, issue_token, new_guest_id
from gateway.deps import LeanRoute, documented, etag, read_call
from gateway.routes._respond import ERRORS, JSONResponse, answers, cart_response, operation_id
from gateway.schemas import (
    CartAndSaved,
    CartCreate,
    CartPublic,
    CodeCreate,
    ItemCreate,
    ItemUpdate,
    MergeCreate,
    MergeResult,
)

router = APIRouter(prefix="/v1/carts", tags=["carts"], responses=ERRORS, route_class=LeanRoute,
                   generate_unique_id_function=operation_id)
CART = {200: {"model": CartPublic}}
LINE = ("cart_id", "line_id")
MAX_CODE_LENGTH = 64


@router.post("", status_code=201, name="open", responses={**CART, 201: {"model": CartPublic}},
             openapi_extra=documented(ids=(), body=CartCreate, body_required=False,
                                      headers=("auth", "idem")))
async def open_cart(request: Request) -> JSONResponse:
    """The caller's active cart (201 new, 200 existing); without a token, a new guest and its
    cart and token. An Idempotency-Key belongs to its caller: an anonymous request is a caller
    of its own, so a retry without the guest's token is another new guest (it never reaches
    the first guest's cart); a retry with the guest's token answers that guest's cart."""
    call = await read_call(request)
    body = call.parse_optional(CartCreate)
    currency = body.currency if body else None
    caller, token = call.caller, None
    if caller is None:
        sub, out = await call.service.open_guest_cart(new_guest_id, currency, call.idem.key,
                                                      call.idem.fingerprint)
        token = issue_token(call.settings.auth_secret.get_secret_value(), sub, "guest",
                            call.settings.guest_token_ttl)
    else:
        out = await call.service.active_cart(caller.sub, currency, call.idem.key,
                                             call.idem.fingerprint, list(caller.groups))
    view = out["cart"] if token is None else with_field(out["cart"], "token", token)
    return cart_response(view, 201 if out["created"] else 200)


@router.get("/{cart_id}", name="get", responses=CART,
            openapi_extra=documented(headers=("auth",), query=("country", "region")))
async def get_cart(request: Request) -> JSONResponse:
    """The cart with its lines, discounts and totals; ``?country=US&region=CA`` estimates tax
    and shipping for that destination (ISO 3166; a bad code is a 422 invalid_destination)."""
    call = await read_call(request, "cart_id")
    caller = call.user
    query = request.query_params
    destination = {k: query[k] for k in ("country", "region") if k in query} or None
    return cart_response(await call.service.get_cart(caller.sub, call.ids[0],
                                                     list(caller.groups), destination))


@router.post("/{cart_id}/items", responses=CART, openapi_extra=documented(body=ItemCreate))
async def add_item(request: Request) -> JSONResponse:
    """Add a product variant; the same variant and options again adds to that line."""
    call = await read_call(request, "cart_id")
    caller, body = call.user, call.parse(ItemCreate)
    return cart_response(await call.service.add_item(
        caller.sub, call.ids[0], product_id=body.product_id, variant_id=body.variant_id,
        quantity=body.quantity, options=body.options, if_match=call.if_match,
        request_id=call.idem.key, fingerprint=call.idem.fingerprint,
        groups=list(caller.groups)))


@router.patch("/{cart_id}/items/{line_id}", responses=CART,
              openapi_extra=documented(ids=LINE, body=ItemUpdate))
async def set_quantity(request: Request) -> JSONResponse:
    """Set a line's quantity; 0 removes the line."""
    call = await read_call(request, *LINE)
    caller, body = call.user, call.parse(ItemUpdate)
    return cart_response(await call.service.set_quantity(
        caller.sub, call.ids[0], call.ids[1], body.quantity, if_match=call.if_match,
        request_id=call.idem.key, fingerprint=call.idem.fingerprint,
        groups=list(caller.groups)))


@router.delete("/{cart_id}/items/{line_id}", responses=CART, openapi_extra=documented(ids=LINE))
async def remove_line(request: Request) -> JSONResponse:
    """Remove a line."""
    call = await read_call(request, *LINE)
    caller = call.user
    return cart_response(await call.service.remove_line(
        caller.sub, call.ids[0], call.ids[1], if_match=call.if_match,
        request_id=call.idem.key, fingerprint=call.idem.fingerprint,
        groups=list(caller.groups)))


@router.post("/{cart_id}/discounts", responses=CART, openapi_extra=documented(body=CodeCreate))
async def add_code(request: Request) -> JSONResponse:
    """Apply a coupon code (case-insensitive)."""
    call = await read_call(request, "cart_id")
    caller, body = call.user, call.parse(CodeCreate)
    return cart_response(await call.service.add_code(
        caller.sub, call.ids[0], body.code, if_match=call.if_match, request_id=call.idem.key,
        fingerprint=call.idem.fingerprint, groups=list(caller.groups)))


REMOVE_CODE_DOC = documented()
REMOVE_CODE_DOC["parameters"].insert(1, {
    "name": "code", "in": "path", "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_CODE_LENGTH}})


@router.delete("/{cart_id}/discounts/{code}", responses=CART, openapi_extra=REMOVE_CODE_DOC)
async def remove_code(request: Request) -> JSONResponse:
    """Remove a coupon code (1..MAX_CODE_LENGTH characters, case-insensitive)."""
    call = await read_call(request, "cart_id")
    caller, code = call.user, request.path_params["code"]
    if len(code) > MAX_CODE_LENGTH:
        raise RequestValidationError([{
            "type": "string_too_long", "loc": ("path", "code"), "input": code,
            "msg": f"String should have at most {MAX_CODE_LENGTH} characters"}])
    return cart_response(await call.service.remove_code(
        caller.sub, call.ids[0], code, if_match=call.if_match, request_id=call.idem.key,
        fingerprint=call.idem.fingerprint, groups=list(caller.groups)))


@router.post("/{cart_id}/merge", responses=answers(MergeResult),
             openapi_extra=documented(body=MergeCreate, headers=("auth", "idem")))
async def merge(request: Request) -> JSONResponse:
    """Merge a guest cart (named by its guest token) into the caller's cart: ``{cart, report}``."""
    call = await read_call(request, "cart_id")
    caller, body = call.user, call.parse(MergeCreate)
    guest = decode_token(call.settings.auth_secret.get_secret_value(), body.guest_token)
    if not guest.is_guest:
        raise ValidationFailed("not_a_guest_token", "guest_token must be a guest cart's token",
                               [{"field": "guest_token"}])
    out = await call.service.merge(caller.sub, call.ids[0], guest.sub,
                                   body.strategy or call.settings.merge_strategy,
                                   call.idem.key, call.idem.fingerprint)
    return JSONResponse(out, headers={"ETag": etag(out["cart"]["version"])})


@router.post("/{cart_id}/items/{line_id}/save-for-later", responses=answers(CartAndSaved),
             openapi_extra=documented(ids=LINE, headers=("auth", "idem")))
async def save_for_later(request: Request) -> JSONResponse:
    """Move a line to the caller's saved-for-later list: ``{cart, saved}``."""
    call = await read_call(request, *LINE)
    return JSONResponse(await call.service.save_for_later(
        call.user.sub, call.ids[0], call.ids[1], call.idem.key, call.idem.fingerprint))
