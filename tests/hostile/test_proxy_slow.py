"""Slow and idle clients against the real proxy: slow-header (slowloris) connections are cut when the head
is not complete in time however they trickle, slow bodies still arrive whole, a client that leaves
mid-body frees its upstream connection, and hundreds of idle sockets neither starve normal requests nor
outlive the keep-alive timeout. The proxy's timeouts are shortened on the running server (the CONTRACT's
10 s header limit is the same code path with a larger number)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from tests.harness.clients import Collector, send
from tests.harness.proxy import RunningProxy
from tests.harness.recorder import Recorder
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)

HEADER_TIMEOUT = 0.5
GET = b"GET /ok HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"


async def connect(port: int) -> tuple[asyncio.Transport, Collector]:
    transport, collector = await asyncio.get_running_loop().create_connection(Collector, "127.0.0.1", port)
    return transport, collector


@pytest.fixture
def short_header_timeout(proxy: RunningProxy) -> RunningProxy:
    proxy.proxy.server.header_timeout_seconds = HEADER_TIMEOUT
    return proxy


async def test_a_trickling_head_is_cut_at_the_header_timeout(short_header_timeout: RunningProxy,
                                                             recorder: Recorder) -> None:
    # One byte every 50 ms: the connection is never idle, but the head never completes in time.
    transport, collector = await connect(short_header_timeout.port)
    head = b"GET /slow HTTP/1.1\r\nHost: app.test\r\n" + b"X-Slow: " + b"s" * 10_000
    started = time.monotonic()
    for byte in head:
        if collector.lost.done():
            break
        transport.write(bytes((byte,)))
        await asyncio.sleep(0.05)
        assert time.monotonic() - started < 10, "a trickling head kept the connection open"
    assert collector.lost.done()
    assert time.monotonic() - started >= HEADER_TIMEOUT
    assert bytes(collector.data) == b""  # cut, not answered
    transport.close()
    assert recorder.requests == []


async def test_hundreds_of_slowloris_connections_do_not_starve_others(short_header_timeout: RunningProxy,
                                                                      recorder: Recorder) -> None:
    port = short_header_timeout.port
    slow = [await connect(port) for _ in range(200)]
    for transport, _ in slow:
        transport.write(b"GET /slow HTTP/1.1\r\nHost: app.test\r\nX-Slow: ")
    outs = await asyncio.gather(*(send(port, GET) for _ in range(20)))  # served meanwhile
    assert [o.statuses() for o in outs] == [[200]] * 20
    await until(lambda: all(c.lost.done() for _, c in slow), 10, "slow-header connections closed")
    for transport, _ in slow:
        transport.close()
    assert recorder.paths() == ["/ok"] * 20


async def test_a_slow_body_arrives_whole_while_others_are_served(proxy: RunningProxy, recorder: Recorder) -> None:
    body = bytes(range(256)) * 2
    head = b"POST /upload HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    pieces = [head] + [body[i:i + 32] for i in range(0, len(body), 32)]
    slow = asyncio.ensure_future(send(proxy.port, *pieces, pause=0.05, timeout=5))
    await asyncio.sleep(0.1)
    quick = await asyncio.gather(*(send(proxy.port, GET) for _ in range(10)))
    assert [o.statuses() for o in quick] == [[200]] * 10
    out = await slow
    assert out.statuses() == [200]
    upload = [r for r in recorder.requests if r.path == "/upload"]
    assert len(upload) == 1 and upload[0].message.body == body


async def leave_mid_body(proxy: RunningProxy, recorder: Recorder, *, reset: bool) -> None:
    """Sends a head and part of its body, then goes: with a reset, or with a plain close (FIN)."""
    recorder.stall_seconds = 60  # the upstream would wait: only the proxy closing its connection ends it
    transport, _ = await connect(proxy.port)
    transport.write(b"POST /gone HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000\r\n\r\n" + b"x" * 300)
    await until(lambda: recorder.connections >= 1, 5, "the head reached the upstream")
    await asyncio.sleep(0.1)
    if reset:
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.close()


async def test_a_client_reset_mid_body_frees_the_upstream(proxy: RunningProxy, recorder: Recorder) -> None:
    await leave_mid_body(proxy, recorder, reset=True)
    counters = proxy.counters()
    await until(lambda: counters.in_flight == 0, 5, "in-flight back to 0")
    await until(lambda: recorder.incomplete == 1, 5, "the upstream connection was closed")
    assert recorder.requests == []
    assert (await send(proxy.port, GET)).statuses() == [200]


async def test_a_client_closing_mid_body_frees_the_upstream(proxy: RunningProxy, recorder: Recorder) -> None:
    await leave_mid_body(proxy, recorder, reset=False)
    counters = proxy.counters()
    await until(lambda: counters.in_flight == 0, 3, "in-flight back to 0")
    await until(lambda: recorder.incomplete == 1, 3, "the upstream connection was closed")


async def test_five_hundred_idle_sockets_then_the_keep_alive_timeout_closes_them(proxy: RunningProxy,
                                                                                recorder: Recorder) -> None:
    port = proxy.port
    idle = [await connect(port) for _ in range(500)]
    server = proxy.proxy.server
    await until(lambda: len(server.connections) >= 500, 10, "500 connections accepted")
    outs = await asyncio.gather(*(send(port, GET) for _ in range(20)))
    assert [o.statuses() for o in outs] == [[200]] * 20
    assert not any(c.lost.done() for _, c in idle)
    server.keep_alive_timeout_seconds = 0.3
    await until(lambda: all(c.lost.done() for _, c in idle), 10, "idle connections closed")
    assert all(bytes(c.data) == b"" for _, c in idle)
    for transport, _ in idle:
        transport.close()
    await until(lambda: len(server.connections) == 0, 5, "the proxy forgot them")
    assert (await send(port, GET)).statuses() == [200]
