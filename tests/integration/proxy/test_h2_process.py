"""`kedahttp proxy` as a process with an h2c app from its routes file: 100 MB each way through a gRPC
stream in bounded proxy memory, and SIGTERM's GOAWAY letting an open stream finish; and a slow HTTP/2
reader of an HTTP/1.1 app, also in bounded memory."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, StreamEnded, StreamReset

from tests.harness.grpc_echo import EchoApp, EchoClient, channel
from tests.harness.proxy_process import ProxyProcess

pytestmark = pytest.mark.timeout(120)

MB = 1024 * 1024


def greeter_routes(endpoint: str) -> str:
    return f"""
backends:
  - name: greeter
    hosts: ["grpc.test"]
    upstream: "http://{endpoint}"
    protocol: h2c
"""


@pytest.fixture
async def app_and_proxy(tmp_path: Path) -> AsyncIterator[tuple[EchoApp, ProxyProcess]]:
    app = await EchoApp("big").start()
    proxy = await asyncio.to_thread(ProxyProcess, tmp_path, greeter_routes(app.endpoint),
                                  KEDAHTTP_SHUTDOWN_DELAY_SECONDS="0")
    yield app, proxy
    proxy.stop()
    await app.stop()


async def test_100mb_each_way_through_a_grpc_stream_in_bounded_memory(
        app_and_proxy: tuple[EchoApp, ProxyProcess]) -> None:
    _, proxy = app_and_proxy
    ch = channel(f"127.0.0.1:{proxy.port}", "grpc.test")
    client = EchoClient(ch)
    assert await client.unary(b"warm") == b"big:warm"
    baseline = proxy.peak_rss_mb()
    block = 64 * 1024
    received = 0
    async for message in client.server_stream(b"%dx%d" % (100 * MB // block, block)):
        if not received:
            await asyncio.sleep(1.5)  # a slow reader: the app must be slowed down, not buffered for
        received += len(message)
    assert received == 100 * MB

    async def upload() -> AsyncIterator[bytes]:
        data = b"u" * block
        for _ in range(100 * MB // block):
            yield data
    assert await client.client_stream(upload()) == b"%d:%d" % (100 * MB // block, 100 * MB)
    grown = proxy.peak_rss_mb() - baseline
    assert grown < 40, f"proxy peak RSS grew by {grown:.0f} MB while streaming 100 MB each way"
    await ch.close()


async def test_sigterm_sends_goaway_and_an_open_stream_finishes(
        app_and_proxy: tuple[EchoApp, ProxyProcess]) -> None:
    _, proxy = app_and_proxy
    ch = channel(f"127.0.0.1:{proxy.port}", "grpc.test")
    client = EchoClient(ch)
    bidi = client.bidi()
    await bidi.write(b"before")
    assert await bidi.read() == b"BEFORE"
    proxy.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    await bidi.write(b"during")  # the stream taken before the GOAWAY goes on
    assert await bidi.read() == b"DURING"
    await bidi.done_writing()
    assert await bidi.read() == grpc.aio.EOF
    assert await bidi.code() == grpc.StatusCode.OK
    assert await asyncio.to_thread(proxy.proc.wait, 10) == 0
    await ch.close()


async def test_slow_http2_reader_of_an_http1_app_in_bounded_memory(tmp_path: Path, upstream: Any) -> None:
    proxy = await asyncio.to_thread(ProxyProcess, tmp_path, f"""
backends:
  - name: old
    hosts: ["old.test"]
    upstream: "http://{upstream.endpoint}"
""")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"old.test"),
                              (b":path", b"/big?n=%d" % (100 * MB))], end_stream=True)
        writer.write(conn.data_to_send())
        baseline = proxy.peak_rss_mb()
        received = 0
        paused = False
        while True:
            data = await asyncio.wait_for(reader.read(65536), 10)
            assert data, "closed early"
            events = conn.receive_data(data)
            for event in events:
                assert not isinstance(event, StreamReset), f"reset after {received} bytes"
                if isinstance(event, DataReceived):
                    received += len(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
            writer.write(conn.data_to_send())
            if received and not paused:
                paused = True
                await asyncio.sleep(1.5)  # a slow reader: the app must wait, not be buffered for
            if any(isinstance(e, StreamEnded) for e in events):
                break
        assert received == 100 * MB
        grown = proxy.peak_rss_mb() - baseline
        assert grown < 40, f"proxy peak RSS grew by {grown:.0f} MB for a slow HTTP/2 reader"
        writer.close()
    finally:
        proxy.stop()
