"""Tracing of the cold path: a span per held request and per cold start, joined to the client's trace, and
the traceparent the app receives makes its own span the hold's child. Off by default, and then
opentelemetry is not even imported.

Spans are collected with the OpenTelemetry SDK's in-memory exporter; the proxy and the app run on real
sockets and the traceparent is read from what the app actually received.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from kedahttp.proxy.assembly import Proxy
from kedahttp.proxy.sources import Backend
from kedahttp.proxy.tracing import HoldTracer, with_traceparent
from tests.harness.inproc import proxy_settings, running_proxy, serve_app
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, list[str | None]]]:
    received: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        received.append(request.headers.get("traceparent"))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    async with serve_app(app) as endpoint:
        yield endpoint, received


@pytest.fixture
async def traced() -> AsyncIterator[tuple[Proxy, InMemorySpanExporter]]:
    backends = [Backend("shop/cart", ("cart.test",)), Backend("shop/slow", ("slow.test",), cold_start_timeout_seconds=0.3)]
    settings = proxy_settings(tracing="true")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with running_proxy(settings, backends) as proxy:
        assert isinstance(proxy.dispatcher.observer, HoldTracer)  # TRACING=true wires the tracer
        proxy.dispatcher.observer = HoldTracer(provider.get_tracer("test"))  # this test's provider, not the global
        yield proxy, exporter


async def held_request(proxy: Proxy, host: str, headers: dict[str, str]) -> asyncio.Task[int]:
    async def get() -> int:
        async with aiohttp.ClientSession() as client, client.get(
                f"http://127.0.0.1:{proxy.server.port}/", headers={"Host": host, **headers}) as r:
            await r.read()
            return r.status
    task = asyncio.ensure_future(get())
    key = "shop/cart" if host == "cart.test" else "shop/slow"
    await until(lambda: proxy.counters.backends[key].held, what="a held request")
    return task


async def test_a_held_request_joins_the_clients_trace_and_parents_the_apps_span(
        traced: tuple[Proxy, InMemorySpanExporter], upstream: tuple[str, list[str | None]]) -> None:
    proxy, exporter = traced
    endpoint, received = upstream
    task = await held_request(proxy, "cart.test", {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"})
    await asyncio.sleep(0.1)
    proxy.routes.set_endpoints("shop/cart", [endpoint])
    assert await task == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    hold, cold = spans["kedahttp.hold"], spans["kedahttp.cold_start"]
    for span in (hold, cold):
        assert f"{span.context.trace_id:032x}" == TRACE_ID
        assert span.parent is not None and f"{span.parent.span_id:016x}" == CLIENT_SPAN
        assert span.attributes["kedahttp.app"] == "shop/cart"
        assert span.end_time - span.start_time >= 0.1e9
    assert hold.attributes["kedahttp.outcome"] == "released" and cold.attributes["kedahttp.outcome"] == "ready"
    assert received == [f"00-{TRACE_ID}-{hold.context.span_id:016x}-01"]  # the app's parent is the hold


async def test_a_request_without_traceparent_gets_one_and_a_timeout_is_an_error(
        traced: tuple[Proxy, InMemorySpanExporter], upstream: tuple[str, list[str | None]]) -> None:
    proxy, exporter = traced
    endpoint, received = upstream
    task = await held_request(proxy, "cart.test", {})
    proxy.routes.set_endpoints("shop/cart", [endpoint])
    assert await task == 200
    [hold] = [s for s in exporter.get_finished_spans() if s.name == "kedahttp.hold"]
    assert hold.parent is None
    context = hold.context
    assert received == [f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"]
    exporter.clear()
    assert await (await held_request(proxy, "slow.test", {})) == 504
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for name in ("kedahttp.hold", "kedahttp.cold_start"):
        assert spans[name].attributes["kedahttp.outcome"] == "timeout"
        assert spans[name].status.status_code == StatusCode.ERROR


def test_the_forwarded_head_keeps_its_length_when_the_parent_changes() -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\nTraceParent: 00-" + TRACE_ID.encode() + b"-" + CLIENT_SPAN.encode() + b"-01\r\n\r\n"
    new = with_traceparent(head, f"00-{TRACE_ID}-1111111111111111-01")
    assert len(new) == len(head) and b"-1111111111111111-01\r\n\r\n" in new
    assert with_traceparent(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "00-x").endswith(b"\r\ntraceparent: 00-x\r\n\r\n")


def test_with_tracing_off_opentelemetry_is_never_imported() -> None:
    code = (
        "import sys\n"
        "from kedahttp.process import settings\n"
        "from kedahttp.proxy.assembly import build\n"
        "from kedahttp.proxy.file_source import FileSource\n"
        "s = settings.load({}, environ={'KEDAHTTP_BUS': 'memory://x', 'KEDAHTTP_ROUTES': '/x'})\n"
        "proxy = build(s, FileSource('/x'))\n"
        "assert proxy.dispatcher.observer is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
