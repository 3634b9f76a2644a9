"""``GET /v1/carts/{cart_id}/events``: the cart's changes as Server-Sent Events.

Framing, heartbeats (SSE comments every ``--sse-heartbeat`` seconds), client disconnects and
server shutdown are sse-starlette's (`EventSourceResponse`); what is sent comes from the
process's hub (`gateway.cart_events`). Authorization is GET's: the same token check and the
same cart view call, so another user's cart is the same 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from gateway.cart_events import CartEventHub, Subscriber, hub_of
from gateway.deps import BODY_SCHEMAS, LeanRoute, documented, read_call
from gateway.routes._respond import ERRORS, operation_id
from gateway.schemas import CartEventPublic

router = APIRouter(prefix="/v1/carts", tags=["carts"], responses=ERRORS, route_class=LeanRoute,
                   generate_unique_id_function=operation_id)

#: Longest ``Last-Event-ID`` looked at (two stream ids); a longer one is not ours: reset.
MAX_EVENT_ID = 96


def _extra() -> dict[str, Any]:
    extra = documented(headers=("auth",))
    extra["parameters"].append({
        "name": "Last-Event-ID", "in": "header", "required": False,
        "description": "the id of the last event received: the stream resumes after it "
                       "(a `reset` event with the current cart when it cannot)",
        "schema": {"type": "string", "maxLength": MAX_EVENT_ID}})
    return extra


BODY_SCHEMAS[CartEventPublic.__name__] = CartEventPublic.model_json_schema(
    ref_template="#/components/schemas/{model}")


@router.get("/{cart_id}/events", name="events", response_class=EventSourceResponse,
            responses={200: {"description": "a text/event-stream of CartEventPublic events",
                             "content": {"text/event-stream": {"schema": {
                                 "$ref": "#/components/schemas/CartEventPublic"}}}}},
            openapi_extra=_extra())
async def cart_events(request: Request) -> EventSourceResponse:
    """Server-Sent Events of the cart: its view on every change (`cart`), `price_changed`,
    `hold_expiring`, `cart_expiring`, `offer`; resumable with Last-Event-ID."""
    call = await read_call(request, "cart_id")
    caller = call.user
    hub = hub_of(request.app)
    sub = await hub.open(call.ids[0])
    try:  # the same call and errors as GET /v1/carts/{cart_id}
        view = await call.service.get_cart(caller.sub, call.ids[0], list(caller.groups))
        last = request.headers.get("last-event-id")
        await hub.start(sub, view, last[:MAX_EVENT_ID] if last else None)
    except BaseException:
        hub.close(sub)
        raise
    return EventSourceResponse(
        _stream(hub, sub), ping=call.settings.sse_heartbeat,
        ping_message_factory=lambda: ServerSentEvent(comment="heartbeat"),
        headers={"Cache-Control": "no-store"}, send_timeout=30)


async def _stream(hub: CartEventHub, sub: Subscriber) -> AsyncIterator[bytes]:
    try:
        while True:
            items = await hub.next(sub)
            if items is None:
                return
            for item in items:
                chunk = hub.render(sub, item)
                if chunk is not None:
                    yield chunk
    finally:
        hub.close(sub)
