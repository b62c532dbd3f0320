"""The request reader of a client connection: llhttp's parse of each request, its head kept for the rewrite.

``RequestReader`` is the plain-Python form: httptools (llhttp) parses, each header comes back as a pair
of bytes, and ``rewrite`` is http1.rewrite_request over the list. ``_heads.RequestReader`` is its C twin
(llhttp bound directly, the head kept in one buffer, no Python object per header); heads.py picks the one
that was built, and tests/unit/proxy/test_reader.py checks that both read every request alike.

The protocol it is handed gets ``on_message_begin``, ``on_headers_complete`` (where it asks the reader
about the head), ``on_body`` and ``on_message_complete``; errors are httptools' exceptions, raised as
httptools raises them. Header fields after a chunked body (trailers) are neither kept nor passed on.
"""

from __future__ import annotations

from typing import Any

import httptools

from kedahttp.proxy.http1 import RequestHead, rewrite_request


class RequestReader:
    __slots__ = ("_headers", "_in_head", "_parser", "_protocol", "_url", "connection_header")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_head = False
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

    def rewrite(self, client_ip: bytes, proto: bytes, trusted: bool) -> RequestHead:
        # llhttp sets upgrade for a request only with "Connection: upgrade" and an Upgrade header (or for
        # CONNECT, refused before this): without a Connection header there is no need to ask
        upgrade = self.connection_header and self._parser.should_upgrade()
        return rewrite_request(self._parser.get_method(), self._url, self._headers, client_ip, upgrade, proto,
                               trusted)

    # -- httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._in_head = True
        self.connection_header = False
        self._protocol.on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            self._headers.append((name, value))
            if len(name) == 10 and name.lower() == b"connection":
                self.connection_header = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._protocol.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._protocol.on_body(body)

    def on_message_complete(self) -> None:
        self._protocol.on_message_complete()
