"""The C response reader (_heads.ResponseReader, our llhttp binding) must read every response exactly as the
plain-Python one (reader.ResponseReader, httptools) does.

Hypothesis writes streams of responses (1xx and 100-continue before a final one, 204 and 304 without a
body, bodies by Content-Length, chunked with trailers and read until close, a 101 upgrade, several in a row
as a pipelining upstream sends them, and malformed pieces: bad status lines, CL+TE, obs-fold, bare LF,
NUL) and cuts each stream into reads at arbitrary points. Both readers get the same reads; everything the
upstream connection sees must be equal: each head with its status (or None for a response that did not
begin a read's kept bytes), each body piece, each end with its keep-alive, the end of a parse on a response
to HEAD, a head too large, and the error that stops the parse (class, message, the exception that caused
it, the offset of the bytes after an upgrade).
"""

from __future__ import annotations

from typing import Any

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kedahttp.proxy import http1, reader
from tests.harness.reads import cut, framed_body

_heads = pytest.importorskip("kedahttp.proxy._heads", reason="built without the C response reader")


class Refused(Exception):
    """What the connection raises for a head it will not pass on."""


class Recording:
    """The upstream connection's side of a reader, reduced to a log of what it saw."""

    def __init__(self, make: Any, head_only: bool, refuse: int) -> None:
        self.events: list[Any] = []
        self.status = 0
        self.head_only = head_only  # the request was HEAD: the parse ends with a final head
        self.refuse = refuse  # a status whose head the connection refuses (raises)
        self.reader = make(self)

    def on_head(self, status: int, head: bytes | None) -> bool:
        self.events.append(("head", status, head))
        self.status = status
        if status == self.refuse:
            raise Refused(status)
        if status >= 200 and self.head_only:
            self.reader.begin()  # the next response, as the next exchange's bind does
            return True
        return False

    def on_body(self, body: bytes) -> None:
        self.events.append(("body", body))

    def on_message_complete(self, keep_alive: bool) -> None:
        self.events.append(("complete", keep_alive))
        if self.status >= 200:  # the end of a final response: the next is awaited, as the next bind does
            self.reader.begin()


def run(make: Any, reads: list[bytes], head_only: bool = False, refuse: int = 0) -> list[Any]:
    rec = Recording(make, head_only, refuse)
    rec.reader.begin()
    for data in reads:
        try:
            rec.reader.feed_data(data)
        except reader.ResponseHeadTooLarge:
            rec.events.append("too large")
            break
        except httptools.HttpParserUpgrade as exc:
            rec.events.append(("upgrade", exc.args[0]))
            break
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            rec.events.append(("error", type(exc).__name__, str(exc), type(cause).__name__))
            break
        rec.events.append("read")
    return rec.events


NAMES = ["Content-Type", "Connection", "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Authenticate",
         "Set-Cookie", "X-Empty", "Date"]
VALUES = ["text/html", "keep-alive", "close", "upgrade", "Upgrade, X-Hop", "websocket", "", "  spaced  ", "a=b"]
BAD = [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nx",
       b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
       b"HTTP/1.1 2000 OK\r\n\r\n", b"HTTX/1.1 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nX: \x00\r\n\r\n",
       b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab", b"garbage\r\n\r\n",
       b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]


@st.composite
def response(draw: Any) -> bytes:
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    interim = draw(st.lists(st.sampled_from([b"100 Continue", b"103 Early Hints", b"102 Processing"]), max_size=2))
    status = draw(st.sampled_from([b"200 OK", b"204 No Content", b"304 Not Modified", b"404 Not Found",
                                   b"101 Switching Protocols", b"500 Oops", b"200 "]))
    headers = draw(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=6))
    body = draw(st.sampled_from(["length", "length", "chunked", "close", "none"]))
    out = b"".join(version + b" " + s + b"\r\nLink: </a>\r\n\r\n" for s in interim)
    lines = [version + b" " + status] + [n.encode() + b": " + v.encode() for n, v in headers]
    if status[:3] == b"101" and draw(st.booleans()):  # a switch as servers send it
        lines += [b"Connection: upgrade", b"Upgrade: websocket"]
    framing, payload = framed_body(draw, body, b"Server")
    lines += framing
    if body == "close":
        payload = draw(st.binary(max_size=20))
    return out + b"\r\n".join(lines) + b"\r\n\r\n" + payload


streams = st.lists(st.one_of(response(), response(), st.sampled_from(BAD)), min_size=1, max_size=4).map(b"".join)



@settings(max_examples=500, deadline=None)
@given(data=streams, points=st.lists(st.integers(min_value=0, max_value=4000), max_size=6),
       head_only=st.booleans(), refuse=st.sampled_from([0, 101, 404]))
def test_both_readers_see_the_same_responses(data: bytes, points: list[int], head_only: bool, refuse: int) -> None:
    reads = cut(data, points)
    assert run(_heads.ResponseReader, reads, head_only, refuse) == run(reader.ResponseReader, reads, head_only, refuse)


@pytest.mark.parametrize("make", [_heads.ResponseReader, reader.ResponseReader])
def test_interim_heads_and_the_final_one_are_handed_on_whole(make: Any) -> None:
    data = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi")
    for reads in ([data], [data[i:i + 1] for i in range(len(data))]):
        events = [e for e in run(make, reads) if e != "read"]
        assert [e for e in events if e[0] == "head"] == [
            ("head", 100, b"HTTP/1.1 100 Continue\r\n"), ("head", 103, b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n"),
            ("head", 200, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n")]
        assert b"".join(e[1] for e in events if e[0] == "body") == b"hi"
        assert events[-1] == ("complete", True)


@pytest.mark.parametrize("make", [_heads.ResponseReader, reader.ResponseReader])
def test_a_second_response_in_the_same_read_has_no_head_of_its_own(make: Any) -> None:
    events = run(make, [b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    heads = [e for e in events if e[0] == "head"]
    assert heads == [("head", 204, b"HTTP/1.1 204 No Content\r\n"), ("head", 200, None)]


@pytest.mark.parametrize("make", [_heads.ResponseReader, reader.ResponseReader])
def test_a_response_to_head_ends_the_parse_and_drops_the_rest_of_the_read(make: Any) -> None:
    events = run(make, [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], head_only=True)
    assert events == [("head", 200, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"), "read",
                      ("head", 200, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"), "read"]


@pytest.mark.parametrize("make", [_heads.ResponseReader, reader.ResponseReader])
def test_a_head_past_the_limit_is_refused(make: Any) -> None:
    line = b"X-Big: " + b"v" * 1000 + b"\r\n"
    reads = [b"HTTP/1.1 200 OK\r\n"] + [line] * (http1.MAX_RESPONSE_HEAD_BYTES // len(line) + 1)
    assert run(make, reads)[-1] == "too large"


def test_the_upgrade_offset_is_into_the_read_that_ended_the_head() -> None:
    data = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nframes"
    for make in (_heads.ResponseReader, reader.ResponseReader):
        assert run(make, [data])[-1] == ("upgrade", len(data) - 6)
        assert run(make, [data[:-8], data[-8:]])[-1] == ("upgrade", 2)


def test_a_big_head_buffer_is_not_kept_for_the_next_response() -> None:
    rec = Recording(_heads.ResponseReader, False, 0)
    rec.reader.begin()
    rec.reader.feed_data(b"HTTP/1.1 200 OK\r\n" + b"X: " + b"v" * 20000 + b"\r\nContent-Length: 0\r\n\r\n")
    assert rec.events[-1] == ("complete", True)
    assert rec.reader.buffer_bytes() == 0
