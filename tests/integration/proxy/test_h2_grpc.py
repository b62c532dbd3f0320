"""gRPC through the proxy: grpcio client -> kedahttp (h2c prior knowledge) -> grpcio server.

Every call kind, metadata and trailers, errors, deadlines, cancellation, two apps on one connection,
per-stream counting, and cold starts held and answered (or UNAVAILABLE / DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from kedahttp.proxy.sources import Backend
from tests.harness.bus_log import aggregated, messages_on
from tests.harness.grpc_echo import EchoApp, EchoClient, channel
from tests.harness.static_source import StaticSource
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)

HOST = "grpc.test"


def grpc_backend(key: str = "default/greeter", prefixes: tuple[str, ...] = ("/",), **kw: Any) -> Backend:
    return Backend(key, (HOST,), prefixes, protocol="h2c", **kw)


@pytest.fixture
async def app() -> AsyncIterator[EchoApp]:
    server = await EchoApp("a").start()
    yield server
    await server.stop()


@pytest.fixture(params=["full", "relay"])
def relay(request: Any) -> bool:
    """Tests run with the full stack and with the relay on (H2_RELAY: it takes the connections whose
    streams all go to one app with a ready endpoint, docs/http2.md; a cold app's go to the full stack)."""
    return bool(request.param == "relay")


@pytest.fixture
async def proxied(relay: bool, app: EchoApp, proxy_factory: Any, proxy_settings: Any) -> Any:
    return await proxy_factory(StaticSource([grpc_backend()], {"default/greeter": [app.endpoint]}),
                               proxy_settings(h2_relay=relay))


@pytest.fixture
async def client(proxied: Any) -> AsyncIterator[EchoClient]:
    c = EchoClient(channel(f"127.0.0.1:{proxied.port}", HOST))
    yield c
    await c.close()


async def test_unary_with_metadata_and_trailers(client: EchoClient, app: EchoApp) -> None:
    call = client.unary(b"hello", metadata=(("x-user", "ann"),))
    assert await call == b"a:hello"
    assert ("x-app", "a") in tuple(await call.initial_metadata())
    assert ("x-trailer", "t-a") in tuple(await call.trailing_metadata())
    assert await call.code() == grpc.StatusCode.OK
    method, metadata = app.calls[-1]
    assert method == "Unary" and metadata["x-user"] == "ann"
    assert metadata["x-forwarded-for"] == "127.0.0.1"


async def test_server_client_and_bidi_streaming(client: EchoClient) -> None:
    got = [m async for m in client.server_stream(b"50x1000")]
    assert len(got) == 50 and all(m == b"s" * 1000 for m in got)

    async def messages() -> AsyncIterator[bytes]:
        for i in range(40):
            yield b"m" * (i + 1)
    assert await client.client_stream(messages()) == b"40:820"

    bidi = client.bidi()
    for word in (b"one", b"two", b"three"):
        await bidi.write(word)
        assert await bidi.read() == word.upper()  # each answer before the next question: truly interleaved
    await bidi.done_writing()
    assert await bidi.read() == grpc.aio.EOF
    assert await bidi.code() == grpc.StatusCode.OK


async def test_not_found_reaches_the_client_as_not_found(client: EchoClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.fail(b"thing-7")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "no such thing: thing-7"


async def test_deadline_and_cancellation_reach_the_app(client: EchoClient, app: EchoApp, proxied: Any) -> None:
    t0 = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.slow(b"5", timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 3
    await until(app.cancelled.is_set, 5, "the app sees the call cancelled")
    app.cancelled.clear()
    call = client.slow(b"30")
    await until(lambda: proxied.counters("default/greeter").in_flight == 1, 5, "the call in flight")
    call.cancel()
    await until(app.cancelled.is_set, 5, "the cancel (RST_STREAM) passed on to the app")
    await until(lambda: proxied.counters("default/greeter").in_flight == 0, 5, "the stream counted done")


async def test_long_stream_counted_in_flight_for_its_whole_life(client: EchoClient, proxied: Any) -> None:
    bidi = client.bidi()
    await bidi.write(b"x")
    assert await bidi.read() == b"X"
    counters = proxied.counters("default/greeter")
    for _ in range(3):
        await asyncio.sleep(0.2)
        assert counters.in_flight == 1
    await bidi.done_writing()
    assert await bidi.read() == grpc.aio.EOF
    await until(lambda: counters.in_flight == 0, 5, "the stream done")
    assert counters.completed >= 1 and counters.by_class[2] >= 1


async def test_one_connection_carries_calls_for_two_apps(app: EchoApp, proxy_factory: Any) -> None:
    other = await EchoApp("b", service="other.Echo").start()
    try:
        source = StaticSource(
            [grpc_backend("default/a", ("/test.Echo",)), grpc_backend("default/b", ("/other.Echo",))],
            {"default/a": [app.endpoint], "default/b": [other.endpoint]})
        running = await proxy_factory(source)
        ch = channel(f"127.0.0.1:{running.port}", HOST)
        a, b = EchoClient(ch), EchoClient(ch, "other.Echo")
        results = await asyncio.gather(*(c.unary(b"%d" % i) for i in range(20) for c in (a, b)))
        assert sorted(results) == sorted([b"a:%d" % i for i in range(20)] + [b"b:%d" % i for i in range(20)])
        assert running.counters("default/a").completed == 20
        assert running.counters("default/b").completed == 20
        assert len(running.proxy.h2.connections) == 1
        await ch.close()
    finally:
        await other.stop()


async def test_unknown_host_is_unimplemented(proxied: Any) -> None:
    ch = channel(f"127.0.0.1:{proxied.port}", "nowhere.test")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await EchoClient(ch).unary(b"x")
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    await ch.close()


# -- cold starts ----------------------------------------------------------------------------------------

async def test_cold_app_call_is_held_and_answered_after_the_app_starts(proxy_factory: Any, proxy_settings: Any,
                                                                       relay: bool) -> None:
    source = StaticSource([grpc_backend()], {})
    running = await proxy_factory(source, proxy_settings(h2_relay=relay))
    ch = channel(f"127.0.0.1:{running.port}", HOST)
    call = asyncio.ensure_future(EchoClient(ch).unary(b"wake"))
    counters = running.counters("default/greeter")
    await until(lambda: counters.held == 1, 5, "the call held")
    await asyncio.sleep(0.3)
    assert not call.done()
    app = await EchoApp("late").start()
    try:
        running.proxy.routes.set_endpoints("default/greeter", [app.endpoint])
        assert await asyncio.wait_for(call, 5) == b"late:wake"
        assert counters.cold_starts == 1 and counters.held == 0
    finally:
        await ch.close()
        await app.stop()


async def test_held_call_timing_out_gets_unavailable(proxy_factory: Any, proxy_settings: Any, relay: bool) -> None:
    running = await proxy_factory(StaticSource([grpc_backend()], {}),
                                  proxy_settings(cold_start_timeout_seconds=0.5, h2_relay=relay))
    ch = channel(f"127.0.0.1:{running.port}", HOST)
    t0 = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await EchoClient(ch).unary(b"x")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "did not become ready" in (info.value.details() or "")
    assert 0.4 < time.monotonic() - t0 < 3
    assert running.counters("default/greeter").held_timeouts == 1
    await ch.close()


async def test_held_call_whose_deadline_passes_gets_deadline_exceeded(proxy_factory: Any, proxy_settings: Any,
                                                                      relay: bool) -> None:
    running = await proxy_factory(StaticSource([grpc_backend()], {}), proxy_settings(h2_relay=relay))  # 5 s
    ch = channel(f"127.0.0.1:{running.port}", HOST)
    t0 = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await EchoClient(ch).unary(b"x", timeout=0.6)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 2.5
    counters = running.counters("default/greeter")
    await until(lambda: counters.held == 0, 5, "the held call released by its deadline")
    await ch.close()


async def test_held_limit_answers_unavailable(proxy_factory: Any, proxy_settings: Any, relay: bool) -> None:
    running = await proxy_factory(StaticSource([grpc_backend()], {}),
                                  proxy_settings(max_held_requests=2, h2_relay=relay))
    ch = channel(f"127.0.0.1:{running.port}", HOST)
    client = EchoClient(ch)
    held = [asyncio.ensure_future(client.unary(b"%d" % i)) for i in range(2)]
    counters = running.counters("default/greeter")
    await until(lambda: counters.held == 2, 5, "two calls held")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.unary(b"third")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert counters.held_rejected == 1
    for call in held:
        call.cancel()
    await until(lambda: counters.held == 0, 5, "cancelled held calls leave the queue")
    await ch.close()


async def test_open_streams_reach_the_aggregator_as_concurrency(client: EchoClient, proxied: Any) -> None:
    calls = [client.bidi() for _ in range(12)]
    for call in calls:
        await call.write(b"x")
        assert await call.read() == b"X"
    await asyncio.sleep(0.4)  # a few report intervals (0.1 s)
    bus = proxied.proxy.settings.bus
    metrics = (await aggregated(bus)).metrics("default/greeter", time.time())
    assert metrics.in_flight == 12 and metrics.held == 0
    for call in calls:
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF
    await asyncio.sleep(0.4)
    messages = await messages_on(bus)
    metrics = (await aggregated(bus)).metrics("default/greeter", time.time())
    assert metrics.in_flight == 0
    reports = [m for m in messages if hasattr(m, "seq")]
    started = sum(b.started for r in reports for b in r.backends if b.backend == "default/greeter")
    completed = sum(b.completed for r in reports for b in r.backends if b.backend == "default/greeter")
    assert (started, completed) == (12, 12)
