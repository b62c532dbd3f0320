"""A client's HTTP/2 connection (prior-knowledge h2c): its streams become requests, each routed on its own.

The HTTP/1.1 server hands the connection over when it reads the HTTP/2 preface (server.py), so both
protocols share the port. Framing, HPACK, flow control and stream states are the connection's ``Wire``
(wire.py); this module turns its events into stream calls and enforces the limits a hostile client
tests: concurrent streams and header list size are advertised in SETTINGS and enforced by the wire, as
is the CONTINUATION flood (64 frames per block); a client that resets streams faster than
H2_RESETS_PER_SECOND (rapid reset, CVE-2023-44487) or sends more than H2_CONTROL_FRAMES_PER_SECOND
PING/SETTINGS frames gets GOAWAY ENHANCE_YOUR_CALM; and a client that stops reading stops being read, so PING and
SETTINGS acknowledgements cannot pile up. Graceful drain sends GOAWAY and lets the open streams finish.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from kedahttp.proxy.forwarded import PASSED_NAMES, TOLD_NAMES, forwarded_fields
from kedahttp.proxy.h2 import frames as f
from kedahttp.proxy.h2 import grpc
from kedahttp.proxy.h2.ends import StreamEnd, linger
from kedahttp.proxy.h2.stream import REFUSED_STREAM, Stream
from kedahttp.proxy.h2.wire import Fields, Wire, WireError
from kedahttp.proxy.routing import RouteTable


class Limits:
    """What a client connection may do (the H2_* settings): the first four are advertised in the server's
    SETTINGS or as window updates, the rates are the flood limits."""

    __slots__ = ("connection_window_bytes", "control_frames_per_second", "max_concurrent_streams",
                 "max_header_list_bytes", "resets_per_second", "stream_window_bytes")

    def __init__(self, max_concurrent_streams: int = 128, max_header_list_bytes: int = 64 * 1024, *,
                 stream_window_bytes: int = 256 * 1024, connection_window_bytes: int = 4 * 1024 * 1024,
                 resets_per_second: int = 200, control_frames_per_second: int = 200) -> None:
        self.max_concurrent_streams = max_concurrent_streams
        self.max_header_list_bytes = max_header_list_bytes
        self.stream_window_bytes = stream_window_bytes  # what one stream may have in flight to us (buffered by us)
        self.connection_window_bytes = connection_window_bytes  # ... and all streams of one connection together
        self.resets_per_second = resets_per_second  # client RST_STREAMs per second before GOAWAY (rapid reset)
        self.control_frames_per_second = control_frames_per_second  # PING and SETTINGS frames, the same


class Host(Protocol):
    """What a client connection needs of the HTTP/2 side that owns it (side.py's H2Side): declared here,
    so this module imports nothing that imports it."""

    limits: Limits
    connections: set[Any]
    dirty: set[Any]
    routes: RouteTable
    now: float

    def flush(self) -> None: ...

    def admit(self, stream: Stream) -> None: ...

    def unhold(self, stream: Stream) -> None: ...

    def connection_quiet(self) -> None: ...


class H2Downstream(StreamEnd):
    def __init__(self, side: Host, client_ip: bytes, trusted: bool = False) -> None:
        self.side = side
        self.client_ip = client_ip
        self.trusted = trusted  # the peer is in TRUSTED_PROXIES: its forwarded headers are believed
        limits = side.limits
        self.limits = limits
        self.wire = Wire(self, False, max_streams=limits.max_concurrent_streams,
                         max_header_list_bytes=limits.max_header_list_bytes, stream_window=limits.stream_window_bytes,
                         connection_window=limits.connection_window_bytes)
        self.transport: Any = None
        self.streams: dict[int, Stream] = {}
        self.writable = True
        self.closing = False  # GOAWAY sent or received: no new streams; close once the last one ends
        self.close_after_flush = False
        self.lingering = False  # closing: input is read and dropped (_linger)
        self.eof_sent = False  # ... and nothing more is written
        self.since = 0.0  # when the connection last went idle
        self.window_start = 0.0  # the one-second window of the flood counters
        self.resets = 0
        self.control = 0

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.since = self.window_start = time.monotonic()
        self.side.connections.add(self)
        self.wire.initiate()
        self.flush()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        wire = self.wire
        try:
            wire.receive(data)
        except WireError as exc:
            self.calm(exc.code, exc.why)
            self.side.flush()
            return
        if wire.out:
            self.dirty()  # PING and SETTINGS acknowledgements, window updates
        self.side.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.side.connections.discard(self)
        for stream in list(self.streams.values()):
            stream.client_reset()
        self.side.flush()

    def eof_received(self) -> bool | None:
        return False  # the client's FIN: closed at once (its streams end in connection_lost)

    def pause_writing(self) -> None:
        self.writable = False
        if not self.lingering:
            self.transport.pause_reading()  # its pings and settings would be answered into a full buffer

    def resume_writing(self) -> None:
        self.writable = True
        if not self.lingering:
            self.transport.resume_reading()
        for stream in list(self.streams.values()):
            stream.pump_down()
        self.side.flush()

    # -- events ------------------------------------------------------------------------------------

    def on_headers(self, sid: int, fields: Fields, end: bool, first: bool) -> None:
        if not first:
            self._trailers(sid, fields)
            return
        if self.closing:
            self.reset(sid, REFUSED_STREAM)
            return
        method = path = authority = host = content_type = timeout = b""
        told: dict[bytes, bytes] = {}
        passed: list[tuple[bytes, bytes]] = []
        head: Fields = []
        for field in fields:
            name = field[0]
            if name[0] == 58:  # ":"
                if name == b":method":
                    method = field[1]
                elif name == b":path":
                    path = field[1]
                elif name == b":authority":
                    authority = field[1]
            elif name == b"host":
                host = field[1]
            elif name == b"content-type":
                content_type = field[1]
            elif name == b"grpc-timeout":
                timeout = field[1]
            elif name in TOLD_NAMES:
                told[name] = told[name] + b", " + field[1] if name in told else field[1]
                continue
            elif name in PASSED_NAMES:
                passed.append((name, field[1]))
                continue
            head.append(field)
        for name, value in forwarded_fields(told, passed, self.trusted, self.client_ip, b"http", authority or host):
            head.append((name, value, False))
        deadline = None
        if timeout:
            seconds = grpc.timeout_seconds(timeout)
            if seconds is not None:
                deadline = time.monotonic() + seconds
        authority = authority or host
        route = self.side.routes.lookup(authority, path) if authority else None
        stream = Stream(self, sid, head, route, grpc.is_grpc(content_type), deadline)
        self.streams[sid] = stream
        if method == b"CONNECT":
            stream.answer(405)
        else:
            self.side.admit(stream)
        if end:
            stream.client_end(None)

    def _stream_data(self, stream: Stream, data: bytes, flow: int) -> None:
        stream.client_data(data, flow)

    def _stream_end(self, stream: Stream, trailers: Fields | None) -> None:
        stream.client_end(trailers)

    def on_reset(self, sid: int, code: int) -> None:
        stream = self.streams.get(sid)
        if stream is not None:
            stream.client_reset()
        self.resets += 1
        if self._flooded() and self.resets > self.limits.resets_per_second:
            raise WireError(f.ENHANCE_YOUR_CALM, b"too many stream resets")

    def _pump(self, stream: Stream) -> None:
        stream.pump_down()

    def _waiting(self, stream: Stream) -> bool:
        return bool(stream.to_down) or stream.down_end

    def on_settings(self, window_changed: bool, streams_changed: bool) -> None:
        self._control()
        if window_changed:
            for stream in list(self.streams.values()):
                stream.pump_down()

    def on_ping(self) -> None:
        self._control()

    def on_goaway(self, last_sid: int, code: int) -> None:
        self.closing = True
        if code:
            self.transport.close()
            return
        if not self.streams:
            self.close_after_flush = True

    # -- limits ------------------------------------------------------------------------------------

    def _flooded(self) -> bool:
        now = time.monotonic()
        if now - self.window_start >= 1.0:
            self.window_start = now
            self.resets = self.control = 0
            return False
        return True

    def _control(self) -> None:
        self.control += 1
        if self._flooded() and self.control > self.limits.control_frames_per_second:
            raise WireError(f.ENHANCE_YOUR_CALM, b"too many control frames")

    def calm(self, code: int, why: bytes) -> None:
        """A client breaking the protocol or a limit: GOAWAY with ``code``, and the connection closes."""
        if self.lingering or self.transport.is_closing():
            return
        self.wire.goaway(self.wire.highest, code, why)
        self._close_lingering()

    def _close_lingering(self) -> None:
        """After a GOAWAY for an error: the client must read it, not lose it to the reset that closing a
        socket with unread input sends. Its streams end here."""
        self.flush()
        for stream in list(self.streams.values()):
            stream.client_reset()
        self._linger()

    def _linger(self) -> None:
        """Writes end after what was written; input is dropped from now on (``ends.linger``)."""
        self.lingering = True
        if not self.eof_sent:
            self.eof_sent = True
            linger(self.transport)

    # -- called by streams and the side ------------------------------------------------------------

    def ack(self, flow: int, sid: int) -> None:
        wire = self.wire
        wire.ack(flow, sid)
        if wire.out:
            self.dirty()

    def reset(self, sid: int, code: int) -> None:
        self.wire.reset(sid, code)
        self.dirty()

    def dirty(self) -> None:
        self.side.dirty.add(self)

    def flush(self) -> None:
        data = self.wire.data_to_send()
        transport = self.transport
        if data and not transport.is_closing() and not self.eof_sent:
            transport.write(data)
        if self.close_after_flush:
            self.close_after_flush = False
            self._linger()

    def stream_done(self, stream: Stream) -> None:
        self.streams.pop(stream.sid, None)
        if not self.streams:
            self.since = self.side.now
            self.side.connection_quiet()
            if self.closing:
                self.close_after_flush = True
                self.dirty()

    def goaway(self) -> None:
        """Graceful: GOAWAY(NO_ERROR) naming the last stream taken; those streams run to their end."""
        if self.closing:
            return
        self.closing = True
        self.wire.goaway(self.wire.highest, f.NO_ERROR)
        if not self.streams:
            self.close_after_flush = True
        self.flush()
