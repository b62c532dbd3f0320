"""A client's HTTP/2 connection (prior-knowledge h2c): its streams become requests, each routed on its own.

The HTTP/1.1 server hands the connection over when it reads the HTTP/2 preface (server.py), so both
protocols share the port. Framing, HPACK and the stream state machines are jh2's (the ``h2`` library's
API and state machines, HPACK in Rust); this module turns its events into stream calls and enforces the
limits a hostile client tests: concurrent streams and header list size are advertised in SETTINGS and
refused by jh2; CONTINUATION floods end at its backlog of 64 frames; a client that resets streams faster than RESETS_PER_SECOND (rapid reset,
CVE-2023-44487) or sends more than CONTROL_FRAMES_PER_SECOND PING/SETTINGS frames gets GOAWAY
ENHANCE_YOUR_CALM; and a client that stops reading stops being read, so automatic PING and SETTINGS
acknowledgements cannot pile up. Graceful drain sends GOAWAY and lets the open streams finish.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from jh2.config import H2Configuration
from jh2.connection import ConnectionState, H2Connection
from jh2.errors import ErrorCodes
from jh2.events import (
    ConnectionTerminated,
    DataReceived,
    PingReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from jh2.exceptions import ProtocolError
from jh2.hyperframe.frame import GoAwayFrame
from jh2.settings import SettingCodes, Settings

from kedahttp.proxy.forwarded import PASSED_NAMES, TOLD_NAMES, forwarded_fields
from kedahttp.proxy.h2 import grpc
from kedahttp.proxy.h2.ends import Fields, StreamEnd
from kedahttp.proxy.h2.stream import REFUSED_STREAM, Stream
from kedahttp.proxy.routing import RouteTable

STREAM_WINDOW_BYTES = 256 * 1024  # what one stream may have in flight to us (and so, buffered by us)
CONNECTION_WINDOW_BYTES = 4 * 1024 * 1024  # ... and all streams of one connection together
RESETS_PER_SECOND = 200  # client RST_STREAMs per second before the connection is closed (rapid reset)
CONTROL_FRAMES_PER_SECOND = 200  # PING and SETTINGS frames per second before the same
READ_SLICE_BYTES = 16384  # the most given to h2 at once
LINGER_SECONDS = 2.0  # after a GOAWAY for an error, input is dropped this long at most before closing


class Limits:
    """Per-connection limits, advertised in the server's SETTINGS."""

    __slots__ = ("max_concurrent_streams", "max_header_list_bytes")

    def __init__(self, max_concurrent_streams: int = 128, max_header_list_bytes: int = 64 * 1024) -> None:
        self.max_concurrent_streams = max_concurrent_streams
        self.max_header_list_bytes = max_header_list_bytes


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
        conn = H2Connection(H2Configuration(
            client_side=False, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False,
        ))
        limits = side.limits
        conn.local_settings = Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_bytes,
            SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW_BYTES,
        })
        conn.decoder.max_header_list_size = limits.max_header_list_bytes
        self.conn = conn
        self.transport: Any = None
        self.streams: dict[int, Stream] = {}
        self.trailers: dict[int, Fields] = {}
        self.writable = True
        self.closing = False  # GOAWAY sent or received: no new streams; close once the last one ends
        self.close_after_flush = False
        self.lingering = False  # closed for an error: input is read and dropped (_close_lingering)
        self.since = 0.0  # when the connection last went idle
        self.window_start = 0.0  # the one-second window of the flood counters
        self.resets = 0
        self.control = 0
        self._handlers: dict[type, Any] = {
            RequestReceived: self._request,
            DataReceived: self._data,
            StreamEnded: self._ended,
            TrailersReceived: self._trailers,
            StreamReset: self._reset,
            WindowUpdated: self._window,
            RemoteSettingsChanged: self._settings,
            PingReceived: self._ping,
            ConnectionTerminated: self._goaway,
        }

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.since = self.window_start = time.monotonic()
        self.side.connections.add(self)
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(CONNECTION_WINDOW_BYTES - 65535)
        self.flush()

    def data_received(self, data: bytes) -> None:
        # h2 parses all it is given before we see an event: a large read is fed in slices, so a flood is
        # cut off within one slice of crossing its limit
        for at in range(0, len(data), READ_SLICE_BYTES):
            if self.lingering:
                return
            try:
                events = self.conn.receive_data(data[at:at + READ_SLICE_BYTES] if len(data) > READ_SLICE_BYTES
                                                else data)
            except ProtocolError:  # h2 queued the GOAWAY that says why
                self._close_lingering()
                return
            handlers = self._handlers
            for event in events:
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(event)
                    if self.lingering:
                        break
            if not self.lingering:
                self.dirty()  # what jh2 answered by itself (PING and SETTINGS acknowledgements) goes out too
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

    def _request(self, event: RequestReceived) -> None:
        sid = event.stream_id
        if self.closing:
            self.reset(sid, REFUSED_STREAM)
            return
        method = path = authority = host = content_type = timeout = b""
        told: dict[bytes, bytes] = {}
        passed: list[tuple[bytes, bytes]] = []
        head: list[tuple[bytes, bytes]] = []
        for name, value in event.headers:
            if name[0] == 58:  # ":"
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
            elif name == b"host":
                host = value
            elif name == b"content-type":
                content_type = value
            elif name == b"grpc-timeout":
                timeout = value
            elif name in TOLD_NAMES:
                told[name] = told[name] + b", " + value if name in told else value
                continue
            elif name in PASSED_NAMES:
                passed.append((name, value))
                continue
            head.append((name, value))
        head += forwarded_fields(told, passed, self.trusted, self.client_ip, b"http", authority or host)
        grpc_call = grpc.is_grpc(content_type)
        deadline = None
        if timeout:
            seconds = grpc.timeout_seconds(timeout)
            if seconds is not None:
                deadline = time.monotonic() + seconds
        authority = authority or host
        route = self.side.routes.lookup(authority, path) if authority else None
        stream = Stream(self, sid, head, route, grpc_call, deadline)
        self.streams[sid] = stream
        if method == b"CONNECT":
            stream.answer(405)
        else:
            self.side.admit(stream)

    def _stream_data(self, stream: Stream, data: bytes, flow: int) -> None:
        stream.client_data(data, flow)

    def _stream_end(self, stream: Stream, trailers: Fields | None) -> None:
        stream.client_end(trailers)

    def _reset(self, event: StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.client_reset()
        self.resets += 1
        if self._flooded() and self.resets > RESETS_PER_SECOND:
            self.calm(b"too many stream resets")

    def _pump(self, stream: Stream) -> None:
        stream.pump_down()

    def _waiting(self, stream: Stream) -> bool:
        return bool(stream.to_down) or stream.down_end

    def _settings(self, event: RemoteSettingsChanged) -> None:
        self._control()
        if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            for stream in list(self.streams.values()):
                stream.pump_down()

    def _ping(self, event: PingReceived) -> None:
        self._control()

    def _goaway(self, event: ConnectionTerminated) -> None:
        self.closing = True
        if event.error_code:
            self.transport.close()
            return
        self.conn.state_machine.state = ConnectionState.SERVER_OPEN  # jh2 stops at GOAWAY; open streams may finish
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
        if self._flooded() and self.control > CONTROL_FRAMES_PER_SECOND:
            self.calm(b"too many control frames")

    def calm(self, why: bytes) -> None:
        """A client abusing the protocol: GOAWAY ENHANCE_YOUR_CALM, and the connection closes."""
        if self.lingering or self.transport.is_closing():
            return
        self.conn.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, why)
        self._close_lingering()

    def _close_lingering(self) -> None:
        """After a GOAWAY for an error: the client must read it, not lose it to the reset that closing a
        socket with unread input sends. Writes end (FIN) after it; input is dropped until the client
        closes, LINGER_SECONDS at most."""
        self.lingering = True
        self.flush()
        transport = self.transport
        for stream in list(self.streams.values()):
            stream.client_reset()
        if transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    # -- called by streams and the side ------------------------------------------------------------

    def ack(self, flow: int, sid: int) -> None:
        if flow:
            self.conn.acknowledge_received_data(flow, sid)
            self.dirty()

    def reset(self, sid: int, code: int) -> None:
        try:
            self.conn.reset_stream(sid, code)
        except ProtocolError:  # already closed on the wire
            return
        self.dirty()

    def dirty(self) -> None:
        self.side.dirty.add(self)

    def flush(self) -> None:
        data = self.conn.data_to_send()
        transport = self.transport
        if data and not transport.is_closing():
            transport.write(data)
        if self.close_after_flush:
            transport.close()

    def stream_done(self, stream: Stream) -> None:
        self.streams.pop(stream.sid, None)
        if not self.streams:
            self.since = self.side.now
            self.side.connection_quiet()
            if self.closing:
                self.close_after_flush = True
                self.dirty()

    def goaway(self) -> None:
        """Graceful: GOAWAY(NO_ERROR) naming the last stream taken; those streams run to their end.

        Written around jh2 (whose own GOAWAY would end the connection at once)."""
        if self.closing:
            return
        self.closing = True
        self.flush()
        frame = GoAwayFrame(0, last_stream_id=self.conn.highest_inbound_stream_id, error_code=0)
        if not self.transport.is_closing():
            self.transport.write(frame.serialize())
        if not self.streams:
            self.close_after_flush = True
            self.flush()
