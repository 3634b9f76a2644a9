"""The catalog, read side."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.deps import ResourceId, Service
from gateway.routes._respond import ERRORS, JSONResponse, answers, operation_id
from gateway.schemas import ProductPage, ProductPublic

router = APIRouter(prefix="/v1/products", tags=["catalog"], responses=ERRORS,
                   generate_unique_id_function=operation_id)


@router.get("", name="list", responses=answers(ProductPage))
async def list_products(service: Service,
                        limit: Annotated[int, Query(ge=1, le=200)] = 50,
                        cursor: Annotated[str | None, Query(max_length=128)] = None
                        ) -> JSONResponse:
    """Products ordered by id: ``{items, next_cursor}``."""
    return JSONResponse(await service.list_products(limit, cursor))


@router.get("/{product_id}", name="get", responses=answers(ProductPublic))
async def get_product(service: Service, product_id: ResourceId) -> JSONResponse:
    """A product with its variants and the units available of each."""
    return JSONResponse(await service.get_product(product_id))
