"""Head rewriting: hop-by-hop headers, forwarding headers, framing, limits, our own replies."""

from __future__ import annotations

import pytest

from kedahttp.proxy import http1
from kedahttp.proxy.http1 import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, BadRequest


class Req:
    def __init__(self, result: tuple[bytes, bytes, bytes, int, bool, bool]) -> None:
        self.head, self.host, self.path, self.body, self.expect_continue, self.upgrade = result


class Resp:
    def __init__(self, result: tuple[bytes, int, bool, bool]) -> None:
        self.head, self.body, self.close, self.upstream_until_close = result


def headers_of(head: bytes) -> list[tuple[bytes, bytes]]:
    lines = head.split(b"\r\n")[1:]
    return [(n, v.strip()) for n, _, v in (line.partition(b":") for line in lines if line)]


def test_request_keeps_end_to_end_headers_and_drops_hop_by_hop() -> None:
    req = Req(http1.rewrite_request(
        b"GET", b"/p?q=1",
        [(b"Host", b"app.test"), (b"Connection", b"keep-alive, X-Hop"), (b"X-Hop", b"1"), (b"Keep-Alive", b"5"),
         (b"TE", b"trailers"), (b"Trailer", b"X"), (b"Proxy-Authorization", b"secret"), (b"Accept", b"*/*"),
         (b"X-Forwarded-For", b"1.1.1.1"), (b"X-Forwarded-For", b"2.2.2.2"), (b"X-Forwarded-Proto", b"https"),
         (b"X-Forwarded-Host", b"evil")],
        b"10.0.0.9", False,
    ))
    assert req.head.startswith(b"GET /p?q=1 HTTP/1.1\r\n") and req.head.endswith(b"\r\n\r\n")
    assert headers_of(req.head) == [
        (b"Host", b"app.test"), (b"Accept", b"*/*"), (b"X-Forwarded-For", b"10.0.0.9"),
        (b"X-Forwarded-Proto", b"http"), (b"X-Forwarded-Host", b"app.test"),
    ]
    assert (req.host, req.path, req.body, req.expect_continue, req.upgrade) == (b"app.test", b"/p?q=1", NO_BODY,
                                                                                False, False)


def test_request_framing_and_expect() -> None:
    req = Req(http1.rewrite_request(b"POST", b"/", [(b"Host", b"a"), (b"Transfer-Encoding", b"chunked"),
                                                (b"Expect", b"100-continue")], b"ip", False))
    assert req.body == CHUNKED and req.expect_continue
    assert b"Transfer-Encoding: chunked\r\n" in req.head and b"Expect" not in req.head
    req = Req(http1.rewrite_request(b"PUT", b"/", [(b"Host", b"a"), (b"content-length", b"5")], b"ip", False))
    assert req.body == LENGTH and b"content-length: 5\r\n" in req.head


def test_upgrade_request_keeps_upgrade_headers() -> None:
    req = Req(http1.rewrite_request(b"GET", b"/ws", [(b"Host", b"a"), (b"Connection", b"Upgrade"),
                                                 (b"Upgrade", b"websocket")], b"ip", True))
    assert req.upgrade
    assert b"Connection: upgrade\r\nUpgrade: websocket\r\n" in req.head
    plain = Req(http1.rewrite_request(b"GET", b"/", [(b"Host", b"a"), (b"Upgrade", b"h2c")], b"ip", False))
    assert b"Upgrade" not in plain.head and not plain.upgrade


def test_absolute_form_uses_the_authority_as_host() -> None:
    req = Req(http1.rewrite_request(b"GET", b"http://App.Test:8080/x?y", [(b"Host", b"other")], b"ip", False))
    assert (req.host, req.path) == (b"App.Test:8080", b"/x?y")
    assert req.head.startswith(b"GET /x?y HTTP/1.1\r\nHost: App.Test:8080\r\n")
    assert b"other" not in req.head
    assert http1.rewrite_request(b"GET", b"http://a.test", [], b"ip", False)[2] == b"/"
    for bad in (b"http://user@a.test/", b"a.test:80", b"http:///x"):
        with pytest.raises(BadRequest):
            http1.rewrite_request(b"GET", bad, [(b"Host", b"a")], b"ip", False)


def test_request_head_limit() -> None:
    with pytest.raises(BadRequest) as info:
        http1.rewrite_request(b"GET", b"/", [(b"Host", b"a"), (b"X", b"v" * 70_000)], b"ip", False)
    assert info.value.status == 431
    with pytest.raises(BadRequest) as info:
        http1.rewrite_request(b"GET", b"/", [(b"Host", b"a"), (b"Host", b"b")], b"ip", False)
    assert info.value.status == 400


NGINX_HEAD = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
              b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Thing: x\r\n")


def test_response_drops_hop_by_hop_and_passes_content_length() -> None:
    rh = Resp(http1.rewrite_response(200, NGINX_HEAD, bodiless=False, client_http10=False, keep_alive=True, cold=False))
    assert rh.head == (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n")
    assert (rh.body, rh.close, rh.upstream_until_close) == (LENGTH, False, False)


def test_response_reframes_and_marks_cold_starts() -> None:
    head = b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close, X-Private\r\nX-Private: 1\r\nA: b\r\n"
    rh = Resp(http1.rewrite_response(200, head, bodiless=False, client_http10=False, keep_alive=True, cold=True))
    assert rh.head == b"HTTP/1.1 200 OK\r\nA: b\r\nX-KEDAHTTP-Cold-Start: true\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert rh.body == CHUNKED and not rh.upstream_until_close
    # no framing upstream: chunked to a 1.1 client, until close to a 1.0 client
    bare = b"HTTP/1.1 200 OK\r\nA: b\r\n"
    rh = Resp(http1.rewrite_response(200, bare, bodiless=False, client_http10=False, keep_alive=True, cold=False))
    assert rh.body == CHUNKED and rh.upstream_until_close
    rh = Resp(http1.rewrite_response(200, bare, bodiless=False, client_http10=True, keep_alive=True, cold=False))
    assert rh.body == UNTIL_CLOSE and rh.close and rh.head.endswith(b"Connection: close\r\n\r\n")
    # both headers upstream: chunked wins and Content-Length never reaches the client
    both = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n"
    rh = Resp(http1.rewrite_response(200, both, bodiless=False, client_http10=False, keep_alive=True, cold=False))
    assert rh.body == CHUNKED and b"Content-Length" not in rh.head


def test_bodiless_and_upgrade_responses() -> None:
    rh = Resp(http1.rewrite_response(304, b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n", bodiless=True,
                                client_http10=False, keep_alive=False, cold=False))
    assert rh.body == NO_BODY and rh.head.endswith(b"ETag: x\r\nConnection: close\r\n\r\n")
    rh = Resp(http1.rewrite_response(101, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                b"Connection: Upgrade\r\nSec-WebSocket-Accept: k\r\n", bodiless=False,
                                client_http10=False, keep_alive=False, cold=False))
    assert rh.head == (b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: k\r\n"
                       b"Connection: upgrade\r\nUpgrade: websocket\r\n\r\n")


def test_error_response() -> None:
    out = http1.error_response(503, b"busy\n", close=False, retry_after=5)
    assert out == (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Length: 5\r\nCache-Control: no-store\r\nRetry-After: 5\r\n\r\nbusy\n")
    assert http1.error_response(404, b"x", close=True, head_only=True).endswith(b"Connection: close\r\n\r\n")
