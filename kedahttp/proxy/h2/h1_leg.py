"""An HTTP/2 stream to an app that speaks HTTP/1.1: one exchange on a connection of its own.

The stream's pseudo-headers become the request line and Host; a body of unknown length goes chunked;
request trailers are dropped (HTTP/1.1 apps rarely read them). The response head is parsed with
httptools and becomes the stream's HEADERS, hop-by-hop fields removed. Backpressure is the stream's:
the app's socket stops being read while more than PAUSE_BYTES of its body wait for the client's window,
so a slow HTTP/2 reader is not buffered for. The connection closes with the exchange (no reuse: this
path is for the odd HTTP/2 client of an HTTP/1.1 app; h2c apps get shared, multiplexed connections).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httptools

from kedahttp.proxy.h2.stream import Stream
from kedahttp.proxy.h2.upstream import dial
from kedahttp.proxy.h2.wire import Fields

PAUSE_BYTES = 256 * 1024
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
    return head + (b"transfer-encoding: chunked\r\n" if chunked else b"") + b"connection: close\r\n\r\n"


class H1Leg(asyncio.Protocol):
    def __init__(self, stream: Stream, flush: Callable[[], None]) -> None:
        self.stream = stream
        self.flush = flush
        self.transport: Any = None
        self.writable = True
        self.chunked = False
        self.head_only = False
        self.parser = httptools.HttpResponseParser(self)
        self.headers: Fields = []
        self.outstanding = 0  # bytes of the app's body not yet taken by the client
        self.paused = False
        self.closed = False
        self.complete = False  # the whole response was read (what is left may wait for the client)

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        stream = self.stream
        if stream.done:  # the client left while this connected
            transport.close()
            return
        has_length = any(field[0] == b"content-length" for field in stream.head)
        self.chunked = not has_length and not (stream.up_end and not stream.to_up)
        self.head_only = any(field[0] == b":method" and field[1] == b"HEAD" for field in stream.head)
        self.transport.write(request_head(stream, self.chunked))
        stream.attached(self, 0)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.stream.upstream_lost()
            self.transport.close()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and not self.stream.done:
            self.stream.upstream_lost()
            self.flush()

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self.stream.pump_up()
        self.flush()

    # -- httptools callbacks -----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name not in HOP_BY_HOP:
            self.headers.append((name, value, False))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        headers, self.headers = self.headers, []
        if status < 200:  # 100 Continue and the like: the final answer follows
            return
        self.stream.response([(b":status", str(status).encode(), False), *headers], self.head_only)
        if self.head_only:
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.outstanding += len(body)
        if self.outstanding > PAUSE_BYTES and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self.stream.upstream_data(body, len(body))

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() >= 200:
            self.complete = True
            self.stream.upstream_end(None)

    # -- Leg ---------------------------------------------------------------------------------------

    def pump(self, stream: Stream) -> None:
        q = stream.to_up
        write = self.transport.write
        down = stream.down
        while q:
            data, flow = q.popleft()
            if data:
                write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
            if flow:
                down.ack(flow, stream.sid)  # in the socket's buffer, which pause_writing bounds
        if stream.up_end and not stream.up_ended:
            stream.up_ended = True
            if self.chunked:
                write(b"0\r\n\r\n")

    def ack(self, flow: int, usid: int) -> None:
        self.outstanding -= flow
        if self.paused and self.outstanding <= PAUSE_BYTES // 2 and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def reset(self, usid: int, code: int) -> None:
        if not self.closed:
            self.transport.abort()

    def stream_done(self, stream: Stream) -> None:
        if not self.closed:
            self.transport.close()


async def connect(stream: Stream, flush: Callable[[], None], on_unreachable: Callable[[Stream], None]) -> None:
    try:
        await dial(stream, H1Leg(stream, flush))
    except (OSError, TimeoutError):
        if not stream.done:
            on_unreachable(stream)
            flush()
