"""Request and response schemas (pydantic). Money is ``{"amount": int minor units, "currency"}``.

Requests are strict: integers must be JSON integers (no ``"2"``, no ``2.0``), unknown fields
are refused, so a client's typo is a clear 422 rather than a silently ignored field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from engine.limits import MAX_ID_LENGTH, MAX_QUANTITY_PER_LINE

_STRICT = ConfigDict(extra="forbid")
Id = Field(min_length=1, max_length=MAX_ID_LENGTH)


class CartCreate(BaseModel):
    model_config = _STRICT
    currency: str | None = Field(None, min_length=3, max_length=3,
                                 description="ISO 4217 code; default USD")


class ItemCreate(BaseModel):
    model_config = _STRICT
    product_id: str = Id
    variant_id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)
    quantity: StrictInt = Field(ge=1, le=MAX_QUANTITY_PER_LINE)
    options: dict[str, str | StrictInt | StrictBool] | None = None


class ItemUpdate(BaseModel):
    model_config = _STRICT
    quantity: StrictInt = Field(ge=0, le=MAX_QUANTITY_PER_LINE, description="0 removes the line")


class CodeCreate(BaseModel):
    model_config = _STRICT
    code: str = Field(min_length=1, max_length=64)


class Payment(BaseModel):
    model_config = _STRICT
    token: str = Field(min_length=1, max_length=255)


class CheckoutCreate(BaseModel):
    model_config = _STRICT
    payment: Payment
    accept_price_changes: StrictBool = False
    shipping_address: dict[str, Any] | None = None


class MergeCreate(BaseModel):
    model_config = _STRICT
    guest_token: str = Field(min_length=1, max_length=4096)
    strategy: Literal["sum", "larger", "keep_user"] | None = Field(
        None, description="for a variant in both carts: sum the quantities, keep the larger, "
                          "or keep the user's line; default: the server's setting")


class StockChange(BaseModel):
    model_config = _STRICT
    set: StrictInt | None = Field(None, ge=0, le=10**9)
    delta: StrictInt | None = Field(None, ge=-(10**9), le=10**9)

    @model_validator(mode="after")
    def _one_of(self) -> StockChange:
        if (self.set is None) == (self.delta is None):
            raise ValueError("give exactly one of 'set' or 'delta'")
        return self


class WaitlistJoin(BaseModel):
    model_config = _STRICT
    quantity: StrictInt = Field(1, ge=1, le=MAX_QUANTITY_PER_LINE)


class RefundCreate(BaseModel):
    model_config = _STRICT
    amount: StrictInt | None = Field(None, ge=1, le=10**15,
                                     description="minor units; default: all that is left")
    restock: StrictBool | None = Field(None, description="put the order's units back in "
                                                         "stock; default: for a full refund")


class MoneyPublic(BaseModel):
    amount: int
    currency: str


class TotalsPublic(BaseModel):
    subtotal: MoneyPublic
    discount: MoneyPublic
    shipping: MoneyPublic
    tax: MoneyPublic
    total: MoneyPublic


class LinePublic(BaseModel):
    line_id: str
    product_id: str
    variant_id: str
    name: str
    quantity: int
    unit_price: MoneyPublic
    options: dict[str, str]
    added_at: str
    updated_at: str
    line_total: MoneyPublic
    discounts: list[dict[str, Any]]
    price_changed: bool
    current_unit_price: MoneyPublic | None


class CartPublic(BaseModel):
    cart_id: str
    owner: str
    status: str
    currency: str
    version: int
    created_at: str
    updated_at: str
    expires_at: str | None
    lines: list[LinePublic]
    discounts: list[dict[str, Any]]
    totals: TotalsPublic
    token: str | None = Field(None, description="only for a new guest cart")


class OrderPublic(BaseModel):
    order_id: str
    cart_id: str
    owner: str
    status: str
    lines: list[dict[str, Any]]
    totals: TotalsPublic
    payment: dict[str, Any]
    created_at: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]]


class ErrorPublic(BaseModel):
    error: ErrorBody
