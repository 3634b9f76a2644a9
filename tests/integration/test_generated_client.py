"""A contract clients can generate from (issue 13): every answer of every route has a named
schema, operation ids are short and stable, and a Python client generated from the served
``/openapi.json`` by openapi-python-client (offline, into a temporary directory) drives a
guest's cart flow with typed answers: open, add, discount, checkout, read the order.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.integration.inprocess import gateway

pytestmark = pytest.mark.integration
PACKAGE = "cart_engine_client"
PRODUCT = {"name": "Field Tee", "description": "A cotton tee.", "category": "tops",
           "price": {"amount": 2500, "currency": "USD"},
           "variants": [{"variant_id": "field-tee-m", "sku": "FT-M",
                         "attributes": {"size": "M"}, "stock": 10}]}
PROMOTION = {"kind": "percentage", "value": 1000, "code": "TEN",
             "description": "10% off"}  # basis points: 10 %


async def _served_document() -> dict[str, Any]:
    async with gateway() as (http, _):
        r = await http.get("/openapi.json")
        assert r.status_code == 200
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    import asyncio

    return asyncio.run(_served_document())


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


def test_operation_ids_are_tag_and_route_name_and_unique(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(document)]
    assert len(ids) == len(set(ids))
    for method, path, op in _operations(document):
        assert re.fullmatch(r"[a-z]+-[a-z_]+", op["operationId"]), (method, path)
        assert op["operationId"].split("-")[0] == op["tags"][0], (method, path)
    named = {(m, p): op["operationId"] for m, p, op in _operations(document)}
    assert named["GET", "/v1/carts/{cart_id}"] == "carts-get"
    assert named["POST", "/v1/carts/{cart_id}/items"] == "carts-add_item"
    assert named["POST", "/v1/carts/{cart_id}/checkout"] == "checkout-checkout"
    assert named["GET", "/v1/orders/{order_id}"] == "orders-get"


def test_every_json_answer_has_a_named_schema(document: dict[str, Any]) -> None:
    """2xx and errors alike: a ``$ref`` to a components schema, never an inline or empty
    one (which a generator turns into a bare dict). ``/metrics`` is Prometheus text."""
    schemas = document["components"]["schemas"]
    unnamed = []
    for method, path, op in _operations(document):
        errors = [s for s in op["responses"] if s[0] in "45"]
        assert errors or path in ("/metrics",), f"{method} {path} documents no error"
        for status, answer in op["responses"].items():
            content = answer.get("content", {})
            if status == "204" or "text/plain" in content:
                continue
            media = "text/event-stream" if "text/event-stream" in content else \
                "application/json"  # an event stream names the schema of one event
            ref = content.get(media, {}).get("schema", {}).get("$ref", "")
            name = ref.removeprefix("#/components/schemas/")
            if not ref or name not in schemas:
                unnamed.append(f"{method} {path} {status}")
            elif status[0] in "45":
                assert name == "ErrorPublic", f"{method} {path} {status}: {name}"
    assert not unnamed


@pytest.fixture(scope="module")
def client_package(document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[ModuleType]:
    """The client openapi-python-client generates from the served document, imported."""
    where = tmp_path_factory.mktemp("generated")
    spec = where / "openapi.json"
    spec.write_text(json.dumps(document))
    config = where / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: nothing outside the venv
    out = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec),
         "--meta", "none", "--output-path", str(where / PACKAGE), "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    # Any warning means an endpoint or a model was left out of the client.
    assert "warning" not in (out.stdout + out.stderr).lower(), out.stdout + out.stderr
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _api(package: ModuleType, operation_id: str) -> ModuleType:
    """The generated module of an operation (``carts-add_item``: ``api.carts.carts_add_item``)."""
    tag = operation_id.split("-")[0]
    return importlib.import_module(
        f"{package.__name__}.api.{tag}.{operation_id.replace('-', '_')}")


def test_every_operation_is_generated(document: dict[str, Any],
                                      client_package: ModuleType) -> None:
    for _, _, op in _operations(document):
        module = _api(client_package, op["operationId"])
        assert hasattr(module, "asyncio_detailed"), op["operationId"]


async def test_a_guest_cart_flow_through_the_generated_client(
        client_package: ModuleType) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    Client = client_package.Client  # noqa: N806 - the generated class

    def call(operation_id: str) -> Any:
        return _api(client_package, operation_id).asyncio_detailed

    from tests.integration.inprocess import bearer

    admin = bearer("ops", "admin")["Authorization"]
    async with gateway() as (http, _):
        client = Client(base_url=str(http.base_url))
        client.set_async_httpx_client(http)

        # The catalog and a coupon code, through the generated admin operations.
        r = await call("admin-put_product")(
            "field-tee", client=client, authorization=admin,
            body=models.AdminPutProductBody.from_dict(PRODUCT))
        assert r.status_code == 200 and isinstance(r.parsed, models.ProductPublic)
        assert r.parsed.variants[0].sku == "FT-M"
        r = await call("admin-put_promotion")(
            "ten", client=client, authorization=admin,
            body=models.AdminPutPromotionBody.from_dict(PROMOTION))
        assert isinstance(r.parsed, models.PromotionPublic) and r.parsed.code == "TEN"
        r = await call("catalog-get")("field-tee", client=client)
        assert isinstance(r.parsed, models.ProductPublic)
        assert r.parsed.variants[0].available == 10

        # A guest: a cart and its token, without a token.
        r = await call("carts-open")(client=client)
        assert r.status_code == 201 and isinstance(r.parsed, models.CartPublic)
        cart, guest = r.parsed, f"Bearer {r.parsed.token}"
        assert cart.status == "active" and cart.lines == []

        r = await call("carts-add_item")(
            cart.cart_id, client=client, authorization=guest, idempotency_key="add-1",
            body=models.ItemCreate(product_id="field-tee", variant_id="field-tee-m",
                                   quantity=2))
        assert isinstance(r.parsed, models.CartPublic)
        (line,) = r.parsed.lines
        assert isinstance(line, models.LinePublic) and line.quantity == 2
        assert r.parsed.totals.subtotal.amount == 5000
        assert r.headers["ETag"] == f'"{r.parsed.version}"'

        r = await call("carts-add_code")(cart.cart_id, client=client, authorization=guest,
                                         body=models.CodeCreate(code="ten"),
                                         if_match=r.headers["ETag"])
        assert isinstance(r.parsed, models.CartPublic)
        assert r.parsed.totals.discount.amount == 500
        total = r.parsed.totals.total
        assert isinstance(total, models.MoneyPublic) and total.currency == "USD"

        # An error is typed too: the API.md error body.
        r = await call("carts-add_item")(
            cart.cart_id, client=client, authorization=guest,
            body=models.ItemCreate(product_id="no-such-product", quantity=1))
        assert r.status_code == 404 and isinstance(r.parsed, models.ErrorPublic)
        assert r.parsed.error.code == "product_not_found"

        r = await call("checkout-checkout")(
            cart.cart_id, client=client, authorization=guest, idempotency_key="pay-1",
            body=models.CheckoutCreate(payment=models.Payment(token="tok_ok")))
        assert r.status_code == 201 and isinstance(r.parsed, models.OrderPublic)
        order = r.parsed
        assert order.status == "paid" and order.totals.total.amount == total.amount
        assert order.cart_id == cart.cart_id

        r = await call("orders-get")(order.order_id, client=client, authorization=guest)
        assert isinstance(r.parsed, models.OrderPublic)
        assert r.parsed.order_id == order.order_id and r.parsed.status == "paid"
        r = await call("catalog-get")("field-tee", client=client)
        assert r.parsed.variants[0].available == 8
