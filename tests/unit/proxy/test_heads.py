"""The C head rewriting (_heads.pyx) must give exactly what http1.py gives, on every head.

http1.py is the plain version the rest of the suite was written against. Hypothesis generates heads
mixing every header the rewriting treats specially, in any case and order, repeated or empty, with near
misses, Connection lists naming other headers, absolute-form targets and bad ones; both versions must agree
on every output, or on the error. Cases the C version hands to http1.py are covered too: the agreement
must hold either way.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kedahttp.proxy import http1

_heads = pytest.importorskip("kedahttp.proxy._heads", reason="built without the C head rewriting")

SPECIAL = ["Host", "Connection", "Keep-Alive", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
           "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Forwarded-Port",
           "X-Real-IP", "X-Forwarded", "Forwardedx", "Expect", "Content-Length",
           "Proxy-Authorization", "Proxy-", "Proxy-Connection", "X-Hop", "Accept", "Server", "Date", "ETag",
           "Proxyx", "Tex", "Connections", "Upgrade-Insecure-Requests", "Content-Lengthy"]  # near misses
TOKENS = ["close", "keep-alive", "upgrade", "X-Hop", "accept", "content-length", "transfer-encoding",
          "host", "te", "server", "chunked", "gzip", "100-continue", "websocket", "1.2.3.4", "x",
          "for=1.2.3.4;proto=https", 'for="[2001:db8::1]:80";host=h.test', "https"]


def any_case(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flags: "".join(c.upper() if f else c.lower() for c, f in zip(word, flags, strict=True))
    )


names = st.one_of(st.sampled_from(SPECIAL).flatmap(any_case), st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,12}\Z"))
values = st.one_of(
    st.lists(st.sampled_from(TOKENS).flatmap(any_case), min_size=1, max_size=3).map(", ".join),
    st.from_regex(r"\A[!-~]([ !-~]{0,20}[!-~])?\Z"),  # visible characters, no surrounding whitespace
)
header_lists = st.lists(st.tuples(names, values), max_size=10)
targets = st.one_of(
    st.from_regex(r"\A/[a-z0-9/?=&.-]{0,20}\Z"),
    st.sampled_from([b"*", b"http://a.test", b"http://a.test:8080/x?y", b"HTTPS://B.test/", b"http://u@a/",
                     b"http:///x", b"a.test:80", b"http://a.test?q", b"http://a.test#f"]),
)


def outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except http1.BadRequest as exc:
        return ("BadRequest", exc.status)


@settings(max_examples=600, deadline=None)
@given(
    method=st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS", b"PUT"]),
    target=targets,
    headers=header_lists,
    upgrade=st.booleans(),
    proto=st.sampled_from([b"http", b"https"]),
    trusted=st.booleans(),
)
def test_request_rewriting_matches_the_reference(method: bytes, target: bytes | str,
                                                 headers: list[tuple[str, str]], upgrade: bool,
                                                 proto: bytes, trusted: bool) -> None:
    raw_target = target.encode() if isinstance(target, str) else target
    raw = [(n.encode(), v.encode()) for n, v in headers]
    ours = outcome(_heads.rewrite_request, method, raw_target, list(raw), b"10.0.0.1", upgrade, proto, trusted)
    reference = outcome(http1.rewrite_request, method, raw_target, list(raw), b"10.0.0.1", upgrade, proto, trusted)
    assert ours == reference


def test_request_size_limit_is_the_same_at_the_boundary() -> None:
    for extra in range(-3, 4):
        filler = b"v" * (http1.MAX_HEADER_BYTES - 40 + extra)
        args = (b"GET", b"/", [(b"Host", b"a"), (b"X", filler)], b"ip", False)
        assert outcome(_heads.rewrite_request, *args) == outcome(http1.rewrite_request, *args)


@settings(max_examples=600, deadline=None)
@given(
    status=st.sampled_from([100, 101, 103, 200, 204, 206, 301, 304, 404, 500]),
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]),
    headers=header_lists,
    bodiless=st.booleans(),
    client_http10=st.booleans(),
    keep_alive=st.booleans(),
    cold=st.booleans(),
)
def test_response_rewriting_matches_the_reference(status: int, version: bytes, headers: list[tuple[str, str]],
                                                  bodiless: bool, client_http10: bool, keep_alive: bool,
                                                  cold: bool) -> None:
    head = b"%s %d Whatever\r\n" % (version, status) + b"".join(
        n.encode() + b": " + v.encode() + b"\r\n" for n, v in headers
    )
    flags = {"bodiless": bodiless, "client_http10": client_http10, "keep_alive": keep_alive, "cold": cold}
    assert _heads.rewrite_response(status, head, **flags) == http1.rewrite_response(status, head, **flags)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"HTTP/1.1 200 OK", b"a: b", b"x"]),
                max_size=12).map(b"".join))
def test_head_end_matches_the_reference(data: bytes) -> None:
    assert _heads.head_end(data) == http1.head_end(data)
