"""The API.md error body (`gateway.errors.error_response`): rendered by orjson, the same
bytes Starlette's encoder gives, and by Starlette's for what orjson refuses."""

from __future__ import annotations

import json

import pytest
from fastapi.responses import JSONResponse

from gateway.errors import error_response

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("details", [
    None, [{"field": "quantity", "message": "must be at least 1"}],
    [{"message": "ünïcode ✓ and \"quotes\" and \\ and \u2028"}], [{"available": 0, "ratio": 0.5}]])
def test_an_error_body_is_the_bytes_starlettes_encoder_gives(details) -> None:  # type: ignore[no-untyped-def]
    ours = error_response(409, "out_of_stock", "sold out", details)
    theirs = JSONResponse({"error": {"code": "out_of_stock", "message": "sold out",
                                     "details": details or []}}, status_code=409)
    assert ours.body == theirs.body
    assert ours.status_code == 409
    assert ours.headers["content-type"] == "application/json"
    assert ours.headers["content-length"] == str(len(ours.body))


def test_a_value_orjson_refuses_is_rendered_by_the_standard_encoder() -> None:
    big = 2**70  # past orjson's 64-bit integers
    body = error_response(422, "invalid", "too big", [{"input": big}]).body
    assert json.loads(body)["error"]["details"] == [{"input": big}]
