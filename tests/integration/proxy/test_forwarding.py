"""The data path against a real upstream: headers, framing, keep-alive, pipelining, 1xx, bodiless replies."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.harness.clients import curl, headers_seen, raw_exchange, read_response
from tests.harness.proxy import RunningProxy, app_backend
from tests.harness.static_source import StaticSource
from tests.harness.upstreams import Upstream

pytestmark = pytest.mark.timeout(60)


async def test_get_preserves_host_sets_forwarded_headers_and_drops_hop_by_hop(proxied: RunningProxy) -> None:
    code, out, err = await curl(
        "-H", "Host: app.test:8080", "-H", "Connection: keep-alive, X-Secret-Hop",
        "-H", "X-Secret-Hop: 1", "-H", "Keep-Alive: timeout=5", "-H", "TE: trailers",
        "-H", "Proxy-Authorization: Basic Zm9v", "-H", "X-Forwarded-For: 10.0.0.1",
        "-H", "X-Forwarded-Proto: https", "-H", "X-Kept: yes",
        f"{proxied.url}/headers?q=1",
    )
    assert code == 0, err
    seen = headers_seen(out)
    assert json.loads(out)["path"] == "/headers?q=1"
    assert seen["host"] == ["app.test:8080"]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]  # an untrusted client: replaced, not appended to
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == ["app.test:8080"]
    assert seen["x-kept"] == ["yes"]
    for hop in ("x-secret-hop", "keep-alive", "te", "proxy-authorization"):
        assert hop not in seen
    assert seen.get("connection", ["keep-alive"]) != ["keep-alive, X-Secret-Hop"]


async def test_no_route_is_404_with_own_body(proxied: RunningProxy) -> None:
    code, out, _ = await curl("-i", "-H", "Host: other.test", f"{proxied.url}/")
    assert code == 0
    assert out.startswith("HTTP/1.1 404")
    assert "kedahttp: no backend" in out
    assert "default/app" not in proxied.proxy.counters.backends or proxied.counters().started == 0


async def test_keep_alive_and_pipelined_requests_answered_in_order(proxied: RunningProxy,
                                                                   upstream: Upstream) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    # the first answer is the slowest: order must still hold
    batch = b"".join(
        b"GET /slow?s=%s&id=r%d HTTP/1.1\r\nHost: app.test\r\n\r\n" % (delay, i)
        for i, delay in enumerate((b"0.3", b"0", b"0.1"))
    )
    writer.write(batch)
    bodies = [(await read_response(reader))[2] for _ in range(3)]
    assert bodies == [b"r0", b"r1", b"r2"]
    # the same connection keeps working afterwards
    writer.write(b"GET /slow?id=again HTTP/1.1\r\nHost: app.test\r\n\r\n")
    assert (await read_response(reader))[2] == b"again"
    writer.close()
    counters = proxied.counters()
    assert counters.started == counters.completed == 4
    assert counters.in_flight == 0


async def test_chunked_upload_and_chunked_download(proxied: RunningProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n1;ext=1\r\n \r\n")
    await asyncio.sleep(0.05)
    writer.write(b"5\r\nworld\r\n0\r\n\r\n")
    status, headers, body = await read_response(reader)
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"hello world"
    writer.close()


async def test_content_length_upload_reaches_upstream_whole(proxied: RunningProxy) -> None:
    payload = b"a" * 300_000
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    writer.write(b"PUT /sink HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
    status, _, body = await read_response(reader)
    assert (status, body) == (200, b"300000")
    writer.close()


async def test_expect_100_continue(proxied: RunningProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    writer.write(b"POST /sink HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    writer.write(b"data")
    status, _, body = await read_response(reader)
    assert (status, body) == (200, b"4")
    writer.close()
    code, out, err = await curl("-H", "Host: app.test", "-H", "Expect: 100-continue",
                                "--data-binary", "x" * 5000, f"{proxied.url}/sink")
    assert (code, out) == (0, "5000"), err


async def test_head_204_304_have_no_body_and_keep_the_connection(proxied: RunningProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    writer.write(b"HEAD /big?n=5000 HTTP/1.1\r\nHost: app.test\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 200 " in head and b"Content-Length: 5000" in head
    for code in (204, 304):
        writer.write(b"GET /status/%d HTTP/1.1\r\nHost: app.test\r\n\r\n" % code)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d" % code)
    writer.write(b"GET /big?n=10 HTTP/1.1\r\nHost: app.test\r\n\r\n")
    status, _, body = await read_response(reader)
    assert (status, body) == (200, b"x" * 10)
    writer.close()


async def test_http10_client_gets_close_delimited_or_length_framed(proxied: RunningProxy) -> None:
    out = await raw_exchange(proxied.port, b"GET /echo HTTP/1.0\r\nHost: app.test\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")
    assert b"chunked" not in out.lower()
    assert b"connection: close" in out.lower()
    out = await raw_exchange(proxied.port, b"GET /big?n=3 HTTP/1.0\r\nHost: app.test\r\n\r\n")
    assert out.endswith(b"\r\n\r\nxxx")


async def test_absolute_form_routes_by_its_authority_only_when_it_is_a_route(proxied: RunningProxy) -> None:
    out = await raw_exchange(proxied.port, b"GET http://app.test/headers HTTP/1.1\r\nHost: evil.example\r\n"
                                           b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")
    body = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert ["Host", "app.test"] in body["headers"] and body["path"] == "/headers"
    out = await raw_exchange(proxied.port, b"GET http://evil.example/ HTTP/1.1\r\nHost: app.test\r\n"
                                           b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 404")


async def test_routing_by_wildcard_host_and_longest_prefix(upstream: Upstream, proxy_factory: object) -> None:
    other = await Upstream().start()
    try:
        source = StaticSource(
            [app_backend(hosts=("*.apps.test",)),
             app_backend(key="default/api", hosts=("*.apps.test",), path_prefixes=("/api",))],
            {"default/app": [upstream.endpoint], "default/api": [other.endpoint]},
        )
        running: RunningProxy = await proxy_factory(source)  # type: ignore[operator]
        for path, expected in (("/api/x", other), ("/api", other), ("/apix", upstream), ("/", upstream)):
            code, _, err = await curl("-H", "Host: a.b.apps.test", f"{running.url}{path}")
            assert code == 0, err
            assert expected.requests and expected.requests[-1]["path"] == path
        code, out, _ = await curl("-i", "-H", "Host: apps.test", f"{running.url}/")
        assert out.startswith("HTTP/1.1 404")
    finally:
        await other.stop()


async def test_load_balances_over_endpoints(upstream: Upstream, proxy_factory: object) -> None:
    other = await Upstream().start()
    try:
        running: RunningProxy = await proxy_factory(  # type: ignore[operator]
            StaticSource([app_backend()], {"default/app": [upstream.endpoint, other.endpoint]}))
        for _ in range(6):
            code, _, _ = await curl("-H", "Host: app.test", f"{running.url}/")
            assert code == 0
        assert len(upstream.requests) == 3 and len(other.requests) == 3
    finally:
        await other.stop()


async def raw_upstream(reply: bytes, *, close_after: bool) -> tuple[asyncio.Server, str]:
    """An upstream that answers every request with ``reply`` as raw bytes (then maybe closes)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(reply)
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_close_delimited_upstream_body_is_rechunked_and_client_kept_alive(proxy_factory: object) -> None:
    server, endpoint = await raw_upstream(b"HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nuntil the end", close_after=True)
    try:
        running: RunningProxy = await proxy_factory(  # type: ignore[operator]
            StaticSource([app_backend()], {"default/app": [endpoint]}))
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        for _ in range(2):  # the client connection survives the upstream's close
            writer.write(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
            status, headers, body = await read_response(reader)
            assert (status, body) == (200, b"until the end")
            assert headers["transfer-encoding"] == "chunked" and headers["x-a"] == "1"
        writer.close()
    finally:
        server.close()


async def test_truncated_upstream_body_cuts_the_client_connection(proxy_factory: object) -> None:
    server, endpoint = await raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", close_after=True)
    try:
        running: RunningProxy = await proxy_factory(  # type: ignore[operator]
            StaticSource([app_backend()], {"default/app": [endpoint]}))
        out = await raw_exchange(running.port, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"only this")  # cut, never padded
        assert running.counters().in_flight == 0 and running.counters().completed == 1
    finally:
        server.close()


async def test_garbage_from_upstream_is_502(proxy_factory: object) -> None:
    server, endpoint = await raw_upstream(b"SSH-2.0-OpenSSH\r\n\r\n", close_after=True)
    try:
        running: RunningProxy = await proxy_factory(  # type: ignore[operator]
            StaticSource([app_backend()], {"default/app": [endpoint]}))
        out = await raw_exchange(running.port, b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 502 ")
        assert running.counters().upstream_errors == 1
    finally:
        server.close()


async def test_interim_103_is_forwarded_and_connection_close_is_honoured(proxy_factory: object) -> None:
    server, endpoint = await raw_upstream(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close_after=False)
    try:
        running: RunningProxy = await proxy_factory(  # type: ignore[operator]
            StaticSource([app_backend()], {"default/app": [endpoint]}))
        out = await raw_exchange(running.port, b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n")
        assert b"Connection: close\r\n" in out and out.endswith(b"\r\n\r\nok")  # read until the proxy closed
    finally:
        server.close()
