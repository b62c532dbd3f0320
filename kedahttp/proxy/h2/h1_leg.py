"""An HTTP/2 stream to an app that speaks HTTP/1.1: one HTTP/1.1 exchange on a pooled keep-alive connection.

The stream's pseudo-headers become the request line and Host; a body of unknown length goes chunked;
request trailers are dropped (HTTP/1.1 apps rarely read them). The response head is parsed with
httptools and becomes the stream's HEADERS, hop-by-hop fields removed. Backpressure is the stream's:
the app's socket stops being read while more than PAUSE_BYTES of its body wait for the client's window,
so a slow HTTP/2 reader is not buffered for.

Connections are kept as the HTTP/1.1 path keeps them (upstream.py): ``H1Pool`` holds a few idle ones per
endpoint, most recently used first so that the surplus ages out, closed after the h2c pool's idle timeout;
a stream takes one or opens a new one. A connection goes back only when its response was read to the end,
the request was sent in full, both sides allowed keep-alive and nothing failed, reset or timed out on
it, so a reused connection never carries leftovers; a connection that answered HEAD is closed (httptools
cannot be told that the response has no body). The response may still be waiting for the client's window
when its connection carries the next exchange: the stream keeps it as its leg, and what it then says to
it (an acknowledgement, a reset, its end) names an exchange that is over and is ignored. A request on a
reused connection that the app closed without answering goes once more on a new one when that is safe
(``H1Leg.connection_lost``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httptools

from kedahttp.process.tasks import TaskOwner
from kedahttp.proxy.h2.stream import Stream
from kedahttp.proxy.h2.upstream import IDLE_TIMEOUT_SECONDS, dial
from kedahttp.proxy.h2.wire import Fields
from kedahttp.proxy.http1 import IDEMPOTENT

PAUSE_BYTES = 256 * 1024
MAX_IDLE_PER_ENDPOINT = 16  # the odd HTTP/2 client of an HTTP/1.1 app: a few connections are plenty
HOP_BY_HOP = frozenset((
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te", b"trailer",
    b"http2-settings",
))


def request_head(stream: Stream, chunked: bool) -> bytes:
    method = path = authority = b""
    lines = []
    for name, value, _ in stream.head:
        if name[0] == 58:  # ":"
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
        elif name == b"host":
            authority = authority or value
        elif name not in HOP_BY_HOP:
            lines.append(b"%s: %s\r\n" % (name, value))
    head = b"%s %s HTTP/1.1\r\nhost: %s\r\n%s" % (method, path or b"/", authority, b"".join(lines))
    return head + (b"transfer-encoding: chunked\r\n\r\n" if chunked else b"\r\n")


class _Unrequested(Exception):
    """A second response to one request: it must never reach a stream."""


class H1Leg(asyncio.Protocol):
    """A connection to an HTTP/1.1 app, carrying one stream's exchange at a time (that stream's ``Leg``).
    Exchanges are numbered; a stream's ``usid`` is its exchange's number here."""

    def __init__(self, pool: H1Pool, endpoint: str) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self.transport: Any = None
        self.writable = True
        self.closed = False
        self.reused = False  # has waited in the pool: the app may have closed it meanwhile
        self.idle_since = 0.0
        self.parser = httptools.HttpResponseParser(self)
        self.stream: Stream | None = None  # the current exchange's, until it is over here
        self.exchanges = 0
        self.chunked = False
        self.head_only = False
        self.idempotent = False
        self.headers: Fields = []
        self.outstanding = 0  # bytes of the app's body not yet taken by the client
        self.paused = False
        self.got_bytes = False  # a byte of the response has arrived
        self.body_sent = False  # a byte of the request body was written
        self.complete = False  # the whole response was read (what is left may wait for the client)
        self.keep_alive = False  # ... and the app allowed the connection to carry another
        self.answered = False  # the final response head came
        self.framed = False  # ... with a length or chunks (else its body ends with the connection)

    def bind(self, stream: Stream) -> None:
        """The stream's request goes out here (a connection just opened, or one from the pool)."""
        self.stream = stream
        self.exchanges += 1
        self.headers = []
        self.outstanding = 0
        self.got_bytes = self.body_sent = self.complete = self.keep_alive = False
        self.answered = self.framed = False
        method = next((field[1] for field in stream.head if field[0] == b":method"), b"")
        self.head_only = method == b"HEAD"
        self.idempotent = method in IDEMPOTENT
        has_length = any(field[0] == b"content-length" for field in stream.head)
        self.chunked = not has_length and not (stream.up_end and not stream.to_up)
        self.transport.write(request_head(stream, self.chunked))
        stream.attached(self, self.exchanges)

    def _exchange_over(self, stream: Stream) -> None:
        """The response was read to the end: back to the pool if nothing else is left on the connection."""
        if not (self.keep_alive and stream.up_ended and not self.closed and not self.transport.is_closing()):
            self.transport.close()
            return
        self.stream = None
        if self.paused:  # the stream's unread body no longer holds the connection back
            self.paused = False
            self.transport.resume_reading()
        self.pool.put(self)

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        stream = self.stream
        if stream is None:  # bytes on an idle connection: the app broke the protocol
            self.transport.abort()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:  # not HTTP, or more than one response
            self.keep_alive = False
            if not self.complete:
                stream.upstream_lost()
            self.transport.close()
        if self.complete:
            self._exchange_over(stream)
        self.pool.side_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        stream, self.stream = self.stream, None
        if stream is None or self.complete or stream.done:
            return
        if self.answered and not self.framed and exc is None:  # a body without length or chunks ends with
            self.complete = True  # the connection (RFC 9112 6.3, item 8; httptools is never told); a reset
            # (``exc``) is not an end: that stream is cut, as any other
            stream.upstream_end(None)
            self.pool.side_flush()
            return
        # Sent again only when that is safe: the connection had waited in the pool, so the app may have
        # closed it (its keep-alive timeout) just as the request went out; no byte of a response came, so
        # the request has no answer; the method is idempotent, because a close tells nothing of whether
        # the app acted on the request first (the HTTP/1.1 path's rule: a POST is never sent twice); and
        # none of the body was written, because what was written was acknowledged to the client and is not
        # kept. A new connection is never one that waited in the pool, so this happens at most once.
        if self.reused and not self.got_bytes and not self.body_sent and self.idempotent:
            stream.up = None  # between connections, as before its first
            stream.up_ended = False  # the end (a last empty chunk) goes out again on the new one
            self.pool.connect(stream)
            return
        stream.upstream_lost()
        self.pool.side_flush()

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        if self.stream is not None:
            self.stream.pump_up()
            self.pool.side_flush()

    # -- httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            raise _Unrequested

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or name == b"transfer-encoding":
            self.framed = True
        if name not in HOP_BY_HOP:
            self.headers.append((name, value, False))

    def on_headers_complete(self) -> None:
        stream = self.stream
        assert stream is not None
        status = self.parser.get_status_code()
        headers, self.headers = self.headers, []
        if status < 200:  # 100 Continue and the like: the final answer follows
            self.framed = False
            return
        self.answered = True
        self.framed = self.framed or status in (204, 304)
        stream.response([(b":status", str(status).encode(), False), *headers], self.head_only)
        if self.head_only:
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        stream = self.stream
        assert stream is not None
        self.outstanding += len(body)
        if self.outstanding > PAUSE_BYTES and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        stream.upstream_data(body, len(body))

    def on_message_complete(self) -> None:
        stream = self.stream
        assert stream is not None
        if self.parser.get_status_code() >= 200:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()  # only right until the parser moves on
            stream.upstream_end(None)

    # -- Leg ---------------------------------------------------------------------------------------

    def pump(self, stream: Stream) -> None:
        if stream is not self.stream:  # its exchange here is over (or it moved to a new connection)
            return
        q = stream.to_up
        write = self.transport.write
        down = stream.down
        while q:
            data, flow = q.popleft()
            if data:
                self.body_sent = True
                write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
            if flow:
                down.ack(flow, stream.sid)  # in the socket's buffer, which pause_writing bounds
        if stream.up_end and not stream.up_ended:
            stream.up_ended = True
            if self.chunked:
                write(b"0\r\n\r\n")

    def ack(self, flow: int, usid: int) -> None:
        if self.stream is None or usid != self.exchanges:
            return
        self.outstanding -= flow
        if self.paused and self.outstanding <= PAUSE_BYTES // 2 and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def reset(self, usid: int, code: int) -> None:
        if self.stream is not None and usid == self.exchanges and not self.closed:
            self.transport.abort()

    def stream_done(self, stream: Stream) -> None:
        """The stream ended before its response did (a reset, a timeout, the client gone): the rest of
        the exchange cannot be told apart from the next one's, so the connection goes."""
        if stream is self.stream and not self.complete and not self.closed:
            self.transport.close()


class H1Pool:
    """Idle keep-alive connections to HTTP/1.1 apps per endpoint, and opening new ones (side.py owns it)."""

    def __init__(self, side_flush: Callable[[], None], on_unreachable: Callable[[Stream], None]) -> None:
        self.idle: dict[str, list[H1Leg]] = {}
        self.side_flush = side_flush
        self.on_unreachable = on_unreachable
        self.tasks = TaskOwner("h1-upstream")
        self.idle_timeout_seconds = IDLE_TIMEOUT_SECONDS
        self.closed = False

    def start(self, stream: Stream) -> None:
        """The stream goes out on the most recently used idle connection to its endpoint, else a new one."""
        conns = self.idle.get(stream.endpoint)
        if conns:
            conns.pop().bind(stream)
        else:
            self.connect(stream)

    def connect(self, stream: Stream) -> None:
        self.tasks.spawn(self._connect(stream), "h1 " + stream.endpoint)

    async def _connect(self, stream: Stream) -> None:
        leg = H1Leg(self, stream.endpoint)
        try:
            await dial(stream, leg)
        except (OSError, TimeoutError):
            if not stream.done:
                self.on_unreachable(stream)
                self.side_flush()
            return
        if stream.done:  # the client left while this connected: the connection waits for the next stream
            self.put(leg)
            return
        leg.bind(stream)
        self.side_flush()

    def put(self, leg: H1Leg) -> None:
        conns = self.idle.get(leg.endpoint)
        if self.closed or (conns is not None and len(conns) >= MAX_IDLE_PER_ENDPOINT):
            leg.transport.close()
            return
        if conns is None:
            conns = self.idle[leg.endpoint] = []
        leg.reused = True
        leg.idle_since = time.monotonic()
        conns.append(leg)

    def forget(self, leg: H1Leg) -> None:
        conns = self.idle.get(leg.endpoint)
        if conns and leg in conns:
            conns.remove(leg)

    def sweep(self, now: float) -> None:
        """Closes the connections idle for longer than the idle timeout."""
        horizon = now - self.idle_timeout_seconds
        for endpoint, conns in list(self.idle.items()):
            keep = []
            for leg in conns:
                if leg.idle_since > horizon:
                    keep.append(leg)
                else:
                    leg.transport.close()
            if keep:
                self.idle[endpoint] = keep
            else:
                del self.idle[endpoint]

    async def close(self) -> None:
        self.closed = True
        for conns in self.idle.values():
            for leg in conns:
                leg.transport.close()
        self.idle.clear()
        await self.tasks.close(1.0)
