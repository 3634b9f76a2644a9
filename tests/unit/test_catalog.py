"""engine.catalog: product bodies, variants, prices per currency, the catalog index and pages."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from engine.catalog import Catalog, Product, Variant, product_from_dict, product_to_dict
from engine.errors import NotFound, ValidationFailed

pytestmark = pytest.mark.unit

EXAMPLE_CATALOG = Path(__file__).resolve().parents[2] / "examples" / "catalog.json"

#: The product body of API.md ("Product body for PUT /v1/admin/products/{product_id}").
API_BODY = {
    "name": "Trail Runner 2", "description": "...", "category": "shoes",
    "price": {"amount": 8999, "currency": "USD"},
    "variants": [{"variant_id": "trail-runner-2-42-blue", "sku": "TR2-42-BLU",
                  "attributes": {"size": "42", "color": "blue"},
                  "price": {"amount": 9499, "currency": "USD"}}],
}


def body(**changes) -> dict:
    """The API.md body with top-level keys replaced (None deletes the key)."""
    out = copy.deepcopy(API_BODY)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def simple(product_id: str, variant_ids: tuple[str, ...] = (), price: int = 1000) -> Product:
    b = {"name": product_id, "price": {"amount": price, "currency": "USD"}}
    if variant_ids:
        b["variants"] = [{"variant_id": v} for v in variant_ids]
    return product_from_dict(product_id, b)


def invalid(product_id: str, b: dict) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as e:
        product_from_dict(product_id, b)
    return e.value


# -- product_from_dict ---------------------------------------------------------------------

def test_the_api_md_body_loads():
    p = product_from_dict("trail-runner-2", API_BODY)
    assert p.product_id == "trail-runner-2"
    assert p.name == "Trail Runner 2"
    assert p.description == "..."
    assert p.category == "shoes"
    assert dict(p.prices) == {"USD": 8999}
    assert p.variants == (Variant(
        variant_id="trail-runner-2-42-blue", sku="TR2-42-BLU",
        attributes={"size": "42", "color": "blue"}, prices={"USD": 9499},
        hold_ttl=None, shards=1),)


def test_a_product_without_variants_has_one_implicit_variant_named_after_it():
    p = product_from_dict("mug", {"name": "Mug", "price": {"amount": 1200, "currency": "USD"}})
    assert len(p.variants) == 1
    v = p.variants[0]
    assert (v.variant_id, v.sku, dict(v.prices), v.shards, v.hold_ttl) == \
        ("mug", "mug", {}, 1, None)
    assert p.variant(None) is v
    assert p.variant("mug") is v
    assert p.price_of(v, "USD") == 1200


def test_an_implicit_variant_takes_sku_hold_ttl_and_shards_from_the_product_body():
    p = product_from_dict("flash-tv", {"name": "TV", "sku": "TV-1", "hold_ttl": 300,
                                       "shards": 4,
                                       "price": {"amount": 50000, "currency": "USD"}})
    v = p.variants[0]
    assert (v.variant_id, v.sku, v.hold_ttl, v.shards) == ("flash-tv", "TV-1", 300.0, 4)


def test_a_variant_price_overrides_the_product_price():
    p = product_from_dict("trail-runner-2", body(variants=[
        {"variant_id": "tr-blue", "price": {"amount": 9499, "currency": "USD"}},
        {"variant_id": "tr-red"},
    ]))
    assert p.price_of(p.variant("tr-blue"), "USD") == 9499
    assert p.price_of(p.variant("tr-red"), "USD") == 8999


def test_prices_are_kept_per_currency_and_fall_back_to_the_product_per_currency():
    p = product_from_dict("tr", body(
        prices=[{"amount": 8499, "currency": "EUR"}, {"amount": 1350000, "currency": "JPY"}],
        variants=[{"variant_id": "tr-blue", "price": {"amount": 9499, "currency": "USD"}}],
    ))
    v = p.variant("tr-blue")
    assert dict(p.prices) == {"USD": 8999, "EUR": 8499, "JPY": 1350000}
    assert p.price_of(v, "USD") == 9499
    assert p.price_of(v, "EUR") == 8499
    assert p.price_of(v, "JPY") == 1350000


def test_a_currency_with_no_price_is_refused():
    p = product_from_dict("tr", API_BODY)
    v = p.variants[0]
    with pytest.raises(ValidationFailed) as e:
        p.price_of(v, "EUR")
    assert e.value.code == "no_price_in_currency"
    assert e.value.details == [{"product_id": "tr", "variant_id": v.variant_id,
                                "currency": "EUR"}]


def test_variants_may_carry_the_only_prices():
    p = product_from_dict("tr", body(price=None, variants=[
        {"variant_id": "a", "price": {"amount": 100, "currency": "USD"}},
        {"variant_id": "b", "prices": [{"amount": 90, "currency": "EUR"}]},
    ]))
    assert dict(p.prices) == {}
    assert p.price_of(p.variant("a"), "USD") == 100
    assert p.price_of(p.variant("b"), "EUR") == 90
    with pytest.raises(ValidationFailed):
        p.price_of(p.variant("b"), "USD")


def test_name_is_stripped_and_missing_text_fields_default_to_empty():
    p = product_from_dict("x", {"name": "  Mug  ", "price": {"amount": 1, "currency": "USD"}})
    assert (p.name, p.description, p.category) == ("Mug", "", "")


def test_variant_lookup_by_id():
    p = product_from_dict("tr", body(variants=[{"variant_id": "a"}, {"variant_id": "b"}]))
    assert p.variant("b").variant_id == "b"
    with pytest.raises(NotFound) as e:
        p.variant("c")
    assert e.value.code == "variant_not_found"
    with pytest.raises(ValidationFailed) as e2:
        p.variant(None)
    assert e2.value.code == "variant_required"


@pytest.mark.parametrize("name", [None, "", "   ", 42])
def test_a_product_needs_a_non_empty_name(name):
    e = invalid("tr", body(name=name))
    assert e.code == "invalid_product"
    assert e.details == [{"field": "name"}]


@pytest.mark.parametrize("price", [
    {"amount": 89.99, "currency": "USD"},
    {"amount": "8999", "currency": "USD"},
    {"amount": True, "currency": "USD"},
    {"amount": -1, "currency": "USD"},
    {"amount": 10**12 + 1, "currency": "USD"},
    {"amount": 100},
    "8999",
])
def test_a_price_must_be_integer_minor_units_with_a_currency(price):
    assert invalid("tr", body(price=price)).code == "invalid_price"


def test_a_variant_price_is_validated_too():
    e = invalid("tr", body(variants=[{"variant_id": "a",
                                      "price": {"amount": 1.5, "currency": "USD"}}]))
    assert e.code == "invalid_price"


def test_an_unknown_currency_is_refused():
    assert invalid("tr", body(price={"amount": 1, "currency": "XXX"})).code == \
        "unknown_currency"


def test_a_product_with_no_price_anywhere_is_refused():
    e = invalid("tr", body(price=None, variants=[{"variant_id": "a"}]))
    assert e.code == "invalid_product"
    e = invalid("mug", {"name": "Mug"})
    assert e.code == "invalid_product"


def test_a_product_with_no_price_is_accepted_when_every_variant_has_one():
    p = product_from_dict("tr", body(price=None))
    assert p.price_of(p.variants[0], "USD") == 9499


@pytest.mark.parametrize("product_id", ["", "-leading-dash", "has space", "a/b", "x" * 129, None])
def test_a_bad_product_id_is_refused(product_id):
    e = invalid(product_id, API_BODY)
    assert e.code == "invalid_id"
    assert e.details == [{"field": "product_id"}]


def test_product_ids_accept_letters_digits_dot_underscore_colon_dash_up_to_128():
    for pid in ("a", "A1.b_c:d-e", "x" * 128):
        assert product_from_dict(pid, API_BODY).product_id == pid


@pytest.mark.parametrize("variant_id", ["", "bad id", None, 7])
def test_a_bad_variant_id_is_refused(variant_id):
    e = invalid("tr", body(variants=[{"variant_id": variant_id}]))
    assert e.code == "invalid_id"
    assert e.details == [{"field": "variants[0].variant_id"}]


def test_duplicate_variant_ids_are_refused():
    e = invalid("tr", body(variants=[{"variant_id": "a"}, {"variant_id": "b"},
                                     {"variant_id": "a"}]))
    assert e.code == "invalid_product"
    assert "'a'" in e.message


def test_a_variant_must_be_an_object():
    assert invalid("tr", body(variants=["a"])).code == "invalid_product"


def test_attributes_must_be_an_object_and_are_stored_as_strings():
    assert invalid("tr", body(variants=[{"variant_id": "a", "attributes": ["x"]}])).code == \
        "invalid_product"
    p = product_from_dict("tr", body(variants=[{"variant_id": "a",
                                                "attributes": {"size": 42}}]))
    assert dict(p.variants[0].attributes) == {"size": "42"}


@pytest.mark.parametrize("hold_ttl", [0, -5, 86401, "60", float("nan"), float("inf")])
def test_hold_ttl_must_be_seconds_in_0_to_a_day(hold_ttl):
    e = invalid("tr", body(variants=[{"variant_id": "a", "hold_ttl": hold_ttl}]))
    assert e.code == "invalid_product"


def test_hold_ttl_accepts_seconds_up_to_a_day_as_floats():
    for ttl in (0.5, 600, 86400):
        p = product_from_dict("tr", body(variants=[{"variant_id": "a", "hold_ttl": ttl}]))
        assert p.variants[0].hold_ttl == float(ttl)
        assert isinstance(p.variants[0].hold_ttl, float)


def test_hold_ttl_refuses_a_boolean():
    e = invalid("tr", body(variants=[{"variant_id": "a", "hold_ttl": True}]))
    assert e.code == "invalid_product"


@pytest.mark.parametrize("shards", [0, 65, 2.0, True, "4"])
def test_shards_must_be_an_integer_in_1_to_64(shards):
    e = invalid("tr", body(variants=[{"variant_id": "a", "shards": shards}]))
    assert e.code == "invalid_product"


def test_shards_accept_1_and_64():
    p = product_from_dict("tr", body(variants=[{"variant_id": "a", "shards": 1},
                                               {"variant_id": "b", "shards": 64}]))
    assert [v.shards for v in p.variants] == [1, 64]


def test_a_variant_without_a_sku_uses_its_id_and_a_bad_sku_is_refused():
    p = product_from_dict("tr", body(variants=[{"variant_id": "a"}]))
    assert p.variants[0].sku == "a"
    assert invalid("tr", body(variants=[{"variant_id": "a", "sku": "S" * 129}])).code == \
        "invalid_product"
    assert invalid("tr", body(variants=[{"variant_id": "a", "sku": 12}])).code == \
        "invalid_product"


# -- Catalog -------------------------------------------------------------------------------

def test_catalog_indexes_products_and_variants():
    cat = Catalog([simple("shirt", ("shirt-s", "shirt-m")), simple("mug")])
    assert len(cat) == 2
    assert cat.get("shirt").product_id == "shirt"
    assert cat.find("nope") is None
    assert cat.product_of_variant("shirt-m").product_id == "shirt"
    assert cat.product_of_variant("mug").product_id == "mug"
    assert cat.product_of_variant("nope") is None
    assert {p.product_id for p in cat} == {"shirt", "mug"}


def test_getting_an_unknown_product_is_not_found():
    with pytest.raises(NotFound) as e:
        Catalog().get("nope")
    assert e.value.code == "product_not_found"


def test_a_variant_id_owned_by_another_product_is_taken():
    cat = Catalog([simple("shirt", ("shirt-s",))])
    with pytest.raises(ValidationFailed) as e:
        cat.put(simple("other", ("other-a", "shirt-s")))
    assert e.value.code == "variant_id_taken"
    assert cat.find("other") is None
    assert cat.product_of_variant("other-a") is None
    assert cat.product_of_variant("shirt-s").product_id == "shirt"


def test_an_implicit_variant_id_is_taken_too():
    cat = Catalog([simple("mug")])
    with pytest.raises(ValidationFailed) as e:
        cat.put(simple("cup", ("mug",)))
    assert e.value.code == "variant_id_taken"


def test_replacing_a_product_frees_the_variant_ids_it_dropped():
    cat = Catalog([simple("shirt", ("shirt-s", "shirt-m"))])
    cat.put(simple("shirt", ("shirt-m", "shirt-l"), price=2000))
    assert len(cat) == 1
    assert cat.product_of_variant("shirt-s") is None
    assert cat.product_of_variant("shirt-l").prices["USD"] == 2000
    cat.put(simple("other", ("shirt-s",)))
    assert cat.product_of_variant("shirt-s").product_id == "other"


def test_pages_walk_every_product_in_id_order():
    ids = [f"p{i:02d}" for i in range(7)]
    cat = Catalog(simple(pid) for pid in reversed(ids))
    seen, cursor, pages = [], None, 0
    while True:
        items, cursor = cat.page(3, cursor)
        seen += [p.product_id for p in items]
        pages += 1
        if cursor is None:
            break
    assert seen == ids
    assert pages == 3


def test_the_last_full_page_has_no_next_cursor():
    cat = Catalog(simple(f"p{i}") for i in range(6))
    items, cursor = cat.page(3, None)
    assert cursor == "p2"
    items, cursor = cat.page(3, cursor)
    assert [p.product_id for p in items] == ["p3", "p4", "p5"]
    assert cursor is None


def test_a_cursor_is_exclusive_and_need_not_be_an_existing_id():
    cat = Catalog(simple(pid) for pid in ("a", "c", "e"))
    assert [p.product_id for p in cat.page(10, "a")[0]] == ["c", "e"]
    assert [p.product_id for p in cat.page(10, "b")[0]] == ["c", "e"]
    assert cat.page(10, "z") == ([], None)
    assert cat.page(10, None) == (cat.page(10, "")[0], None)


# -- product_to_dict -----------------------------------------------------------------------

def test_product_to_dict_has_the_api_md_shape():
    p = product_from_dict("trail-runner-2", API_BODY)
    assert product_to_dict(p) == {
        "product_id": "trail-runner-2",
        "name": "Trail Runner 2",
        "description": "...",
        "category": "shoes",
        "price": {"amount": 8999, "currency": "USD"},
        "prices": [{"amount": 8999, "currency": "USD"}],
        "variants": [{
            "variant_id": "trail-runner-2-42-blue",
            "sku": "TR2-42-BLU",
            "attributes": {"size": "42", "color": "blue"},
            "price": {"amount": 9499, "currency": "USD"},
            "prices": [{"amount": 9499, "currency": "USD"}],
            "hold_ttl": None,
            "shards": 1,
        }],
    }


def test_product_to_dict_adds_availability_when_known():
    p = product_from_dict("tr", body(variants=[{"variant_id": "a"}, {"variant_id": "b"}]))
    out = product_to_dict(p, available={"a": 7})
    assert [v["available"] for v in out["variants"]] == [7, 0]
    assert all("available" not in v for v in product_to_dict(p)["variants"])


def test_product_to_dict_shows_variant_prices_merged_over_the_product_prices():
    p = product_from_dict("tr", body(prices=[{"amount": 8499, "currency": "EUR"}], variants=[
        {"variant_id": "a", "price": {"amount": 7999, "currency": "EUR"}}]))
    v = product_to_dict(p)["variants"][0]
    assert v["price"] == {"amount": 8999, "currency": "USD"}
    assert v["prices"] == [{"amount": 8999, "currency": "USD"},
                           {"amount": 7999, "currency": "EUR"}]


def test_product_to_dict_uses_the_first_variant_price_when_the_product_has_none():
    p = product_from_dict("tr", body(price=None))
    out = product_to_dict(p)
    assert out["prices"] == []
    assert out["price"] == {"amount": 9499, "currency": "USD"}


def test_product_to_dict_round_trips_through_product_from_dict():
    p = product_from_dict("tr", body(prices=[{"amount": 8499, "currency": "EUR"}]))
    again = product_from_dict("tr", product_to_dict(p))
    assert again.prices == p.prices
    assert [(v.variant_id, v.sku, dict(v.attributes)) for v in again.variants] == \
        [(v.variant_id, v.sku, dict(v.attributes)) for v in p.variants]
    for v, w in zip(p.variants, again.variants, strict=True):
        for cur in ("USD", "EUR"):
            assert again.price_of(w, cur) == p.price_of(v, cur)


# -- examples/catalog.json -----------------------------------------------------------------

def test_every_product_of_the_example_catalog_loads():
    entries = json.loads(EXAMPLE_CATALOG.read_text(encoding="utf-8"))
    assert len(entries) > 0
    products = [product_from_dict(e["product_id"], e) for e in entries]
    cat = Catalog(products)
    assert len(cat) == len(entries)
    for e, p in zip(entries, products, strict=True):
        assert p.name == e["name"]
        expected_ids = [v["variant_id"] for v in e.get("variants") or []] or [e["product_id"]]
        assert [v.variant_id for v in p.variants] == expected_ids
        for v in p.variants:
            assert cat.product_of_variant(v.variant_id) is p
            assert p.price_of(v, e["price"]["currency"]) >= 0
