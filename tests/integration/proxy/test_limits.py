"""Malformed and hostile requests: smuggling vectors, oversized heads, slow headers, open-proxy attempts."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness.clients import raw_exchange
from tests.harness.proxy import RunningProxy
from tests.harness.upstreams import Upstream

pytestmark = pytest.mark.timeout(60)

BAD_REQUESTS = {
    "content-length and transfer-encoding": b"POST /sink HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n"
                                            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "differing duplicate content-length": b"POST /sink HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n"
                                          b"Content-Length: 4\r\n\r\nabcd",
    "bad chunk size": b"POST /sink HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Folded: a\r\n b\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : app.test\r\n\r\n",
    "bad request line": b"GET / HTTP/9.9 extra\r\nHost: app.test\r\n\r\n",
    "te not chunked": b"POST /sink HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    "missing host": b"GET / HTTP/1.1\r\n\r\n",
    "two hosts": b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n",
    "authority-form target": b"GET app.test:80 HTTP/1.1\r\nHost: app.test\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
async def test_malformed_request_is_400_and_closed(proxied: RunningProxy, upstream: Upstream, case: str) -> None:
    out = await raw_exchange(proxied.port, BAD_REQUESTS[case])  # reads until the proxy closes
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    assert b"connection: close" in out.lower()
    assert upstream.requests == []


async def test_smuggled_request_after_a_valid_one_never_reaches_upstream(proxied: RunningProxy,
                                                                         upstream: Upstream) -> None:
    data = (b"GET /headers HTTP/1.1\r\nHost: app.test\r\n\r\n"
            b"POST /sink HTTP/1.1\r\nHost: app.test\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: app.test\r\n\r\n")
    out = await raw_exchange(proxied.port, data)
    assert out.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 400 " in out
    assert [r["path"] for r in upstream.requests] == ["/headers"]


async def test_header_block_over_64k_is_431(proxied: RunningProxy, upstream: Upstream) -> None:
    big = b"X-Big: " + b"a" * 70_000 + b"\r\n"
    out = await raw_exchange(proxied.port, b"GET / HTTP/1.1\r\nHost: app.test\r\n" + big + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1100) for i in range(70))  # ~77 KiB in many headers
    out = await raw_exchange(proxied.port, b"GET / HTTP/1.1\r\nHost: app.test\r\n" + many + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    ok = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(50))  # ~50 KiB: allowed
    out = await raw_exchange(proxied.port, b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n" + ok + b"\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")
    assert len(upstream.requests) == 1


async def test_connect_is_refused_never_tunnelled(proxied: RunningProxy, upstream: Upstream) -> None:
    out = await raw_exchange(proxied.port, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: app.test\r\n\r\n" % upstream.port)
    assert out.startswith(b"HTTP/1.1 405 ")
    assert upstream.requests == []


async def test_slow_header_client_is_disconnected(proxied: RunningProxy) -> None:
    server = proxied.proxy.server
    server.header_timeout_seconds = 0.3
    server.sweep_interval_seconds = 0.1
    await asyncio.sleep(0.15)  # let the sweep pick up the new interval
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: ")
    started = asyncio.get_running_loop().time()
    async with asyncio.timeout(5):
        data = await reader.read(-1)  # EOF once the proxy gives up
    assert data == b""
    assert asyncio.get_running_loop().time() - started >= 0.3
    writer.close()
    # a client that completes its head in time is served
    out = await raw_exchange(proxied.port, b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")
