"""OpenTelemetry tracing: off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (or a test hands
in an exporter); when off, each hook costs one check of a module global.

Spans, all in one trace per request (the context travels in ``contextvars``, so through
every turn that runs in the request's process, including the parallel ones of a checkout):

- ``HTTP`` server span per request (the official FastAPI instrumentation, `instrument_app`);
- ``turn {kind}.{method}`` around each actor turn (`turn`, called by ``Host._turn``);
  attributes ``cart_engine.actor.kind``, ``cart_engine.actor.key`` (not for ``user`` actors,
  whose key is a person) and ``cart_engine.error`` (the domain error code of a refused turn,
  which is an answer, not a failure: the span status stays unset);
- ``redis.commit`` around each group commit to Redis (`span`), attribute ``writes``;
- ``payment.authorize`` / ``payment.void`` around each payment provider call
  (`traced_payments`), attributes ``order_id``, ``amount`` (minor units), ``currency``.

Export: OTLP over HTTP/protobuf to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter reads the
standard ``OTEL_EXPORTER_OTLP_*`` variables), batched; ``OTEL_SERVICE_NAME`` names the
service (default ``cart-engine``). A group commit carries the writes of many requests: its
span joins the trace of the request whose turn opened it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from typing import Any

from engine.errors import DomainError

__all__ = ["enabled", "instrument_app", "setup_tracing", "shutdown", "span",
           "traced_payments", "turn"]

_tracer: Any = None
_provider: Any = None
_OFF = nullcontext()


def enabled() -> bool:
    return _tracer is not None


def setup_tracing(exporter: Any = None, service_name: str | None = None) -> bool:
    """Turn tracing on when ``exporter`` is given (a span exporter: tests pass an in-memory
    one, exported span by span) or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (OTLP/HTTP,
    batched); answers whether it is on. Idempotent: a second call keeps the first set-up."""
    global _tracer, _provider
    if _tracer is not None:
        return True
    if exporter is None and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "cart-engine"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _provider, _tracer = provider, provider.get_tracer("cart_engine")
    return True


def shutdown() -> None:
    """Flush and stop the exporter; tracing is off afterwards."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def instrument_app(app: Any) -> None:
    """Give every HTTP request of a FastAPI ``app`` its server span (when tracing is on,
    setting it up from the environment first)."""
    if not setup_tracing():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider,
                                       exclude_spans=["receive", "send"])


def turn(kind: str, key: str, method: str) -> Any:
    """Context manager around one actor turn (``Host._turn``)."""
    if _tracer is None:
        return _OFF
    attrs = {"cart_engine.actor.kind": kind, "cart_engine.actor.method": method}
    if kind != "user":
        attrs["cart_engine.actor.key"] = key
    return _span(f"turn {kind}.{method}", attrs)


def span(name: str, **attributes: Any) -> Any:
    """Context manager for a span of this process's own work (``redis.commit``, ...)."""
    if _tracer is None:
        return _OFF
    return _span(name, attributes)


@contextmanager
def _span(name: str, attributes: dict[str, Any]) -> Any:
    with _tracer.start_as_current_span(name, attributes=attributes, record_exception=False,
                                       set_status_on_exception=False) as s:
        try:
            yield s
        except DomainError as e:
            s.set_attribute("cart_engine.error", e.code)
            raise
        except Exception as e:
            from opentelemetry.trace import Status, StatusCode

            s.record_exception(e)
            s.set_status(Status(StatusCode.ERROR, type(e).__name__))
            raise


class _TracedPayments:
    """A payment provider whose calls (`actors.payments.PaymentProvider`: authorize,
    capture, void, refund) are spans; anything else goes to the provider as it is."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._provider, name)
        if name not in _PAYMENT_CALLS:
            return attr

        async def traced(*args: Any, **kwargs: Any) -> Any:
            names = _PAYMENT_CALLS[name]
            with span(f"payment.{name}", **dict(zip(names, args, strict=False))):
                return await attr(*args, **kwargs)
        return traced


#: The calls traced, with the names of the leading arguments their span records (amounts in
#: minor units; never the card token).
_PAYMENT_CALLS = {"authorize": ("order_id", "amount", "currency"),
                  "capture": ("reference", "amount", "currency"),
                  "void": ("reference",), "refund": ("reference", "amount", "currency")}


def traced_payments(provider: Any) -> Any:
    """``provider`` with a span around each payment call (none when tracing is off)."""
    return _TracedPayments(provider)
