"""CONTRACT §6: a request head not complete within the header timeout closes the connection.

The clock starts at the first byte of a request, even when that byte is not a whole method yet ("GE"),
and also for a request that begins on a kept-alive connection after an answered one; the keep-alive
timeout (75 s) must never be what ends such a connection.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.harness.proxy import RunningProxy
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(20)

HEADER_TIMEOUT = 1.0


@pytest.fixture
async def short_timeouts(proxied: RunningProxy) -> RunningProxy:
    proxied.proxy.server.set_timeouts(header_timeout_seconds=HEADER_TIMEOUT, sweep_interval_seconds=0.1)
    return proxied


async def closed_after(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """Everything the proxy sends until it closes, and how long that took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(10):  # far below the 75 s keep-alive timeout
        data = await reader.read(-1)
    return data, loop.time() - started


@pytest.mark.parametrize("first_bytes", [b"GE", b"GET /pa"])
async def test_a_partial_request_line_is_cut_at_the_header_timeout(short_timeouts: RunningProxy,
                                                                   first_bytes: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", short_timeouts.port)
    writer.write(first_bytes)
    data, waited = await closed_after(reader)
    assert data == b""
    assert waited >= HEADER_TIMEOUT
    writer.close()


async def test_a_partial_request_after_an_answered_one_is_cut_at_the_header_timeout(
        short_timeouts: RunningProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", short_timeouts.port)
    writer.write(b"GET /headers HTTP/1.1\r\nHost: app.test\r\n\r\nGE")  # the second request stalls
    data, waited = await closed_after(reader)
    assert data.startswith(b"HTTP/1.1 200 ") and data.count(b"HTTP/1.1 ") == 1
    assert waited >= HEADER_TIMEOUT
    writer.close()


async def test_an_idle_keep_alive_connection_is_not_cut_at_the_header_timeout(
        short_timeouts: RunningProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", short_timeouts.port)
    writer.write(b"GET /headers HTTP/1.1\r\nHost: app.test\r\n\r\n")
    first = await reader.readuntil(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    await asyncio.sleep(HEADER_TIMEOUT * 1.5)  # idle, no byte of a next request: not a slow head
    writer.write(b"GET /headers HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(-1), 5)
    assert data.count(b"HTTP/1.1 200 ") == 1
    writer.close()


async def test_an_idle_connection_gives_back_its_head_buffer(short_timeouts: RunningProxy) -> None:
    # The sweep trims the request reader of a connection idle between requests (issue 19): the last head's
    # buffer is freed, and the connection serves its next request all the same.
    reader, writer = await asyncio.open_connection("127.0.0.1", short_timeouts.port)
    writer.write(b"GET /headers HTTP/1.1\r\nHost: app.test\r\nAccept: */*\r\n\r\n")
    first = await reader.readuntil(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    (conn,) = short_timeouts.proxy.server.connections
    await until(lambda: conn.parser.headers() == [], timeout=5, what="the idle connection's reader trimmed")
    writer.write(b"GET /headers HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(-1), 5)
    assert data.count(b"HTTP/1.1 200 ") == 1
    writer.close()
