"""Request and response schemas (pydantic). Money is ``{"amount": int minor units, "currency"}``.

Requests are strict: integers must be JSON integers (no ``"2"``, no ``2.0``) and bounded,
numbers finite, strings bounded, unknown fields refused, so a client's typo is a clear 422
rather than a silently ignored field, and no request carries a value the engine or its codec
cannot hold.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from engine.limits import MAX_ID_LENGTH, MAX_OPTION_LENGTH, MAX_OPTIONS, MAX_QUANTITY_PER_LINE
from engine.money import CURRENCY_EXPONENTS

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
Id = Field(min_length=1, max_length=MAX_ID_LENGTH)


class CartCreate(BaseModel):
    model_config = _STRICT
    #: Checked by the engine (``unknown_currency``); documented as the codes it knows.
    currency: str | None = Field(None, min_length=3, max_length=3,
                                 description="ISO 4217 code; default USD",
                                 json_schema_extra={"enum": [*sorted(CURRENCY_EXPONENTS), None]})


class ItemCreate(BaseModel):
    model_config = _STRICT
    product_id: str = Id
    variant_id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)
    quantity: StrictInt = Field(ge=1, le=MAX_QUANTITY_PER_LINE)
    #: Names and values of at most 200 characters, 10 at most: checked by the engine
    #: (``invalid_options``), which keeps an integer or boolean value as its text.
    options: dict[str, str | StrictInt | StrictBool] | None = Field(None, json_schema_extra={
        "maxProperties": MAX_OPTIONS, "propertyNames": {"maxLength": MAX_OPTION_LENGTH},
        "additionalProperties": {"anyOf": [
            {"type": "string", "maxLength": MAX_OPTION_LENGTH},
            {"type": "integer", "minimum": -(2**53 - 1), "maximum": 2**53 - 1},
            {"type": "boolean"}]}})


class ItemUpdate(BaseModel):
    model_config = _STRICT
    quantity: StrictInt = Field(ge=0, le=MAX_QUANTITY_PER_LINE, description="0 removes the line")


class CodeCreate(BaseModel):
    model_config = _STRICT
    code: str = Field(min_length=1, max_length=64)


class Payment(BaseModel):
    model_config = _STRICT
    token: str = Field(min_length=1, max_length=255)


def _text(max_length: int, description: str, pattern: str | None = None) -> Any:
    """An optional string field; ``pattern`` is documented only (the engine checks it, with
    its own error code)."""
    return Field(None, min_length=1, max_length=max_length, description=description,
                 json_schema_extra={"pattern": pattern} if pattern else None)


class ShippingAddress(BaseModel):
    """Where an order ships. Every field optional; ``country`` and ``region`` set the tax and
    shipping rules (ISO 3166-1 alpha-2 and ISO 3166-2: a malformed code is a 422
    ``invalid_destination`` from the engine); unknown fields are refused."""

    model_config = _STRICT
    name: str | None = _text(200, "the recipient")
    company: str | None = _text(200, "company or organisation")
    line1: str | None = _text(200, "street address")
    line2: str | None = _text(200, "apartment, suite, building")
    city: str | None = _text(100, "city or locality")
    region: str | None = _text(64, "ISO 3166-2 subdivision: CA with a country, or US-CA",
                               "^([A-Za-z]{2}-)?[A-Za-z0-9]{1,3}$")
    postal_code: str | None = _text(32, "postal or ZIP code")
    country: str | None = _text(64, "ISO 3166-1 alpha-2 country code, e.g. US",
                                "^[A-Za-z]{2}$")
    phone: str | None = _text(32, "phone number, E.164 preferred (+14155550100)")
    email: str | None = _text(254, "e-mail address (RFC 5321: at most 254 characters)")
    instructions: str | None = _text(500, "delivery instructions")

    def engine_dict(self) -> dict[str, str]:
        """The fields given, as the engine stores them on the order."""
        return self.model_dump(exclude_none=True)


class CheckoutCreate(BaseModel):
    model_config = _STRICT
    payment: Payment
    accept_price_changes: StrictBool = False
    shipping_address: ShippingAddress | None = None


class MergeCreate(BaseModel):
    model_config = _STRICT
    guest_token: str = Field(min_length=1, max_length=4096)
    strategy: Literal["sum", "larger", "keep_user"] | None = Field(
        None, description="for a variant in both carts: sum the quantities, keep the larger, "
                          "or keep the user's line; default: the server's setting")


def _exactly_one_of_set_or_delta(schema: dict[str, Any]) -> None:
    for name in ("set", "delta"):  # given means an integer: null is the same as absent
        schema["properties"][name] = {k: v for k, v in schema["properties"][name].items()
                                      if k not in ("anyOf", "default")
                                      } | schema["properties"][name]["anyOf"][0]
    schema["oneOf"] = [{"required": ["set"]}, {"required": ["delta"]}]


class StockChange(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False,
                              json_schema_extra=_exactly_one_of_set_or_delta)
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


class CartEventPublic(BaseModel):
    """One Server-Sent Event of ``GET /v1/carts/{cart_id}/events`` (text/event-stream): an
    ``event:`` line naming the type, ``id:`` (cart and offer events), one ``data:`` line of
    JSON. Types: ``cart`` and ``reset`` (data: the Cart), ``price_changed`` (``{cart_id,
    lines: [{line_id, product_id, variant_id, unit_price, current_unit_price}]}``),
    ``hold_expiring`` (``{cart_id, line_id, variant_id, quantity, expires_at}``),
    ``cart_expiring`` (``{cart_id, expires_at}``), ``offer`` (``{variant_id, quantity,
    position, expires_at}``). Lines starting with ``:`` are heartbeats."""

    event: Literal["cart", "reset", "price_changed", "hold_expiring", "cart_expiring",
                   "offer"]
    id: str | None = Field(None, description="resume point: send it back as Last-Event-ID")
    data: dict[str, Any]


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


class ClusterScale(BaseModel):
    """``PUT /v1/admin/cluster``: the number of actor hosts wanted."""

    model_config = ConfigDict(extra="forbid")

    hosts: int = Field(ge=1, le=256)


# --------------------------------------------------------------------------- answers
# Named response models of every JSON answer, for the OpenAPI document and the clients
# generated from it (issue 13). The routes answer with their own JSON (orjson, no response
# serialization), so these are documentation: the schemathesis suite checks every answer
# against them. Fields the engine adds later stay allowed (no ``extra="forbid"`` here).


class VariantPublic(BaseModel):
    variant_id: str
    sku: str
    attributes: dict[str, str]
    price: MoneyPublic | None = Field(description="in the product's first currency")
    prices: list[MoneyPublic] = Field(description="one per currency, minor units")
    hold_ttl: float | None = Field(description="seconds a unit added to a cart is held "
                                               "(flash-sale items); null: no hold on add")
    shards: int = Field(description="inventory shards of the variant")
    purchase_limit: int | None = Field(None, description="units one customer may buy")
    account_required: bool | None = Field(None, description="guests cannot add it")
    offer_ttl: float | None = Field(None, description="seconds a waitlist offer lasts, "
                                                      "when not the default 300")
    available: int | None = Field(None, description="units available now (product reads)")


class ProductPublic(BaseModel):
    product_id: str
    name: str
    description: str
    category: str
    price: MoneyPublic | None
    prices: list[MoneyPublic]
    variants: list[VariantPublic]
    purchase_limit: int | None = None
    account_required: bool | None = None


class ProductPage(BaseModel):
    items: list[ProductPublic]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class StockLevel(BaseModel):
    """A variant's stock, units over all its shards."""

    variant_id: str
    on_hand: int
    reserved: int
    available: int
    sold: int


class PromotionUses(BaseModel):
    used: int
    held: int = Field(description="uses held by checkouts under way")


class PromotionPublic(BaseModel):
    """A promotion's admin JSON (the fields beyond these depend on ``kind``:
    `engine.promotions.promotion_to_dict`)."""

    promotion_id: str
    kind: str
    code: str | None
    description: str | None = None
    value: int | None = Field(None, description="basis points, or minor units when fixed")
    currency: str | None = None
    usage_limit: int | None = None
    per_customer_limit: int | None = None
    starts_at: str | None = None
    ends_at: str | None = None
    active: bool | None = None
    uses: PromotionUses | None = Field(None, description="for limited promotions (GET)")


class MergeReport(BaseModel):
    source_cart_id: str | None
    strategy: str
    already_merged: bool
    lines_added: list[dict[str, Any]]
    lines_merged: list[dict[str, Any]]
    clamped: list[dict[str, Any]]
    lines_dropped: list[dict[str, Any]]
    codes_kept: list[Any]
    codes_dropped: list[Any]


class MergeResult(BaseModel):
    cart: CartPublic
    report: MergeReport


class SavedItem(BaseModel):
    item_id: str
    product_id: str
    variant_id: str
    quantity: int
    options: dict[str, str]
    name: str
    unit_price: MoneyPublic = Field(description="the price when saved")
    currency: str
    saved_at: str


class SavedItems(BaseModel):
    items: list[SavedItem]


class CartAndSaved(BaseModel):
    cart: CartPublic
    saved: SavedItems


class OrderPage(BaseModel):
    items: list[OrderPublic]
    next_cursor: str | None


class WaitlistOffer(BaseModel):
    quantity: int
    expires_at: str


class WaitlistEntry(BaseModel):
    variant_id: str
    quantity: int
    state: str = Field(description="waiting, offered, claimed or lapsed")
    position: int | None = Field(description="1 is next in line; null when not waiting")
    joined_at: str
    offer: WaitlistOffer | None


class WaitlistEntries(BaseModel):
    items: list[WaitlistEntry]


class WaitlistLeft(BaseModel):
    variant_id: str
    left: bool


class WebhookReceipt(BaseModel):
    received: bool
    changed: bool = Field(description="false for a repeated delivery")
    order: OrderPublic


class ClusterHost(BaseModel):
    partitions: int
    leaving: bool
    pid: int | None = None
    node: str | None = None
    actors: int | None = None


class ClusterPublic(BaseModel):
    version: int
    hosts: dict[str, ClusterHost]
    unowned: list[int] = Field(description="partitions without a live owner")
    moving: int
    desired: int | None
    rehomed: int = 0
    handoffs: int = 0


class EventPage(BaseModel):
    items: list[dict[str, Any]] = Field(description="outbox events, oldest first: "
                                                    "{type, at (Unix seconds), ...}")


class Health(BaseModel):
    status: Literal["ok"]
    hosts: int


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]
