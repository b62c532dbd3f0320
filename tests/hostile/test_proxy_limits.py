"""Request lines and sizes the proxy must refuse: invalid methods and versions (400, closed, nothing
forwarded), header blocks past 64 KiB however they arrive (431), very long URLs, and lawful but unusual
requests that must pass through unchanged."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness.clients import send
from tests.harness.proxy import RunningProxy
from tests.harness.recorder import Recorder

pytestmark = pytest.mark.timeout(60)

HOST = b"Host: app.test\r\n"
CLOSE = b"Connection: close\r\n"

BAD_REQUEST_LINES: dict[str, bytes] = {
    "HTTP/1.2": b"GET /a HTTP/1.2\r\n" + HOST + b"\r\n",
    "HTTP/3.1": b"GET /a HTTP/3.1\r\n" + HOST + b"\r\n",
    "HTTP/1.10": b"GET /a HTTP/1.10\r\n" + HOST + b"\r\n",
    "lower-case protocol": b"GET /a http/1.1\r\n" + HOST + b"\r\n",
    "lower-case method": b"get /a HTTP/1.1\r\n" + HOST + b"\r\n",
    "mixed-case method": b"Get /a HTTP/1.1\r\n" + HOST + b"\r\n",
    "unknown method": b"FOO /a HTTP/1.1\r\n" + HOST + b"\r\n",
    "method with a slash": b"GE/T /a HTTP/1.1\r\n" + HOST + b"\r\n",
    "empty method": b" /a HTTP/1.1\r\n" + HOST + b"\r\n",
    "tabs for spaces": b"GET\t/a\tHTTP/1.1\r\n" + HOST + b"\r\n",
    "space in the target": b"GET /a b HTTP/1.1\r\n" + HOST + b"\r\n",
    "control byte in the target": b"GET /a\x01b HTTP/1.1\r\n" + HOST + b"\r\n",
    "NUL in the target": b"GET /a\x00b HTTP/1.1\r\n" + HOST + b"\r\n",
    "raw UTF-8 in the target": b"GET /\xc3\xa9 HTTP/1.1\r\n" + HOST + b"\r\n",
    "no target": b"GET HTTP/1.1\r\n" + HOST + b"\r\n",
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS ClientHello
    "authority-form with GET": b"GET app.test:80 HTTP/1.1\r\n" + HOST + b"\r\n",
    "scheme other than http": b"GET ftp://app.test/ HTTP/1.1\r\n" + HOST + b"\r\n",
}


@pytest.mark.parametrize("case", list(BAD_REQUEST_LINES))
async def test_invalid_request_lines_are_400_and_closed(proxy: RunningProxy, recorder: Recorder, case: str) -> None:
    out = await send(proxy.port, BAD_REQUEST_LINES[case] + b"GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
    assert out.closed
    statuses = out.statuses()
    assert statuses in ([400], [501]) or (statuses == [] and out.data == b""), out.data[:200]
    await asyncio.sleep(0.05)
    assert recorder.requests == []


@pytest.mark.parametrize("line", [b"GET /a HTTP/2.0", b"GET /a HTTP/0.9", b"GET /a", b"GET /a?HTTP/1.1"])
@pytest.mark.parametrize("connection", [b"", b"Connection: keep-alive\r\n", b"Connection: close\r\n"])
async def test_versions_other_than_1_0_and_1_1_are_refused(proxy: RunningProxy, recorder: Recorder,
                                                           line: bytes, connection: bytes) -> None:
    # with and without a Connection header: the version is read only where keep-alive does not already
    # imply HTTP/1.1 (server.py), so both ways must refuse
    out = await send(proxy.port, line + b"\r\n" + HOST + connection + b"\r\n")
    assert out.statuses() in ([400], [505])
    assert recorder.requests == []


@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE",
                                    b"PROPFIND", b"MKCOL", b"REPORT", b"PURGE"])
async def test_known_methods_pass_unchanged(proxy: RunningProxy, recorder: Recorder, method: bytes) -> None:
    out = await send(proxy.port, method + b" /m?q=1 HTTP/1.1\r\n" + HOST + CLOSE + b"\r\n")
    assert out.closed
    assert [r.status for r in out.responses(heads=method == b"HEAD")] == [200]
    assert [(r.message.method, r.path) for r in recorder.requests] == [(method, "/m?q=1")]


async def test_http_1_0_is_served_as_http_1_0(proxy: RunningProxy, recorder: Recorder) -> None:
    out = await send(proxy.port, b"GET /old HTTP/1.0\r\n" + HOST + b"\r\n")
    assert out.closed and out.statuses() == [200]
    assert recorder.paths() == ["/old"]
    out = await send(proxy.port, b"GET /old HTTP/1.0\r\n\r\n")  # no Host in 1.0: no route
    assert out.closed and out.statuses() == [404]
    assert recorder.paths() == ["/old"]
    # asked to keep alive, a 1.0 request is still answered as 1.0 (it says so: Connection: keep-alive)
    out = await send(proxy.port, b"GET /old HTTP/1.0\r\n" + HOST + b"Connection: keep-alive\r\n\r\n", timeout=0.5)
    assert out.statuses() == [200] and b"connection: keep-alive" in out.data.lower()


# -- sizes --------------------------------------------------------------------------------------------------


async def test_header_block_past_64k_in_small_writes_is_431(proxy: RunningProxy, recorder: Recorder) -> None:
    pieces = [b"GET /a HTTP/1.1\r\n" + HOST] + [b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(80)]
    out = await send(proxy.port, *pieces, pause=0.002)
    assert out.closed
    assert out.statuses() == [431]
    assert recorder.requests == []


async def test_one_endless_header_value_is_cut_at_the_limit(proxy: RunningProxy, recorder: Recorder) -> None:
    # 4 MiB of one header value that never ends: refused without reading it all, then closed.
    pieces = [b"GET /a HTTP/1.1\r\n" + HOST + b"X-Endless: "] + [b"v" * 65536] * 64
    out = await send(proxy.port, *pieces, pause=0.001)
    assert out.closed
    assert out.statuses() == [431]
    assert recorder.requests == []
    out = await send(proxy.port, b"GET /after HTTP/1.1\r\n" + HOST + CLOSE + b"\r\n")
    assert out.statuses() == [200]


async def test_many_small_headers_under_the_limit_all_pass(proxy: RunningProxy, recorder: Recorder) -> None:
    headers = b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(3000))  # ~36 KiB in 3,000 fields
    out = await send(proxy.port, b"GET /many HTTP/1.1\r\n" + HOST + CLOSE + headers + b"\r\n")
    assert out.statuses() == [200]
    got = recorder.requests[0].message
    assert len([n for n, _ in got.headers if n.startswith(b"X-H")]) == 3000


async def test_very_long_url_is_431_and_a_long_one_passes_intact(proxy: RunningProxy, recorder: Recorder) -> None:
    huge = b"/" + b"a" * 70_000
    out = await send(proxy.port, b"GET " + huge + b" HTTP/1.1\r\n" + HOST + b"\r\n")
    assert out.closed and out.statuses() in ([414], [431])
    long = b"/p?" + b"&".join(b"k%d=%s" % (i, b"v" * 50) for i in range(600))  # ~34 KiB
    out = await send(proxy.port, b"GET " + long + b" HTTP/1.1\r\n" + HOST + CLOSE + b"\r\n")
    assert out.statuses() == [200]
    assert recorder.paths() == [long.decode()]


async def test_a_large_body_does_not_count_against_the_next_head(proxy: RunningProxy, recorder: Recorder) -> None:
    body = b"x" * 100_000
    first = b"POST /a HTTP/1.1\r\n" + HOST + b"Content-Length: %d\r\n\r\n" % len(body) + body
    second = b"GET /b HTTP/1.1\r\n" + HOST
    out = await send(proxy.port, first + second, CLOSE + b"\r\n", pause=0.3)
    assert out.statuses() == [200, 200]
    assert recorder.paths() == ["/a", "/b"]
