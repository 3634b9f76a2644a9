"""The hot cart and checkout routes (`LeanRoute`, only ``request`` declared) still document
their path ids, headers and bodies, and still answer bad input with the API.md error body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from actors.service import CartService
from gateway.app import create_app
from gateway.auth import issue_token
from gateway.deps import LeanRoute
from gateway.settings import GatewaySettings

pytestmark = pytest.mark.integration
SECRET = "x" * 40
ITEMS = "/v1/carts/{cart_id}/items"
CHECKOUT = "/v1/carts/{cart_id}/checkout"
REMOVE_CODE = "/v1/carts/{cart_id}/discounts/{code}"
ORDER = "/v1/orders/{order_id}"


@pytest.fixture
def app() -> FastAPI:
    return create_app(GatewaySettings(auth_secret=SECRET))


@pytest.fixture
def spec(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def parameters(spec: dict[str, Any], path: str, method: str) -> dict[tuple[str, str], Any]:
    """``(in, name) -> parameter`` of one operation; a name documented twice fails here."""
    params = spec["paths"][path][method].get("parameters", [])
    keyed = {(p["in"], p["name"]): p for p in params}
    assert len(keyed) == len(params), f"{method.upper()} {path} repeats a parameter"
    return keyed


def body_schema(spec: dict[str, Any], path: str, method: str) -> tuple[bool, dict[str, Any]]:
    """Whether the JSON body is required, and the components schema its ``$ref`` names."""
    body = spec["paths"][path][method]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    prefix = "#/components/schemas/"
    assert ref.startswith(prefix)
    return body.get("required", False), spec["components"]["schemas"][ref[len(prefix):]]


def resolve(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node  # type: ignore[no-any-return]


def test_the_routes_under_test_are_lean_routes_that_take_only_the_request(app: FastAPI) -> None:
    lean = {(r.path, m) for r in app.routes if isinstance(r, LeanRoute) for m in r.methods}
    assert {(ITEMS, "POST"), (CHECKOUT, "POST"), (REMOVE_CODE, "DELETE"),
            (ORDER, "GET")} <= lean


def test_a_lean_route_refuses_an_endpoint_that_is_not_async() -> None:
    def blocking(request: Any) -> Any:  # would block the event loop of every request
        return None

    with pytest.raises(TypeError, match="async def"):
        LeanRoute("/v1/blocking", blocking, methods=["GET"])


def test_adding_an_item_documents_its_cart_id_headers_and_required_body(
        spec: dict[str, Any]) -> None:
    params = parameters(spec, ITEMS, "post")
    cart_id = params[("path", "cart_id")]
    assert cart_id["required"] is True and cart_id["schema"]["type"] == "string"
    assert cart_id["schema"]["pattern"]
    for header in ("Authorization", "Idempotency-Key", "If-Match"):
        assert ("header", header) in params
    required, schema = body_schema(spec, ITEMS, "post")
    assert required is True
    assert {"product_id", "quantity"} <= set(schema["properties"])
    assert schema["properties"]["quantity"]["type"] == "integer"
    assert {"product_id", "quantity"} <= set(schema.get("required", []))


def test_checkout_documents_its_body_and_the_nested_payment_schema(
        spec: dict[str, Any]) -> None:
    assert ("path", "cart_id") in parameters(spec, CHECKOUT, "post")
    required, schema = body_schema(spec, CHECKOUT, "post")
    assert required is True
    payment_ref = schema["properties"]["payment"]["$ref"]
    assert payment_ref == "#/components/schemas/Payment"
    payment = resolve(spec, payment_ref)
    assert "token" in payment["properties"]


def test_removing_a_code_documents_both_path_parameters(spec: dict[str, Any]) -> None:
    params = parameters(spec, REMOVE_CODE, "delete")
    assert params[("path", "code")]["required"] is True
    assert params[("path", "cart_id")]["required"] is True


def test_reading_an_order_documents_its_order_id(spec: dict[str, Any]) -> None:
    params = parameters(spec, ORDER, "get")
    assert params[("path", "order_id")]["required"] is True
    assert ("header", "Authorization") in params


def test_every_component_ref_in_the_document_resolves(spec: dict[str, Any]) -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    assert "#/components/schemas/ItemCreate" in refs
    unresolved = []
    for ref in set(refs):
        try:
            resolve(spec, ref)
        except KeyError:
            unresolved.append(ref)
    assert unresolved == []


def test_a_second_app_documents_the_shared_hot_routes_the_same_way(
        spec: dict[str, Any]) -> None:
    # The routes are module-level objects shared by every app; building another app's
    # document must not add their parameters twice.
    other = create_app(GatewaySettings(auth_secret=SECRET)).openapi()
    for path, method in ((ITEMS, "post"), (REMOVE_CODE, "delete"), (ORDER, "get")):
        assert parameters(other, path, method) == parameters(spec, path, method)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    service = await CartService.in_process()
    app = create_app(GatewaySettings(auth_secret=SECRET), service)
    app.state.service = service  # the lifespan would do this; ASGITransport does not run it
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as c:
        yield c
    await service.close()


AUTH = {"Authorization": f"Bearer {issue_token(SECRET, 'alice')}"}


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"}
    return body["error"]  # type: ignore[no-any-return]


async def test_bad_input_to_the_hot_add_item_route_answers_the_api_error_body(
        client: httpx.AsyncClient) -> None:
    bad_id = await client.post("/v1/carts/-bad/items", headers=AUTH,
                               json={"product_id": "p1", "quantity": 1})
    assert bad_id.status_code == 422
    error = error_of(bad_id)
    assert error["code"] == "validation_failed" and error["message"]
    assert [d["field"] for d in error["details"]] == ["path.cart_id"]

    not_json = await client.post("/v1/carts/c_1/items", content=b"{not json",
                                 headers={**AUTH, "Content-Type": "application/json"})
    assert not_json.status_code == 400
    assert error_of(not_json)["code"] == "malformed_json"

    string_quantity = await client.post("/v1/carts/c_1/items", headers=AUTH,
                                        json={"product_id": "p1", "quantity": "2"})
    assert string_quantity.status_code == 422
    error = error_of(string_quantity)
    assert error["code"] == "validation_failed"
    assert [d["field"] for d in error["details"]] == ["quantity"]
