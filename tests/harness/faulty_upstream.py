"""A scriptable upstream for fault tests: a raw HTTP/1.1 server whose every misbehaviour is chosen per request.

The request path says what to do, ``/<mode>/<id>?n=<bytes>&delay=<ms>&chunked=1&close=1&close_next=1``,
so a test knows exactly what each request must come back as. Bodies are derived from the request id
(and a POST's answer starts with the digest of the body received), so a response delivered to the wrong
request, or cut and passed off as complete, never matches what its client expects. Raw asyncio streams
and httptools rather than a framework, because the faults are about bytes and sockets: a reset half-way
through a body, a close before any byte, a keep-alive connection dropped just as a request arrives.

Modes:
  ok                  answer 200 (Content-Length, or chunked with ``chunked=1``); ``delay`` ms first;
                      ``close=1`` answers ``Connection: close`` and closes; ``close_next=1`` closes the
                      connection without reading it when the next request arrives on it (a keep-alive
                      timeout firing just as the proxy reuses the connection)
  until_close         200 with neither length nor chunking: the body ends when the connection does (FIN)
  until_close_reset   the same, but half the body and then a reset: a cut that only the RST tells apart
  reset_mid           Content-Length head, half the body, then a reset (RST)
  reset_mid_chunked   chunked head, two chunks, then a reset
  drop_first          the first time an id is seen: read the whole request, then close without a byte
                      (a crash after acting on it); later attempts are answered like ``ok``
  stall_head          read the request, answer nothing until the peer goes away
  stall_body          Content-Length head and half the body, then nothing until the peer goes away
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct
import time
from collections import Counter, deque
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httptools

_LINGER_RESET = struct.pack("ii", 1, 0)


def body_for(rid: str, n: int) -> bytes:
    """The response body for request ``rid``: ``n`` bytes that no other id produces."""
    unit = f"{rid}:{hashlib.sha256(rid.encode()).hexdigest()}\n".encode()
    return (unit * (n // len(unit) + 1))[:n]


def expected_body(method: str, rid: str, n: int, request_body: bytes = b"") -> bytes:
    """What a complete answer to ``method /mode/rid?n=N`` carries (POSTs echo the digest of their body)."""
    body = body_for(rid, n)
    if method == "POST":
        return b"%s %s %d\n" % (rid.encode(), hashlib.sha256(request_body).hexdigest().encode(),
                                len(request_body)) + body
    return body


@dataclass(frozen=True)
class Received:
    """A request the upstream read in full and acted on."""

    mode: str
    rid: str
    method: str
    body_sha: str
    body_len: int
    conn: int  # connection number
    nth: int  # 1 for the first request on its connection, 2 for the next, ...
    at: float  # time.monotonic()


class _Request:
    __slots__ = ("body", "headers", "keep_alive", "method", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = hashlib.sha256()
        self.method = ""
        self.keep_alive = True


class _Parser:
    """httptools callbacks collecting whole requests (body digested, not kept)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.current: _Request | None = None
        self.body_len = 0
        self.done: deque[tuple[_Request, int]] = deque()
        self.partial = False

    def on_message_begin(self) -> None:
        self.current = _Request()
        self.body_len = 0
        self.partial = True

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.url += url

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        self.current.body.update(body)
        self.body_len += len(body)

    def on_message_complete(self) -> None:
        req = self.current
        assert req is not None
        req.method = self.parser.get_method().decode()
        req.keep_alive = self.parser.should_keep_alive()
        self.done.append((req, self.body_len))
        self.current = None
        self.partial = False


class FaultyUpstream:
    def __init__(self, port: int = 0, *, idle_close_seconds: float | None = None) -> None:
        self.port = port
        self.idle_close_seconds = idle_close_seconds  # close a connection idle this long (keep-alive timeout)
        self.received: list[Received] = []
        self.discarded = 0  # requests that arrived on a connection closed by ``close_next``
        self.gone: dict[str, float] = {}  # stalled request id -> when its peer went away
        self.stalled: dict[str, float] = {}  # stalled request id -> when the stall began
        self.connections = 0
        self.open_connections = 0
        self.seen: Counter[str] = Counter()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def processed(self, rid: str) -> int:
        return sum(1 for r in self.received if r.rid == rid)

    async def start(self) -> FaultyUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stops listening and closes every connection (a backend going away)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for _ in range(100):  # the handlers see their connections close and finish
            if not self.open_connections:
                break
            await asyncio.sleep(0.01)

    @property
    def listening(self) -> bool:
        return self._server is not None

    # -- one connection ----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        conn = self.connections
        self._writers.add(writer)
        parser = _Parser()
        nth = 0
        close_next = False
        try:
            while True:
                while not parser.done:
                    idle = not parser.partial and self.idle_close_seconds is not None
                    try:
                        if idle:
                            data = await asyncio.wait_for(reader.read(65536), self.idle_close_seconds)
                        else:
                            data = await reader.read(65536)
                    except TimeoutError:
                        return  # keep-alive timeout: close (FIN)
                    if not data:
                        return
                    if close_next:
                        self.discarded += 1
                        return  # closed without reading: as if the keep-alive timeout fired first
                    try:
                        parser.parser.feed_data(data)
                    except httptools.HttpParserError:
                        return
                req, body_len = parser.done.popleft()
                nth += 1
                keep, close_next = await self._respond(req, body_len, conn, nth, reader, writer)
                if not keep:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            writer.close()

    async def _respond(self, req: _Request, body_len: int, conn: int, nth: int,
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[bool, bool]:
        """Answers one request; returns (keep the connection, close it when the next request arrives)."""
        parts = urlsplit(req.url.decode("latin-1"))
        segments = parts.path.strip("/").split("/")
        if len(segments) != 2:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return req.keep_alive, False
        mode, rid = segments
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        n = int(query.get("n", "64"))
        delay = float(query.get("delay", "0")) / 1000
        self.seen[rid] += 1
        first = self.seen[rid] == 1
        digest = req.body.hexdigest()
        if mode == "drop_first" and first:
            self.received.append(Received(mode, rid, req.method, digest, body_len, conn, nth, time.monotonic()))
            return False, False
        self.received.append(Received(mode, rid, req.method, digest, body_len, conn, nth, time.monotonic()))
        if delay:
            await asyncio.sleep(delay)
        body = body_for(rid, n)
        if req.method == "POST":
            body = b"%s %s %d\n" % (rid.encode(), digest.encode(), body_len) + body
        close = query.get("close") == "1" or not req.keep_alive
        if mode in ("ok", "drop_first"):
            head = [b"HTTP/1.1 200 OK\r\n", b"X-Request-Id: %s\r\n" % rid.encode()]
            if close:
                head.append(b"Connection: close\r\n")
            if query.get("chunked") == "1":
                head.append(b"Transfer-Encoding: chunked\r\n\r\n")
                writer.write(b"".join(head))
                step = max(1, len(body) // 3)
                for i in range(0, len(body), step):
                    piece = body[i:i + step]
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            else:
                head.append(b"Content-Length: %d\r\n\r\n" % len(body))
                writer.write(b"".join(head) + body)
            await writer.drain()
            return not close, query.get("close_next") == "1"
        if mode == "until_close":
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
            return False, False
        if mode == "until_close_reset":
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body[: len(body) // 2])
            await self._reset(writer)
            return False, False
        if mode == "reset_mid":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body[: len(body) // 2])
            await self._reset(writer)
            return False, False
        if mode == "reset_mid_chunked":
            half = body[: len(body) // 2]
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            if half:  # an empty chunk would end the body
                writer.write(b"%x\r\n%s\r\n" % (len(half), half))
            await self._reset(writer)
            return False, False
        if mode in ("stall_head", "stall_body"):
            if mode == "stall_body":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body[: len(body) // 2])
                await writer.drain()
            self.stalled[rid] = time.monotonic()
            with contextlib.suppress(ConnectionError, OSError):
                while await reader.read(65536):
                    pass
            self.gone[rid] = time.monotonic()
            return False, False
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        return req.keep_alive, False

    async def _reset(self, writer: asyncio.StreamWriter) -> None:
        """Flushes what was written, lets the peer read it, then resets the connection (RST, not FIN)."""
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        writer.transport.abort()
