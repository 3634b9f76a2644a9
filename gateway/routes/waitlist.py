"""Waitlists of sold-out variants: join, list, leave (any token: a user's or a guest's)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import CurrentCaller, Idem, ResourceId, Service
from gateway.routes._respond import ERRORS, JSONResponse, answers, operation_id
from gateway.schemas import WaitlistEntries, WaitlistEntry, WaitlistJoin, WaitlistLeft

router = APIRouter(prefix="/v1/waitlist", tags=["waitlist"], responses=ERRORS,
                   generate_unique_id_function=operation_id)


@router.post("/{variant_id}", status_code=201, name="join",
             responses=answers(WaitlistEntry, 201, 200))
async def join_waitlist(service: Service, caller: CurrentCaller, idem: Idem,
                        variant_id: ResourceId, body: WaitlistJoin) -> JSONResponse:
    """Join the line (201 with ``position``; 200 when already in line, quantity updated)."""
    out = await service.join_waitlist(caller.sub, variant_id, body.quantity, idem.key,
                                      idem.fingerprint)
    created = out.pop("created", True)
    return JSONResponse(out, status_code=201 if created else 200)


@router.get("", name="list", responses=answers(WaitlistEntries))
async def list_waitlists(service: Service, caller: CurrentCaller) -> JSONResponse:
    """The caller's entries with their state (waiting, offered, claimed, lapsed) and offer."""
    return JSONResponse(await service.waitlists(caller.sub))


@router.delete("/{variant_id}", name="leave", responses=answers(WaitlistLeft))
async def leave_waitlist(service: Service, caller: CurrentCaller, idem: Idem,
                         variant_id: ResourceId) -> JSONResponse:
    """Leave the line; units on offer go to the next in line."""
    return JSONResponse(await service.leave_waitlist(caller.sub, variant_id, idem.key,
                                                     idem.fingerprint))
