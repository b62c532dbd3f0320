"""Forwarded headers: trusted peers are believed and appended to, everyone else is replaced.

The property test parses generated requests with httptools (what the server does), rewrites them as an
untrusted client's, parses the result again and checks that nothing the client sent about forwarding
survived: every header in the family is exactly what the proxy itself saw. It runs on both rewritings,
the pure one and the C one.
"""

from __future__ import annotations

from typing import Any

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kedahttp.process.settings import parse_networks
from kedahttp.proxy import http1
from kedahttp.proxy.forwarded import (
    FORWARDED_NAMES,
    PASSED_NAMES,
    TOLD_NAMES,
    TrustedProxies,
    derive_from_forwarded,
    forwarded_elements,
    forwarded_fields,
    node_address,
)

try:
    from kedahttp.proxy import _heads

    REWRITERS = [http1.rewrite_request, _heads.rewrite_request]
except ImportError:  # built without the C rewriting: the pure one is the data path
    REWRITERS = [http1.rewrite_request]

FAMILY = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-real-ip",
          b"forwarded")


class _Collect:
    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.done = True


def parse_head(head: bytes) -> list[tuple[bytes, bytes]]:
    collect = _Collect()
    httptools.HttpRequestParser(collect).feed_data(head)
    assert collect.done
    return collect.headers


def values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in headers if n.lower() == name]


def rewrite(fn: Any, headers: list[tuple[bytes, bytes]], *, trusted: bool, client: bytes = b"10.1.2.3",
            proto: bytes = b"http") -> list[tuple[bytes, bytes]]:
    head = fn(b"GET", b"/x", headers, client, False, proto, trusted)[0]
    return parse_head(head)


# -- the setting and the peer check ------------------------------------------------------------------------

def test_trusted_proxies_are_parsed_once_into_networks() -> None:
    nets = parse_networks("10.0.0.0/8, 192.168.1.7 fd00::/8")
    assert [str(n) for n in nets] == ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]
    assert parse_networks("") == ()
    with pytest.raises(ValueError, match=r"'10\.0\.0\.1/8' is not an IP address or CIDR network"):
        parse_networks("10.0.0.1/8")
    with pytest.raises(ValueError, match="'ingress' is not"):
        parse_networks("10.0.0.0/8,ingress")


def test_peer_check() -> None:
    trusted = TrustedProxies(parse_networks("10.0.0.0/8, fd00::/8"))
    assert trusted.trusts(b"10.9.9.9")
    assert trusted.trusts(b"::ffff:10.1.1.1")  # an IPv4 peer on a dual-stack socket
    assert trusted.trusts(b"fd00::1")
    assert not trusted.trusts(b"11.0.0.1")
    assert not trusted.trusts(b"unknown")
    assert not TrustedProxies().trusts(b"10.9.9.9")  # the default trusts nobody


# -- RFC 7239 ----------------------------------------------------------------------------------------------

def test_forwarded_elements_are_parsed_with_quotes_and_case() -> None:
    value = b'for=192.0.2.60;Proto=https;by=203.0.113.43, for="[2001:db8:cafe::17]:4711";host="a;b.test"'
    assert forwarded_elements(value) == [
        {b"for": b"192.0.2.60", b"proto": b"https", b"by": b"203.0.113.43"},
        {b"for": b"[2001:db8:cafe::17]:4711", b"host": b"a;b.test"},
    ]
    assert forwarded_elements(b"garbage, ;=, for") == []
    assert node_address(b"[2001:db8::1]:80") == b"2001:db8::1"
    assert node_address(b"192.0.2.60:80") == b"192.0.2.60"
    assert node_address(b"unknown") == b"unknown"


def test_derive_takes_proto_and_host_from_the_peer_s_own_element() -> None:
    chain, proto, host = derive_from_forwarded(b"for=1.1.1.1;proto=http, for=2.2.2.2;proto=https;host=app.test")
    assert (chain, proto, host) == (b"1.1.1.1, 2.2.2.2", b"https", b"app.test")


# -- the rewriting -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", REWRITERS)
def test_a_trusted_peer_keeps_proto_and_host_and_gets_appended_to(fn: Any) -> None:
    out = rewrite(fn, [(b"Host", b"app.test"), (b"X-Forwarded-For", b"203.0.113.9"),
                       (b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Host", b"app.example.com"),
                       (b"X-Real-IP", b"203.0.113.9"), (b"X-Forwarded-Port", b"443")], trusted=True)
    assert values(out, b"x-forwarded-for") == [b"203.0.113.9, 10.1.2.3"]
    assert values(out, b"x-forwarded-proto") == [b"https"]
    assert values(out, b"x-forwarded-host") == [b"app.example.com"]
    assert values(out, b"x-real-ip") == [b"203.0.113.9"] and values(out, b"x-forwarded-port") == [b"443"]
    # nothing sent about forwarding: the proxy's own view, as for anyone
    bare = rewrite(fn, [(b"Host", b"app.test")], trusted=True)
    assert values(bare, b"x-forwarded-for") == [b"10.1.2.3"] and values(bare, b"x-forwarded-proto") == [b"http"]
    assert values(bare, b"x-forwarded-host") == [b"app.test"]


@pytest.mark.parametrize("fn", REWRITERS)
def test_a_trusted_forwarded_header_fills_in_and_is_appended_to(fn: Any) -> None:
    out = rewrite(fn, [(b"Host", b"app.test"), (b"Forwarded", b'for="[2001:db8::7]";proto=https;host=shop.test')],
                  trusted=True, client=b"fd00::9")
    assert values(out, b"x-forwarded-for") == [b"2001:db8::7, fd00::9"]
    assert values(out, b"x-forwarded-proto") == [b"https"]
    assert values(out, b"x-forwarded-host") == [b"shop.test"]
    assert values(out, b"forwarded") == [b'for="[2001:db8::7]";proto=https;host=shop.test, for="[fd00::9]"']
    # X-Forwarded-* the peer did send win over its Forwarded
    out = rewrite(fn, [(b"Host", b"a"), (b"Forwarded", b"for=1.1.1.1;proto=http"), (b"X-Forwarded-Proto", b"https")],
                  trusted=True)
    assert values(out, b"x-forwarded-proto") == [b"https"]


@pytest.mark.parametrize("fn", REWRITERS)
def test_an_untrusted_client_gets_every_forwarded_header_replaced(fn: Any) -> None:
    out = rewrite(fn, [(b"Host", b"app.test"), (b"X-Forwarded-For", b"1.2.3.4"), (b"X-Forwarded-Proto", b"https"),
                       (b"X-Forwarded-Host", b"evil.test"), (b"Forwarded", b"for=1.2.3.4;proto=https"),
                       (b"X-Real-IP", b"1.2.3.4"), (b"X-Forwarded-Port", b"443")], trusted=False)
    assert values(out, b"x-forwarded-for") == [b"10.1.2.3"]
    assert values(out, b"x-forwarded-proto") == [b"http"]
    assert values(out, b"x-forwarded-host") == [b"app.test"]
    assert not values(out, b"forwarded") and not values(out, b"x-real-ip") and not values(out, b"x-forwarded-port")


def any_case(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flags: "".join(c.upper() if f else c.lower() for c, f in zip(word, flags, strict=True)))


_names = st.one_of(
    st.sampled_from(["X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "X-Real-IP",
                     "Forwarded", "X-Forwarded", "Forwarded-For", "Connection", "Host"]).flatmap(any_case),
    st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,15}\Z"),
)
_values = st.one_of(
    st.sampled_from(["https", "1.2.3.4", "for=1.2.3.4;proto=https;host=evil", 'for="[::1]"', "evil.test",
                     "x-forwarded-for", "forwarded, x-real-ip", "close", "keep-alive, X-Forwarded-Proto"]),
    st.from_regex(r"\A[!-~]([ !-~]{0,30}[!-~])?\Z"),
)


@settings(max_examples=400, deadline=None)
@given(headers=st.lists(st.tuples(_names, _values), max_size=12), fn=st.sampled_from(REWRITERS))
def test_no_header_lets_an_untrusted_client_s_forwarded_headers_survive(headers: list[tuple[str, str]],
                                                                         fn: Any) -> None:
    raw = b"GET /x HTTP/1.1\r\nHost: app.test\r\n" + b"".join(
        n.encode() + b": " + v.encode() + b"\r\n" for n, v in headers if n.lower() != "host") + b"\r\n"
    try:
        parsed = parse_head(raw)
        head = fn(b"GET", b"/x", parsed, b"10.1.2.3", False, b"http", False)[0]
    except (httptools.HttpParserError, http1.BadRequest):
        return  # refused before it reaches anyone
    out = parse_head(head)
    assert values(out, b"x-forwarded-for") == [b"10.1.2.3"]
    assert values(out, b"x-forwarded-proto") == [b"http"]
    assert values(out, b"x-forwarded-host") == [b"app.test"]
    for name in (b"x-forwarded-port", b"x-real-ip", b"forwarded"):
        assert values(out, name) == []


@settings(max_examples=300, deadline=None)
@given(headers=st.lists(st.tuples(_names, _values), max_size=12), trusted=st.booleans())
def test_the_http2_side_forwards_as_the_http1_rewriter_does(headers: list[tuple[str, str]], trusted: bool) -> None:
    """HTTP/2 streams (h2/downstream.py) get their forwarded headers from ``forwarded_fields``; HTTP/1.1
    requests from ``http1.rewrite_request`` inline. Same input, same headers out, whoever the peer is."""
    raw = b"GET /x HTTP/1.1\r\nHost: app.test\r\n" + b"".join(
        n.encode() + b": " + v.encode() + b"\r\n" for n, v in headers if n.lower() not in ("host", "connection")
    ) + b"\r\n"
    try:
        parsed = parse_head(raw)
        head = http1.rewrite_request(b"GET", b"/x", parsed, b"10.1.2.3", False, b"http", trusted)[0]
    except (httptools.HttpParserError, http1.BadRequest):
        return
    told: dict[bytes, bytes] = {}
    passed: list[tuple[bytes, bytes]] = []
    for name, value in parsed:
        lname = name.lower()
        if lname in TOLD_NAMES:
            told[lname] = told[lname] + b", " + value if lname in told else value
        elif lname in PASSED_NAMES:
            passed.append((lname, value))
    ours = sorted(forwarded_fields(told, passed, trusted, b"10.1.2.3", b"http", b"app.test"))
    theirs = sorted((n.lower(), v) for n, v in parse_head(head) if n.lower() in FORWARDED_NAMES)
    assert ours == theirs
