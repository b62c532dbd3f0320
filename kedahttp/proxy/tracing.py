"""OpenTelemetry spans for the proxy's cold path: each held request, and each cold start of an app.

Off by default (TRACING=false) and then free: the dispatcher's observer is None, one ``is None`` test
on a hold (never on a request that finds an endpoint), and opentelemetry is never imported. When on,
spans go to the global tracer provider, which the operator configures (the OpenTelemetry SDK and an
exporter, e.g. under ``opentelemetry-instrument``); only ``opentelemetry-api`` is needed here.

A held request's span (``kedahttp.hold``) is the child of the client's ``traceparent``, and when the
request is released the proxy rewrites the ``traceparent`` it forwards (same length: only the parent id
changes; one is added when the client sent none), so the app's own server span is the child of the
hold and the trace shows where the time went. An app's cold start (``kedahttp.cold_start``) starts with
the hold that woke it, as that request's child, and ends when an endpoint turns ready (or when every
request it held has timed out).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from kedahttp.process.settings import SettingError

_TRACEPARENT = re.compile(rb"\r\ntraceparent:[ \t]*([0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})[ \t]*(?=\r\n)",
                          re.IGNORECASE)
_TRACESTATE = re.compile(rb"\r\ntracestate:[ \t]*([^\r\n]*)", re.IGNORECASE)


class HoldObserver(Protocol):
    """What the dispatcher tells about its hold queues (dispatch.py calls it only when it is set)."""

    def held(self, key: str, ex: Any, wakes: bool) -> None:
        """``ex`` was held for app ``key``; ``wakes``: it started the app's cold start."""

    def released(self, key: str, ex: Any) -> None:
        """An endpoint turned ready: ``ex`` leaves the queue for it (before it is sent)."""

    def ended(self, key: str, ex: Any, outcome: str, queue_empty: bool) -> None:
        """``ex`` left the queue without an endpoint: "timeout", "gone" (client left) or "removed"."""


def make_observer(enabled: bool) -> HoldObserver | None:
    """The tracer when TRACING is on; None (nothing imported, nothing called) when off."""
    if not enabled:
        return None
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise SettingError("tracing", "true", "needs opentelemetry-api: pip install 'kedahttp[tracing]'") from exc
    return HoldTracer(trace.get_tracer("kedahttp.proxy"))


def incoming_context(head: bytes) -> Any:
    """The OpenTelemetry context of a request head's traceparent/tracestate (empty when absent)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {}
    found = _TRACEPARENT.search(head)
    if found is not None:
        carrier["traceparent"] = found[1].decode()
        state = _TRACESTATE.search(head)
        if state is not None:
            carrier["tracestate"] = state[1].decode().strip()
    return TraceContextTextMapPropagator().extract(carrier)


def with_traceparent(head: bytes, traceparent: str) -> bytes:
    """``head`` forwarding ``traceparent``: the client's value replaced (same length) or one added."""
    value = traceparent.encode()
    found = _TRACEPARENT.search(head)
    if found is not None:
        return head[:found.start(1)] + value + head[found.end(1):]
    end = head.rfind(b"\r\n\r\n")
    return head[:end] + b"\r\ntraceparent: " + value + head[end:]


class HoldTracer:
    def __init__(self, tracer: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.status import Status, StatusCode

        self._trace = trace
        self._error = Status(StatusCode.ERROR)
        self.tracer = tracer
        self.holds: dict[Any, Any] = {}  # exchange -> its hold span
        self.cold_starts: dict[str, Any] = {}  # app -> its cold-start span

    def held(self, key: str, ex: Any, wakes: bool) -> None:
        parent = incoming_context(ex.head)
        attributes = {"kedahttp.app": key, "http.request.method": ex.method.decode("latin-1")}
        self.holds[ex] = self.tracer.start_span("kedahttp.hold", context=parent, attributes=attributes)
        if wakes and key not in self.cold_starts:
            self.cold_starts[key] = self.tracer.start_span("kedahttp.cold_start", context=parent,
                                                           attributes={"kedahttp.app": key})

    def released(self, key: str, ex: Any) -> None:
        cold = self.cold_starts.pop(key, None)
        if cold is not None:
            cold.set_attribute("kedahttp.outcome", "ready")
            cold.end()
        span = self.holds.pop(ex, None)
        if span is None:
            return
        span.set_attribute("kedahttp.outcome", "released")
        context = span.get_span_context()
        traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        head = with_traceparent(ex.head, traceparent)
        if ex.out and ex.out[0] is ex.head:
            ex.out[0] = head
        ex.head = head
        span.end()

    def ended(self, key: str, ex: Any, outcome: str, queue_empty: bool) -> None:
        span = self.holds.pop(ex, None)
        if span is not None:
            span.set_attribute("kedahttp.outcome", outcome)
            if outcome != "gone":
                span.set_status(self._error)
            span.end()
        if queue_empty and outcome != "gone":
            cold = self.cold_starts.pop(key, None)
            if cold is not None:
                cold.set_attribute("kedahttp.outcome", outcome)
                cold.set_status(self._error)
                cold.end()
