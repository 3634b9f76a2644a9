"""One keep-alive connection over carts of both hosts of a machine: each request is served by
its cart's owner, the connection passed between the hosts (`gateway.handoff`)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.server import Server, auth
from tests.e2e.test_cart_flow import _product

pytestmark = pytest.mark.e2e


def _outcomes(server: Server) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    text = httpx.get(server.url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "cart_engine_ingress_forwarded_requests_total":
                out[s.labels["outcome"]] = out.get(s.labels["outcome"], 0) + s.value
    return out


def test_one_connection_is_handed_to_the_owner_of_each_cart(server: Server) -> None:
    pid = _product(server, price=1500, stock=1000)
    carts = []
    for _ in range(12):  # one connection each: the kernel spreads them over both hosts
        with server.client() as c:
            body = c.post("/v1/carts").json()
            carts.append((body["cart_id"], body["token"]))
    before = _outcomes(server)
    ports = set()
    with httpx.Client(base_url=server.url, timeout=30,
                      limits=httpx.Limits(max_connections=1)) as c:
        for units in (1, 2):
            for cid, token in carts:
                r = c.post(f"/v1/carts/{cid}/items", headers=auth(token), json={
                    "product_id": pid, "variant_id": f"{pid}-42", "quantity": 1})
                assert r.status_code == 200, r.text
                assert r.json()["lines"][0]["quantity"] == units
                ports.add(r.extensions["network_stream"].get_extra_info(
                    "client_addr")[1])
                r = c.get(f"/v1/carts/{cid}", headers=auth(token))
                assert r.status_code == 200 and r.json()["cart_id"] == cid
    after = _outcomes(server)
    assert len(ports) == 1  # one connection the whole time
    handed = after["handed_off"] - before["handed_off"]
    assert handed > 0
    assert after["handed_in"] - before["handed_in"] == handed
    assert after["handed_back"] - before["handed_back"] > 0  # a parked copy took it back
    assert after["forwarded"] == before["forwarded"]  # nothing needed forwarding
