"""The cart view's per-line cache renders exactly what a fresh rendering would."""

from __future__ import annotations

import pickle
from typing import Any

import orjson

from actors import wire
from actors.service import CartService
from actors.views import CartView, LineViews, cart_view, detached, render, rendered, with_field
from engine.pricing import PricingContext, price_cart
from engine.promotions import promotion_from_dict
from gateway.app import create_app
from gateway.routes._respond import CartResponse
from gateway.settings import GatewaySettings
from snapshots import codec
from tests.unit.builders import make_cart, make_line

NOW = 1_795_000_000.0


def _both(cart, cache: LineViews):  # type: ignore[no-untyped-def]
    cart.expires_at = NOW + 1800  # the builder's far-future deadline has no RFC 3339 form
    priced = price_cart(cart, PricingContext(now=NOW))
    cached, fresh = cart_view(cart, priced, NOW, cache), cart_view(cart, priced, NOW)
    assert render(cached, cache) == orjson.dumps(fresh)  # pasted lines, the same bytes
    return cached, fresh


def test_a_cached_view_follows_every_change_of_its_lines() -> None:
    cart = make_cart(make_line("ln_1"), make_line("ln_2", product_id="hat", unit_price=500))
    cache: LineViews = {}
    cached, fresh = _both(cart, cache)
    assert cached == fresh and set(cache) == {"ln_1", "ln_2"}
    cart.set_quantity("ln_1", 4, NOW + 7.5, 1800)  # quantity and updated_at change
    cached, fresh = _both(cart, cache)
    assert cached == fresh
    assert cached["lines"][0]["quantity"] == 4
    assert cached["lines"][0]["updated_at"] == "2026-11-18T11:06:47.500Z"
    cart.lines["ln_2"].unit_price = 450  # a price accepted in place
    cached, fresh = _both(cart, cache)
    assert cached == fresh and cached["lines"][1]["unit_price"]["amount"] == 450


def test_views_share_cached_line_dicts_a_detached_copy_is_its_own_and_removed_lines_leave(
        ) -> None:
    cart = make_cart(*(make_line(f"ln_{i}", product_id=f"p{i}") for i in range(12)))
    cache: LineViews = {}
    first, _ = _both(cart, cache)
    second, fresh = _both(cart, cache)
    assert second == fresh
    assert all(a is b for a, b in zip(first["lines"], second["lines"], strict=True))
    mine = detached(second)
    mine["lines"][0]["quantity"] = 99  # a caller editing its copy
    third, fresh = _both(cart, cache)
    assert third == fresh and third["lines"][0]["quantity"] == 1
    for i in range(1, 12):
        cart.remove_line(f"ln_{i}", NOW, 1800)
    _both(cart, cache)
    assert set(cache) == {"ln_0"}


def test_a_cached_view_follows_the_pricing_and_the_hold_of_an_unchanged_line() -> None:
    cart = make_cart(make_line("ln_1"), make_line("ln_2", product_id="hat", unit_price=500))
    cache: LineViews = {}

    def views(now: float = NOW, **ctx: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        cart.expires_at = now + 1800
        priced = price_cart(cart, PricingContext(now=now, **ctx))
        cached, fresh = cart_view(cart, priced, now, cache), cart_view(cart, priced, now)
        assert render(cached, cache) == orjson.dumps(fresh)
        return cached, fresh

    cached, fresh = views()
    assert cached == fresh and cached["lines"][1]["price_changed"] is False
    # The catalog price of the hat moved; the line itself did not change.
    cached, fresh = views(current_prices={"hat-v": 450})
    assert cached == fresh and cached["lines"][1]["current_unit_price"]["amount"] == 450
    # A promotion: 10 % off shirts, a discount on the first line only.
    tenth = promotion_from_dict("p10", {"kind": "percentage", "value": 1000,
                                        "target": {"type": "products", "ids": ["shirt"]}})
    cached, fresh = views(automatic=[tenth])
    assert cached == fresh and cached["lines"][0]["discounts"]
    assert cached["lines"][0]["line_total"]["amount"] == 900
    cached, fresh = views()  # the promotion ended: the line is priced in full again
    assert cached == fresh and cached["lines"][0]["line_total"]["amount"] == 1000
    # A hold on the hat, seen held and then lapsed.
    cart.lines["ln_2"].hold_until = NOW + 60
    cached, fresh = views()
    assert cached == fresh and cached["lines"][1]["held"] is True
    cached, fresh = views(now=NOW + 61)
    assert cached == fresh and cached["lines"][1]["held"] is False


async def test_a_cart_actor_answers_its_view_rendered_and_a_change_drops_the_rendering() -> None:
    service = await CartService.in_process()
    try:
        await service.put_product("tee", {"name": "Tee", "price": {"amount": 1999,
                                                                   "currency": "USD"},
                                            "stock": 10})
        cart_id = (await service.active_cart("u1"))["cart"]["cart_id"]
        embedded = await service.add_item("u1", cart_id, product_id="tee", quantity=1)
        assert type(embedded) is dict  # no HTTP app: nothing rendered for nobody
        embedded["lines"][0]["quantity"] = 50  # an embedder's view is its own to edit
        assert (await service.get_cart("u1", cart_id))["lines"][0]["quantity"] == 1
        create_app(GatewaySettings(auth_secret="s" * 32), service)  # an app answers now
        view = await service.add_item("u1", cart_id, product_id="tee", quantity=1)
        again = await service.get_cart("u1", cart_id)  # unchanged: the same rendering
        assert type(view) is CartView and rendered(view) == orjson.dumps(dict(view))
        assert again == view and rendered(again) is rendered(view)
        for change in (lambda v: v.__setitem__("token", "t"), lambda v: v.pop("hints"),
                       lambda v: v.update(x=1), lambda v: v.setdefault("y", 2),
                       lambda v: v.__delitem__("codes"), lambda v: v.clear(),
                       lambda v: v.popitem(), lambda v: v.__ior__({"z": 3})):
            changed = CartView(view, view.json)
            change(changed)
            assert rendered(changed) is None
        assert rendered(dict(view)) is None
        marker = CartView(view, b'{"rendered":"in the turn"}')
        assert CartResponse(marker).body == b'{"rendered":"in the turn"}'
        assert CartResponse(dict(view)).body == orjson.dumps(dict(view))
        # it travels and is stored as the plain dict it is; a pickle keeps the rendering
        assert wire.unpack(wire.pack([["ok", view]])) == [["ok", dict(view)]]
        assert codec.decode(codec.encode(["fp", ["ok", view], 1.0])) == ["fp", ["ok", dict(view)],
                                                                       1.0]
        copy = pickle.loads(pickle.dumps(view))
        assert type(copy) is CartView and copy == view and rendered(copy) == view.json
    finally:
        await service.close()


def test_a_field_added_to_a_rendered_view_is_spliced_into_its_json() -> None:
    view = CartView({"cart_id": "c1", "lines": [{"q": 1}], "total": 5}, None)
    view.json = orjson.dumps(dict(view))
    out = with_field(view, "token", 'a"b.c')  # a quote: the value is rendered, not pasted
    expected = dict(view) | {"token": 'a"b.c'}
    assert out == expected and type(out) is CartView
    assert rendered(out) == orjson.dumps(expected)
    assert "token" not in view and rendered(view) == orjson.dumps(dict(view))  # untouched
    # a field it has already, a view without a rendering, an empty one: plain copies
    for base, name in ((view, "total"), (dict(view), "token"), (CartView({}, b"{}"), "t")):
        copy = with_field(base, name, 7)
        assert type(copy) is dict and copy == dict(base) | {name: 7}
