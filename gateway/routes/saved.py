"""Saved for later: the caller's list of items moved out of the cart."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import CurrentCaller, Idem, ResourceId, Service
from gateway.routes._respond import ERRORS, JSONResponse, answers, operation_id
from gateway.schemas import CartAndSaved, SavedItems

router = APIRouter(prefix="/v1/saved", tags=["saved"], responses=ERRORS,
                   generate_unique_id_function=operation_id)


@router.get("", name="list", responses=answers(SavedItems))
async def list_saved(service: Service, caller: CurrentCaller) -> JSONResponse:
    """The caller's saved items: ``{items}``."""
    return JSONResponse(await service.saved_items(caller.sub))


@router.post("/{item_id}/move-to-cart", responses=answers(CartAndSaved))
async def move_to_cart(service: Service, caller: CurrentCaller, item_id: ResourceId,
                       idem: Idem) -> JSONResponse:
    """Put a saved item back into the active cart at today's price: ``{cart, saved}``."""
    return JSONResponse(await service.move_to_cart(caller.sub, item_id, idem.key,
                                                   idem.fingerprint, list(caller.groups)))


@router.delete("/{item_id}", name="remove", responses=answers(SavedItems))
async def remove_saved(service: Service, caller: CurrentCaller, item_id: ResourceId,
                       idem: Idem) -> JSONResponse:
    """Forget a saved item: ``{items}``."""
    return JSONResponse(await service.remove_saved(caller.sub, item_id, idem.key,
                                                   idem.fingerprint))
