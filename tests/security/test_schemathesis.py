"""Schemathesis over the served OpenAPI document: as an anonymous client, a user and an admin,
every built-in check (server errors, status codes, content types, headers and bodies against
the document, negative data rejected, positive data accepted, ...), bounded examples.

The server is a real ``cart-engine serve`` (local placement, the session's Redis, the example
catalog), so what is checked is what is served. Figures at the end of the module (requests by
role) print with ``-s``.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.conftest import CATALOG
from tests.e2e.server import Server

pytestmark = pytest.mark.security

#: Examples per operation and role in the fuzzing phase (the coverage phase adds its own
#: boundary cases): ~20 operations x 3 roles in one to two minutes on 2 shared cores.
MAX_EXAMPLES = 5
SENT: Counter[str] = Counter()


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    prefix = "sch" + uuid.uuid4().hex[:8]
    log = Path(tmp_path_factory.mktemp("schemathesis")) / "server.log"
    server = Server("--placement", "local", "--hosts", "1", "--redis-url", redis_url,
                    "--redis-prefix", prefix, "--catalog", str(CATALOG), log=log).start()
    yield server
    server.stop()
    print(f"\nschemathesis: {sum(SENT.values())} cases ({dict(SENT)}); failures dropped as "
          f"rules JSON Schema cannot state: {dict(DROPPED)}")
    import redis

    r = redis.Redis.from_url(redis_url)
    for key in r.scan_iter(match=f"{prefix}:*", count=1000):
        r.delete(key)
    r.close()


#: The document the gateway serves (`test_the_document_is_the_served_one` checks that it
#: is); built here rather than fetched, as schemathesis' lazy loading does not run on pytest 9.
DOCUMENT = create_app(GatewaySettings()).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_document_is_the_served_one(served: Server) -> None:
    assert served.client().get("/openapi.json").json() == DOCUMENT


# Rules of the API that JSON Schema cannot state: a request that breaks one is refused with a
# 422 (README), which schemathesis, judging by the document alone, calls "schema-valid data
# rejected". Only such a failure, for such a request and with that very error, is dropped.
DROPPED: Counter[str] = Counter()


def _integral_float(value: Any) -> bool:
    """JSON Schema counts ``2.0`` as an integer; the API takes integer literals only."""
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(_integral_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_integral_float(v) for v in value)
    return False


def _coherent_destination(place: Any) -> bool:
    """ISO 3166-2: a bare region needs its country; a full one must be of that country."""
    if not isinstance(place, dict) or not isinstance(place.get("region"), str):
        return True
    region, country = place["region"].upper(), place.get("country")
    if "-" not in region:
        return isinstance(country, str)
    return not isinstance(country, str) or region.startswith(country.upper() + "-")


def _beyond_exact_integers(value: Any) -> bool:
    """An integer past 2**53 - 1 anywhere in ``value`` (RFC 7493 section 2.2: the gateway
    refuses it at parse time; the free-form admin bodies state that in prose only, since the
    document keeps their schema one level deep for client generators)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) > 2**53 - 1
    if isinstance(value, dict):
        return any(_beyond_exact_integers(v) for v in value.values())
    if isinstance(value, list):
        return any(_beyond_exact_integers(v) for v in value)
    return False


@schema.hook("filter_failure")
def _keep_unless_an_unstated_rule(context: Any, failure: Any, case: Any,
                                  response: Any) -> bool:
    if type(failure).__name__ != "RejectedPositiveData" or response.status_code not in (400,
                                                                                       422):
        return True
    error = response.json()["error"]
    if response.status_code == 400:
        if error["code"] == "malformed_json" and "RFC 7493" in str(error["details"]) and \
                _beyond_exact_integers(case.body):
            DROPPED["integer beyond 2**53 in a free-form body"] += 1
            return False
        return True
    body = case.body if isinstance(case.body, dict) else {}
    if error["code"] == "invalid_destination" and not (
            _coherent_destination(case.query) and
            _coherent_destination(body.get("shipping_address"))):
        DROPPED["region without its country"] += 1
        return False
    if error["code"] in ("invalid_range", "range_too_large") and \
            case.path == "/v1/admin/analytics":
        DROPPED["analytics range reversed or over its bucket limit"] += 1
        return False
    types = {d.get("type") for d in error["details"]}
    if error["code"] == "validation_failed" and _integral_float(case.body) and \
            "int_type" in types and types <= {"int_type", "string_type", "bool_type"}:
        DROPPED["integer written as 2.0"] += 1
        return False
    return True


#: Operations whose body rules are the engine's (a product, a promotion: documented in prose,
#: `engine.catalog.product_from_dict`, `engine.promotions.promotion_from_dict`): a random
#: schema-valid object is rightly a 422 there, so "positive data is accepted" cannot hold for
#: an admin; every other check still runs on them.
ENGINE_RULED = {("PUT", "/v1/admin/products/{product_id}"),
                ("PUT", "/v1/admin/promotions/{promotion_id}")}
_BOUNDED = settings(max_examples=MAX_EXAMPLES, deadline=None,
                    suppress_health_check=list(HealthCheck))


def _check(case: Any, served: Server, role: str, headers: dict[str, str]) -> None:
    SENT[role] += 1
    excluded = [schemathesis.checks.positive_data_acceptance] if role == "admin" and \
        (case.method.upper(), case.path) in ENGINE_RULED else []
    case.call_and_validate(base_url=served.url, headers=headers, timeout=30,
                           excluded_checks=excluded)


@schema.parametrize()
@_BOUNDED
def test_api_as_anonymous(case: Any, served: Server) -> None:
    _check(case, served, "anonymous", {})


@schema.parametrize()
@_BOUNDED
def test_api_as_user(case: Any, served: Server) -> None:
    _check(case, served, "user", {"Authorization": f"Bearer {served.token('shopper-1')}"})


@schema.parametrize()
@_BOUNDED
def test_api_as_admin(case: Any, served: Server) -> None:
    _check(case, served, "admin",
           {"Authorization": f"Bearer {served.token('ops', admin=True)}"})
