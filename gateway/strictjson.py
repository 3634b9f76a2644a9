"""Request bodies parsed as strict JSON: only values the engine and its codec can hold.

RFC 8259 section 6 has no ``NaN`` or ``Infinity``, and section 9 lets a parser bound its
numbers; Python's ``json`` accepts both and integers of any size. Here a number must be an
integer within ``MAX_JSON_INT`` (RFC 7493 section 2.2, I-JSON: exact in every JSON client) or a
finite float; anything else is a parse error (400 ``malformed_json``), before a route sees it.

- `strict_loads`: the parser;
- `StrictJSONRoute`: an ``APIRoute`` (FastAPI's documented custom route class) whose request
  body is parsed by `strict_loads`, for the routes whose bodies FastAPI parses;
- `refuse_non_finite`: the lean hot routes' check (their bodies are parsed by pydantic).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

#: Largest magnitude of an integer in a request body (RFC 7493 section 2.2: 2**53 - 1).
MAX_JSON_INT = 2**53 - 1
#: Longest integer literal parsed at all (longer ones cannot be within `MAX_JSON_INT`, and
#: converting thousands of digits costs quadratic time).
_MAX_INT_DIGITS = 20


#: JSON Schema of a value `strict_loads` accepts, for the OpenAPI document (its components
#: get ``JsonValue`` through `gateway.deps.BODY_SCHEMAS`), and of an object of such values.
#: Not recursive: client generators (openapi-python-client) cannot follow a union that
#: refers to itself, and drop the operation; the bounds on nested values are stated in the
#: description (and enforced by `strict_loads` at every depth).
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": f"any JSON value; numbers finite, integers within +-{MAX_JSON_INT} "
                   "(RFC 7493 section 2.2) at every depth",
    "anyOf": [
        {"type": "string"}, {"type": "boolean"}, {"type": "null"},
        {"type": "integer", "minimum": -MAX_JSON_INT, "maximum": MAX_JSON_INT},
        {"type": "number", "not": {"type": "integer"}},
        {"type": "array", "items": {}},
        {"type": "object", "additionalProperties": True}]}
JSON_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}}


def _bad(message: str) -> json.JSONDecodeError:
    return json.JSONDecodeError(message, "", 0)


def _constant(name: str) -> Any:
    raise _bad(f"{name} is not JSON (RFC 8259 section 6)")


def _integer(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS or abs(value := int(text)) > MAX_JSON_INT:
        raise _bad(f"integers are at most {MAX_JSON_INT} in magnitude (RFC 7493 section 2.2)")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _bad("numbers must be finite")
    return value


def strict_loads(data: bytes | str) -> Any:
    """``data`` parsed as JSON (UTF-8). Raises json.JSONDecodeError for malformed JSON,
    ``NaN`` / ``Infinity``, a number that overflows to infinity, an integer beyond
    `MAX_JSON_INT` in magnitude, or nesting deeper than the interpreter's recursion limit."""
    try:
        return json.loads(data, parse_constant=_constant, parse_int=_integer,
                          parse_float=_float)
    except RecursionError:
        raise _bad("the body is nested too deeply") from None


def refuse_non_finite(body: bytes) -> None:
    """Raise json.JSONDecodeError if ``body`` holds ``NaN`` or ``Infinity`` tokens (which
    pydantic's JSON parser accepts). Cheap: the body is parsed only if those bytes occur."""
    if b"NaN" in body or b"Infinity" in body:
        strict_loads(body)


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body is parsed by `strict_loads` (a malformed or out-of-range body
    is FastAPI's ``json_invalid`` validation error: 400 ``malformed_json``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict
