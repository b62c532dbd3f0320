"""The C request reader (_heads.RequestReader, our llhttp binding) must read every request exactly as the
plain-Python one (reader.RequestReader, httptools) does.

Hypothesis writes streams of requests (valid ones with every header the rewriting treats specially, bodies
by length and chunked with trailers, and malformed pieces: bad versions, CL+TE, obs-fold, bare LF, NUL,
the HTTP/2 preface) and cuts each stream into reads at arbitrary points. Both readers get the same reads;
everything the server sees must be equal: the callbacks in order, each head's method, keep-alive,
version, target, headers and the request as the server takes it (or its refusal), each body piece, the size of an
unfinished head, and the error that stops the parse (class, message, the exception that caused it, the
offset of the bytes after an upgrade).
"""

from __future__ import annotations

from typing import Any

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kedahttp.proxy import http1, reader
from tests.harness.reads import cut, framed_body

_heads = pytest.importorskip("kedahttp.proxy._heads", reason="built without the C request reader")


class Recording:
    """The server's side of a reader, reduced to a log of what it saw."""

    def __init__(self, make: Any, refuse_host: bytes = b"") -> None:
        self.events: list[Any] = []
        self.refuse_host = refuse_host
        self.reader = make(self)

    def on_message_begin(self) -> None:
        self.events.append("begin")

    def on_headers_complete(self) -> None:
        r = self.reader
        try:
            request: Any = r.request(b"10.0.0.1", b"http", len(self.events) % 3 == 0)
        except http1.BadRequest as exc:
            request = ("BadRequest", exc.status, str(exc))
        self.events.append(("head", r.connection_header, r.target(), r.headers(), request))
        if self.refuse_host and request[0] != "BadRequest" and request[4] == self.refuse_host:
            raise http1.BadRequest(400, "refused")  # a callback that raises, as the server's do

    def on_body(self, body: bytes) -> None:
        self.events.append(("body", body))

    def on_message_complete(self) -> None:
        self.events.append("complete")


def run(make: Any, reads: list[bytes], refuse_host: bytes = b"") -> list[Any]:
    rec = Recording(make, refuse_host)
    for data in reads:
        try:
            rec.reader.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            rec.events.append(("upgrade", exc.args[0]))
            break
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            rec.events.append(("error", type(exc).__name__, str(exc), type(cause).__name__,
                               getattr(cause, "status", None)))
            break
        rec.events.append(("read", rec.reader.partial_head_bytes()))
    return rec.events


NAMES = ["Host", "host", "Connection", "Keep-Alive", "TE", "Transfer-Encoding", "Upgrade", "X-Forwarded-For",
         "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Real-IP", "Expect", "Content-Length",
         "Proxy-Authorization", "Accept", "Cookie", "X-Empty"]
VALUES = ["app.test", "keep-alive", "close", "upgrade", "Upgrade, X-Hop", "websocket", "chunked", "gzip, chunked",
          "100-continue", "1.2.3.4", "for=1.2.3.4;proto=https", "https", "", "  spaced  ", "3", "text/html"]
BAD = [b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
       b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n", b"GET / HTTP/1.1\nHost: a\n\n",
       b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", b"GET /\r\nHost: a\r\n\r\n", b"GET / HTTP/1.1\r\nX: \x00\r\n\r\n",
       b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"get / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n",
       b"GET http://a.test/x HTTP/1.1\r\nHost: b\r\n\r\n", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
       b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
       b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
       b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"]


@st.composite
def request(draw: Any) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"DELETE"]))
    target = draw(st.sampled_from([b"/", b"/a/b?c=d", b"/static/app.js?v=3", b"*", b"http://x.test/p"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    headers = draw(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=8))
    body = draw(st.sampled_from(["none", "length", "chunked"]))
    lines = [method + b" " + target + b" " + version]
    lines += [n.encode() + b": " + v.encode() for n, v in headers
              if n.lower() not in ("content-length", "transfer-encoding")]
    framing, payload = framed_body(draw, body, b"Host")
    lines += framing
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


streams = st.lists(st.one_of(request(), request(), st.sampled_from(BAD)), min_size=1, max_size=4).map(b"".join)



@settings(max_examples=500, deadline=None)
@given(data=streams, points=st.lists(st.integers(min_value=0, max_value=4000), max_size=6),
       refuse=st.sampled_from([b"", b"app.test"]))
def test_both_readers_see_the_same_requests(data: bytes, points: list[int], refuse: bytes) -> None:
    reads = cut(data, points)
    assert run(_heads.RequestReader, reads, refuse) == run(reader.RequestReader, reads, refuse)


def test_byte_by_byte_is_read_as_one_piece() -> None:
    data = (b"POST /x HTTP/1.1\r\nHost: app.test\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: b.test\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\nrest")
    for make in (_heads.RequestReader, reader.RequestReader):
        one = [e for e in run(make, [data]) if e[0] not in ("read", "body")]
        split = [e for e in run(make, [data[i:i + 1] for i in range(len(data))]) if e[0] not in ("read", "body")]
        assert one[:-1] == split[:-1]
        # the upgrade's offset is into the read that ended the head: after its last byte
        assert one[-1] == ("upgrade", len(data) - 4) and split[-1] == ("upgrade", 1)


@pytest.mark.parametrize("make", [_heads.RequestReader, reader.RequestReader])
def test_trailer_fields_never_reach_the_next_request(make: Any) -> None:
    data = (b"POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\nX-Trailer: 1\r\nHost: evil.test\r\n\r\nGET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
    heads = [e for e in run(make, [data]) if e[0] == "head"]
    assert [h[3] for h in heads] == [[(b"Host", b"app.test"), (b"Transfer-Encoding", b"chunked")],
                                     [(b"Host", b"app.test")]]
    assert b"X-Trailer" not in heads[1][4][3]


@pytest.mark.parametrize("make", [_heads.RequestReader, reader.RequestReader])
def test_the_http2_preface_stops_the_parse_on_the_star_target(make: Any) -> None:
    events = run(make, [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"])
    assert events[-1][:3] == ("error", "HttpParserError", "Pause on PRI/Upgrade")


def test_a_head_of_many_headers_grows_the_buffer() -> None:
    data = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * i) for i in range(3000)) + b"\r\n"
    ours, theirs = run(_heads.RequestReader, [data]), run(reader.RequestReader, [data])
    assert ours == theirs
    assert len(ours[1][3]) == 3001


@pytest.mark.parametrize("make", [_heads.RequestReader, reader.RequestReader])
def test_only_a_request_with_a_body_is_completed_apart_from_its_head(make: Any) -> None:
    events = run(make, [b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
                        b"POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"])
    assert [e if isinstance(e, str) else e[0] for e in events] == [
        "begin", "head", "begin", "head", "complete", "begin", "head", "body", "complete", "read"]


@pytest.mark.parametrize("make", [_heads.RequestReader, reader.RequestReader])
def test_a_trimmed_reader_reads_on_as_before(make: Any) -> None:
    first = b"GET /a HTTP/1.1\r\nHost: app.test\r\nAccept: */*\r\n\r\n"
    second = b"POST /b HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\n\r\nhi"

    def events(trim: bool) -> list[Any]:
        rec = Recording(make)
        for data in (first, second[:20], second[20:]):
            rec.reader.feed_data(data)
            if trim:  # idle between requests, as the server's sweep does; within a head it keeps all
                rec.reader.trim()
        return rec.events

    assert events(True) == events(False)
    heads = [e for e in events(True) if e[0] == "head"]
    assert heads[1][3] == [(b"Host", b"app.test"), (b"Content-Length", b"2")]


def test_an_idle_reader_holds_no_head_buffer() -> None:
    rec = Recording(_heads.RequestReader)
    rec.reader.feed_data(b"GET /a HTTP/1.1\r\nHost: app.test\r\n\r\n")
    assert rec.reader.buffer_bytes() > 0
    rec.reader.trim()
    assert rec.reader.buffer_bytes() == 0
