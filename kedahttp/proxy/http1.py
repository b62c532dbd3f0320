"""HTTP/1.1 message rewriting for a proxy: request and response heads, framing, and our own error replies.

Pure functions over bytes, no I/O. Hop-by-hop headers (Connection and the names it lists, Keep-Alive,
TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*) never cross the proxy; bodies are re-framed: a
Content-Length passes through, anything else becomes chunked (or, to an HTTP/1.0 client, ends with
the connection). Header blocks are built as one ``bytes`` per message so a message goes out in one write.

Framing is never negotiable by a sender: a Connection header naming Content-Length, Transfer-Encoding or
Host is obeyed for every other name it lists and ignored for those (as nginx, which ignores all of them),
since removing them would let the next hop frame the body differently than we did (request smuggling).
A request Transfer-Encoding other than exactly one ``chunked`` is refused rather than re-framed: 501 for
codings before chunked (we would have to pass them on), 400 when chunked is not last or comes twice.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Final

from kedahttp.proxy.forwarded import derive_from_forwarded, node_token

MAX_HEADER_BYTES: Final = 64 * 1024
MAX_RESPONSE_HEAD_BYTES: Final = 256 * 1024  # an upstream head still incomplete past this is a 502

# body framing of a message
NO_BODY: Final = 0
LENGTH: Final = 1
CHUNKED: Final = 2
UNTIL_CLOSE: Final = 3  # responses only: the body ends when the connection does

# lower-case request header names handled specially; values index the branches in rewrite_request
_H_HOST, _H_CONNECTION, _H_DROP, _H_TE, _H_EXPECT, _H_CL, _H_UPGRADE, _H_XOTHER = range(8)
_H_XFF, _H_XFP, _H_XFH, _H_FWD = range(8, 12)  # what a trusted peer says about forwarding, kept by code
_REQUEST_SPECIAL: Final[dict[bytes, int]] = {
    b"host": _H_HOST,
    b"connection": _H_CONNECTION,
    b"keep-alive": _H_DROP,
    b"te": _H_DROP,
    b"trailer": _H_DROP,
    b"transfer-encoding": _H_TE,
    b"upgrade": _H_UPGRADE,
    b"x-forwarded-for": _H_XFF,
    b"x-forwarded-proto": _H_XFP,
    b"x-forwarded-host": _H_XFH,
    b"forwarded": _H_FWD,
    b"x-forwarded-port": _H_XOTHER,  # passed on from a trusted peer, else dropped
    b"x-real-ip": _H_XOTHER,
    b"expect": _H_EXPECT,
    b"content-length": _H_CL,
}
IDEMPOTENT: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
# Connection tokens that never remove a header: the framing, Host, and those handled here anyway
_KEPT_TOKENS: Final = frozenset({b"close", b"keep-alive", b"upgrade", b"content-length", b"transfer-encoding",
                                 b"host"})


class BadRequest(ValueError):
    """A request the proxy refuses before routing; ``status`` is 400, 431, 501 or 505."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


# rewrite_request -> (head, host, path, body, expect_continue, upgrade): a plain tuple, made once per request
RequestHead = tuple[bytes, bytes, bytes, int, bool, bool]
# rewrite_response -> (head, body, close, upstream_until_close)
ResponseHead = tuple[bytes, int, bool, bool]


def _connection_tokens(value: bytes) -> list[bytes]:
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


def rewrite_request(
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    client_ip: bytes,
    upgrade: bool,
    proto: bytes = b"http",
    trusted: bool = False,
) -> RequestHead:
    """The upstream request head and what routing needs: ``(head, host, path, body, expect_continue, upgrade)``.

    ``head`` is the request line, headers and final CRLF, framing included; ``host`` the Host (or the
    absolute-form authority) as sent; ``path`` the origin-form target; ``body`` the framing (NO_BODY,
    LENGTH, CHUNKED). ``upgrade`` comes from the parser, which also validated the framing.

    Forwarded headers (forwarded.py says why): from a ``trusted`` peer, X-Forwarded-For gets ``client_ip``
    appended, X-Forwarded-Proto and -Host pass unchanged (filled in from a ``Forwarded`` header, else from
    what we saw, where missing), ``Forwarded`` gets a ``for=`` element appended, X-Forwarded-Port and
    X-Real-IP pass. From anyone else all of them are dropped and X-Forwarded-For/-Proto/-Host are set to
    ``client_ip``, ``proto`` and the Host.

    Raises BadRequest for a header block over MAX_HEADER_BYTES, a target the proxy does not serve, or a
    Transfer-Encoding other than exactly ``chunked``.
    """
    path = target
    authority = b""
    if target[:1] != b"/":
        if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
            rest = target[target.index(b"//") + 2:]
            cut = len(rest)
            for sep in b"/?#":
                i = rest.find(bytes((sep,)))
                if 0 <= i < cut:
                    cut = i
            authority = rest[:cut]
            path = rest[cut:] or b"/"
            if path[:1] != b"/":
                path = b"/" + path
            if b"@" in authority or not authority:
                raise BadRequest(400, "bad absolute-form target")
        elif target != b"*":
            raise BadRequest(400, "bad request target")
    lines = [method + b" " + path + b" HTTP/1.1"]  # joined with CRLF at the end
    append = lines.append
    host = b""
    told: dict[int, bytes] | None = None  # a trusted peer's X-Forwarded-For/-Proto/-Host and Forwarded
    expect_continue = False
    has_length = False
    upgrade_value = b""
    chunked = False
    dropped = 0  # bytes of headers not passed on, for the size limit
    extra_tokens: list[bytes] | None = None
    other_coding = False
    special = _REQUEST_SPECIAL
    for name, value in headers:
        lname = name.lower()
        code = special.get(lname)
        if code is None:
            if lname[:6] == b"proxy-":
                dropped += len(name) + len(value) + 4
            else:
                append(name + b": " + value)
            continue
        if code == _H_HOST:
            if host:
                raise BadRequest(400, "more than one Host header")
            host = value
            if not authority:
                append(name + b": " + value)
                continue
        elif code == _H_CL:
            has_length = True
            append(name + b": " + value)
            continue
        elif code >= _H_XFF:
            if trusted:  # several of one name are joined in order
                if told is None:
                    told = {}
                earlier = told.get(code)
                told[code] = value if not earlier else earlier + b", " + value
        elif code == _H_XOTHER:
            if trusted:
                append(name + b": " + value)
                continue
        elif code == _H_EXPECT:
            if value.lower() == b"100-continue":
                expect_continue = True
            else:
                append(name + b": " + value)
                continue
        elif code == _H_UPGRADE:
            upgrade_value = value
        elif code == _H_CONNECTION:
            for token in _connection_tokens(value):
                if token not in _KEPT_TOKENS:
                    if extra_tokens is None:
                        extra_tokens = []
                    extra_tokens.append(token)
        elif code == _H_TE:
            # The parser accepts any list that ends in chunked; we pass on only chunked itself.
            if chunked or value.strip(b" \t").lower() != b"chunked":
                other_coding = True
            chunked = True
        dropped += len(name) + len(value) + 4  # not passed on as received
    if other_coding:
        raise _bad_transfer_coding(headers)
    # the head as received: the lines passed on so far plus the bytes dropped
    if dropped + sum(map(len, lines)) + 2 * len(lines) > MAX_HEADER_BYTES:
        raise BadRequest(431, "header block too large")
    if authority:
        host = authority
        lines.insert(1, b"Host: " + authority)
    if extra_tokens:
        drop = set(extra_tokens)
        lines = [lines[0], *(line for line in lines[1:] if line.partition(b":")[0].lower() not in drop)]
        append = lines.append
    xff = xfp = xfh = fwd = b""
    if told is not None:
        xff, xfp, xfh, fwd = (told.get(code, b"") for code in (_H_XFF, _H_XFP, _H_XFH, _H_FWD))
        if fwd:  # what the peer said in RFC 7239 form fills in what it left out
            fwd_for, fwd_proto, fwd_host = derive_from_forwarded(fwd)
            xff = xff or fwd_for
            xfp = xfp or fwd_proto
            xfh = xfh or fwd_host
    # the added lines as one piece: fewer list operations per request than a line each
    tail = (b"X-Forwarded-For: " + (xff + b", " + client_ip if xff else client_ip)
            + b"\r\nX-Forwarded-Proto: " + (xfp or proto))
    if xfh or host:
        tail += b"\r\nX-Forwarded-Host: " + (xfh or host)
    if fwd:
        tail += b"\r\nForwarded: " + fwd + b", for=" + node_token(client_ip)
    if upgrade and upgrade_value:
        tail += b"\r\nConnection: upgrade\r\nUpgrade: " + upgrade_value
    if chunked:
        body = CHUNKED
        tail += b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    else:
        body = LENGTH if has_length else NO_BODY
        tail += b"\r\n\r\n"
    append(tail)
    return b"\r\n".join(lines), host, path, body, expect_continue, upgrade and bool(upgrade_value)


def _bad_transfer_coding(headers: list[tuple[bytes, bytes]]) -> BadRequest:
    """The refusal of a request Transfer-Encoding that is not exactly one ``chunked`` (rare path): 400 when
    chunked is not the final coding or comes twice (RFC 9112 6.1, 6.3), else 501 for the codings before it,
    which we would have to pass on (as nginx)."""
    codings = [c.strip(b" \t").lower() for name, value in headers if name.lower() == b"transfer-encoding"
               for c in value.split(b",")]
    if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        return BadRequest(400, "bad Transfer-Encoding")
    return BadRequest(501, "transfer coding other than chunked")


# A header line the proxy must look at in a response head; everything else is copied as a slice.
_RESPONSE_SPECIAL = re.compile(
    rb"\r\n(connection|keep-alive|transfer-encoding|te|trailer|upgrade|proxy-[^:\r\n]*|content-length)"
    rb"[ \t]*:[ \t]*([^\r\n]*)",
)  # anchored on the CRLF that ends the previous line: the engine skips ahead to each CRLF. Run on a
# lower-cased copy of the head (same offsets): a case-sensitive scan plus bytes.lower() costs half of
# an IGNORECASE scan.


def head_end(data: bytes) -> int:
    """The offset of the CRLF CRLF that ends a head (llhttp insists on CRLF), or -1."""
    return data.find(b"\r\n\r\n")


def rewrite_response(
    status: int,
    head: bytes,
    bodiless: bool,
    client_http10: bool,
    keep_alive: bool,
    cold: bool,
) -> ResponseHead:
    """The client's response head from the upstream's raw one (status line and header lines, each ending
    in CRLF, as the parser validated them): ``(head, body, close, upstream_until_close)``, where ``body``
    is the framing towards the client and ``upstream_until_close`` says the upstream ends the body by
    closing. ``bodiless``: HEAD request, 1xx, 204 or 304.

    Works on the raw block with one regex scan: the lines to drop or note are few, the rest is copied as
    slices, which is much cheaper per response than a callback and a rewrite per header.
    """
    first = head.find(b"\r\n")
    if head[:9] == b"HTTP/1.1 ":  # the status line passes as it is
        parts = []
        pos = 0
    else:  # the version normalised
        parts = [b"HTTP/1.1"]
        pos = 8
    has_length = False
    upstream_chunked = False
    extra_tokens: list[bytes] | None = None
    upgrade_value = b""
    for m in _RESPONSE_SPECIAL.finditer(head.lower(), first):
        name = m.group(1)
        if name == b"content-length":
            has_length = True
            continue
        parts.append(head[pos:m.start()])
        pos = m.end()
        if name == b"transfer-encoding":
            upstream_chunked = True
        elif name == b"connection":
            value = m.group(2)
            if value != b"keep-alive" and value != b"close":
                for token in _connection_tokens(value):
                    if token not in _KEPT_TOKENS:
                        if extra_tokens is None:
                            extra_tokens = []
                        extra_tokens.append(token)
        elif name == b"upgrade":
            upgrade_value = head[m.start(2):pos]  # as sent, not lower-cased
    parts.append(head[pos:])
    if extra_tokens:
        parts = _drop_lines(parts, extra_tokens)
    append = parts.append
    if cold:
        append(b"X-KEDAHTTP-Cold-Start: true\r\n")
    if status == 101:
        append(b"Connection: upgrade\r\nUpgrade: ")
        append(upgrade_value)
        append(b"\r\n\r\n")
        return b"".join(parts), NO_BODY, False, False
    until_close = False
    # the body decision; _heads.pyx has its deliberate C twin, checked equal by tests/unit/proxy/test_heads.py
    if bodiless or status < 200:
        body = NO_BODY
    elif has_length and not upstream_chunked:
        body = LENGTH
    elif client_http10:
        until_close = not upstream_chunked
        body = UNTIL_CLOSE
        keep_alive = False
    else:
        until_close = not upstream_chunked
        body = CHUNKED
        append(b"Transfer-Encoding: chunked\r\n")
    if status < 200:
        append(b"\r\n")
    elif not keep_alive:
        append(b"Connection: close\r\n\r\n")
    elif client_http10:
        append(b"Connection: keep-alive\r\n\r\n")
    else:
        append(b"\r\n")
    if has_length and upstream_chunked:  # never both towards the client: chunked won upstream
        parts = _drop_lines(parts, [b"content-length"])
    return b"".join(parts), body, not keep_alive, until_close


def _drop_lines(parts: list[bytes], names: list[bytes]) -> list[bytes]:
    """Removes header lines named in ``names`` (lower case) from a head being assembled (rare path); the
    first line (status line) always stays."""
    drop = set(names)
    lines = b"".join(parts).split(b"\r\n")
    kept = [lines[0], *(line for line in lines[1:] if not line or line.partition(b":")[0].strip().lower() not in drop)]
    return [b"\r\n".join(kept)]


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def error_response(status: int, body: bytes, *, close: bool, retry_after: int | None = None,
                   head_only: bool = False) -> bytes:
    """One of the proxy's own short replies (CONTRACT section 6)."""
    lines = [
        b"HTTP/1.1 %d %s\r\n" % (status, _reason(status)),
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n" % len(body),
        b"Cache-Control: no-store\r\n",
    ]
    if retry_after is not None:
        lines.append(b"Retry-After: %d\r\n" % retry_after)
    lines.append(b"Connection: close\r\n\r\n" if close else b"\r\n")
    if not head_only:
        lines.append(body)
    return b"".join(lines)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK: Final = b"0\r\n\r\n"
CONTINUE_100: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
