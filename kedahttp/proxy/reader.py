"""The readers of the data path: llhttp's parse of each request (client side) and of each response (upstream
side), their heads kept for the rewrite.

``RequestReader`` is the plain-Python form: httptools (llhttp) parses, each header comes back as a pair
of bytes, and ``rewrite`` is http1.rewrite_request over the list. ``_heads.RequestReader`` is its C twin
(llhttp bound directly, the head kept in one buffer, no Python object per header); heads.py picks the one
that was built, and tests/unit/proxy/test_reader.py checks that both read every request alike.

The protocol it is handed gets ``on_message_begin``, ``on_headers_complete`` (where it asks the reader
for the ``request``), ``on_body`` and ``on_message_complete``, the last only for a request that has a body
(a Content-Length or Transfer-Encoding header): one without is complete with its head. Errors are
httptools' exceptions, raised as httptools raises them. Header fields after a chunked body (trailers) are
neither kept nor passed on.

``ResponseReader`` is the same for an upstream connection's responses: it keeps each head's raw bytes from
the first byte of the response (``begin``), and hands its protocol one call per head, ``on_head(status,
head)`` (``head`` the status line and header lines, or None for a response that did not begin at the start
of a read's bytes kept for it: one after the end of the last in the same read), one per body piece and
``on_message_complete(keep_alive)``. A true answer from ``on_head`` ends the parse there (a response to
HEAD): the rest of that read is dropped and the next read starts a new parse. ``_heads.ResponseReader`` is
its C twin (tests/unit/proxy/test_response_reader.py).
"""

from __future__ import annotations

from typing import Any

import httptools

from kedahttp.proxy.http1 import MAX_RESPONSE_HEAD_BYTES, BadRequest, head_end, rewrite_request

# request() -> (method, keep_alive, http10, upstream head, host, path, body framing, expect_continue, upgrade)
Request = tuple[bytes, bool, bool, bytes, bytes, bytes, int, bool, bool]


class RequestReader:
    __slots__ = ("_has_body", "_headers", "_in_head", "_parser", "_protocol", "_url", "connection_header")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_head = False
        self._has_body = False
        self.connection_header = False  # the head being parsed has a Connection header

    # -- what the server asks ----------------------------------------------------------------------

    def feed_data(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def get_method(self) -> bytes:
        return self._parser.get_method()

    def should_keep_alive(self) -> bool:
        return self._parser.should_keep_alive()

    def version(self) -> int:
        """The request's HTTP version as 10 * major + minor (11 for HTTP/1.1)."""
        major, _, minor = self._parser.get_http_version().partition(".")
        return 10 * int(major) + int(minor)

    def target(self) -> bytes:
        return self._url

    def headers(self) -> list[tuple[bytes, bytes]]:
        return list(self._headers)

    def partial_head_bytes(self) -> int:
        """The size of an unfinished head from what the parser handed over so far (the request line and
        complete header lines)."""
        return len(self._url) + 16 + sum(len(n) + len(v) + 4 for n, v in self._headers)

    def request(self, client_ip: bytes, proto: bytes, trusted: bool) -> Request:
        """The request whose head was just read, checked and rewritten for the upstream (http1.py), or
        BadRequest: 405 for CONNECT, 400 for HTTP/0.9 and 505 for 2.0 or later (llhttp reads those), then the
        rewriting's refusals, then 400 for an HTTP/1.1 request without a Host. The C twin checks the same,
        in the same order."""
        parser = self._parser
        method = parser.get_method()
        if method == b"CONNECT":
            raise BadRequest(405, "CONNECT is not served")
        http10 = False
        version = self.version()
        if version != 11:
            if version != 10:
                # llhttp reads a request line without a version as HTTP/0.9 with headers: malformed either
                # way; 2.0 is a version, just not ours
                raise BadRequest(400 if version < 10 else 505, "HTTP version not served")
            http10 = True
        # llhttp sets upgrade for a request only with "Connection: upgrade" and an Upgrade header (or for
        # CONNECT, refused above)
        upgrade = self.connection_header and parser.should_upgrade()
        head, host, path, body, expect_continue, upgrading = rewrite_request(
            method, self._url, self._headers, client_ip, upgrade, proto, trusted)
        if not host and not http10:
            raise BadRequest(400, "missing Host")
        return (method, parser.should_keep_alive(), http10, head, host, path, body, expect_continue, upgrading)

    def trim(self) -> None:
        """Gives back what the last head held (the connection is idle between requests); the C twin frees
        its buffer, so an idle keep-alive connection costs no head buffer."""
        if not self._in_head:
            self._url = b""
            self._headers = []

    # -- httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._in_head = True
        self._has_body = False
        self.connection_header = False
        self._protocol.on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            self._headers.append((name, value))
            lname = name.lower()
            if lname == b"connection":
                self.connection_header = True
            elif lname == b"content-length" or lname == b"transfer-encoding":
                self._has_body = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._protocol.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._protocol.on_body(body)

    def on_message_complete(self) -> None:
        if self._has_body:
            self._protocol.on_message_complete()


class ResponseHeadTooLarge(Exception):
    """An upstream response head still incomplete past MAX_RESPONSE_HEAD_BYTES."""


class _HeadDone(Exception):
    """Stops the parser after the head of a response that has no body (a response to HEAD)."""


class ResponseReader:
    __slots__ = ("_in_head", "_parser", "_pending", "_protocol")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._parser = httptools.HttpResponseParser(self)
        self._in_head = False  # the head of the current response is not complete yet
        self._pending = b""  # raw bytes of that head so far

    def begin(self) -> None:
        """A new response is awaited: its head is kept from the next byte on."""
        self._in_head = True
        self._pending = b""

    def feed_data(self, data: bytes) -> None:
        """Parses ``data``; ResponseHeadTooLarge (before any parse) when the head kept passes the limit,
        else httptools' errors as httptools raises them."""
        if self._in_head:
            if self._pending:
                self._pending += data
                if len(self._pending) > MAX_RESPONSE_HEAD_BYTES:
                    raise ResponseHeadTooLarge
            else:
                self._pending = data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _HeadDone):
                raise
            self._parser = httptools.HttpResponseParser(self)

    # -- httptools callbacks -----------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        pending = self._pending
        status = self._parser.get_status_code()
        head = None
        # a response's head is all in ``pending`` from its first byte; not so for one that began after
        # the previous response ended in the same read
        if pending.startswith(b"HTTP/"):
            end = head_end(pending)
            head = pending[:end + 2]
            if status < 200 and status != 101:  # an interim response; the final one follows
                self._pending = pending[end + 4:]
            else:
                self._in_head = False
                self._pending = b""
        if self._protocol.on_head(status, head):
            raise _HeadDone

    def on_body(self, body: bytes) -> None:
        self._protocol.on_body(body)

    def on_message_complete(self) -> None:
        self._protocol.on_message_complete(self._parser.should_keep_alive())
