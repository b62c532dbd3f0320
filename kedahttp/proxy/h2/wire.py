"""One end of an HTTP/2 connection, without a protocol library: framing, HPACK, flow control, stream states.

The full stack's two connection ends (downstream.py, a client's connection; upstream.py, a connection to
an h2c app) each own a ``Wire``. It reads frames with the frame-header scan the relay uses (C in
``_frames.pyx``), decodes and encodes header blocks with jh2's HPACK in Rust (one context per direction,
as RFC 7541 wants), checks what RFC 9113 asks of a receiver, and calls its owner once per event, with no
event objects in between: ``on_headers``, ``on_data``, ``on_reset``, ``on_window``, ``on_settings``,
``on_ping``, ``on_goaway``. What it writes collects in ``out`` until the owner flushes.

Errors: a connection error raises ``WireError`` (the owner answers GOAWAY with its code and closes); a
stream error resets that stream (RST_STREAM) and reports it to the owner as ``on_reset`` so whatever the
stream was doing ends. Requests are checked field by field (``frames.request_problem``, in C where
built) before the owner sees them, and their bodies against a declared content-length as they arrive: a
malformed one is reset with PROTOCOL_ERROR, and what is past the fault never reaches an app.

Flow control: the peer's windows (what we may send) are ``send_window``; ours (what the peer may send)
are given back by ``ack``, which the owner calls once the bytes were passed on, in WINDOW_UPDATEs batched
to half a window, so a unary call costs no WINDOW_UPDATE at all. docs/http2.md has the design and its
measurements.
"""

from __future__ import annotations

import struct
from typing import Protocol

from jh2._hazmat import (  # jh2's HPACK in Rust: docs/http2.md, "Reading the header blocks"
    Decoder,
    Encoder,
    OversizedHeaderListError,
)

from kedahttp.proxy.h2 import frames as f

try:
    from kedahttp.proxy._frames import request_problem, scan_frames
except ImportError:  # built without the extension (KEDAHTTP_COMPILE=0, no compiler)
    from kedahttp.proxy.h2.frames import request_problem, scan_frames

Fields = list[tuple[bytes, bytes, bool]]  # name, value, never-indexed: as HPACK gives and takes them

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_WINDOW = 65535
MAX_WINDOW = 2**31 - 1
FRAME_BYTES = 16384  # the largest frame accepted (our SETTINGS_MAX_FRAME_SIZE is left at its default)
MAX_CONTINUATIONS = 64  # CONTINUATION frames in one header block before the connection ends
MAX_TABLE_BYTES = 4096  # the most of the peer's HPACK table size our encoder uses
STREAM_CLOSED, FLOW_CONTROL_ERROR = 5, 3
_pack_head = struct.Struct(">BHBBL").pack
_pack_window = struct.Struct(">BHBBLL").pack  # a WINDOW_UPDATE or RST_STREAM: header and one 32-bit word


def content_length(fields: Fields) -> int:
    """A request's declared body length: -1 when it declares none, -2 when the declaration is malformed
    (not digits, or fields that disagree: RFC 9110 8.6)."""
    found = -1
    for name, value, _ in fields:
        if name == b"content-length":
            if not value.isdigit() or (found >= 0 and int(value) != found):
                return -2
            found = int(value)
    return found


class WireError(Exception):
    """A connection error: the connection ends with GOAWAY ``code``."""

    def __init__(self, code: int, why: bytes) -> None:
        super().__init__(why)
        self.code = code
        self.why = why


class Events(Protocol):
    """What a wire tells its owner. A handler may raise WireError to end the connection (a flood)."""

    def on_headers(self, sid: int, fields: Fields, end: bool, first: bool) -> None: ...

    def on_data(self, sid: int, data: bytes, flow: int, end: bool) -> None: ...

    def on_reset(self, sid: int, code: int) -> None: ...

    def on_window(self, sid: int) -> None: ...

    def on_settings(self, window_changed: bool, streams_changed: bool) -> None: ...

    def on_ping(self) -> None: ...

    def on_goaway(self, last_sid: int, code: int) -> None: ...


class WireStream:
    """A stream as the wire keeps it, from its HEADERS until both ends ended or one reset it."""

    __slots__ = ("expect", "local_ended", "recv", "remote_ended", "send", "started", "unacked")

    def __init__(self, send: int, recv: int) -> None:
        self.send = send  # what we may still send on it (the peer's window)
        self.recv = recv  # what the peer may still send on it (ours)
        self.unacked = 0  # received and passed on, not yet given back
        self.local_ended = False
        self.remote_ended = False
        self.started = False  # its first header block (a request, or a final response) came
        self.expect = -1  # a request's body bytes still to come by its content-length; -1: none declared


class Wire:
    def __init__(self, events: Events, client: bool, *, max_streams: int = 0, max_header_list_bytes: int = 0,
                 stream_window: int = DEFAULT_WINDOW, connection_window: int = DEFAULT_WINDOW) -> None:
        self.events = events
        self.client = client
        self.out: list[bytes] = []
        self.encoder = Encoder()
        self.decoder = Decoder(max_header_list_bytes) if max_header_list_bytes else Decoder()
        self.streams: dict[int, WireStream] = {}
        self.max_streams = max_streams  # ours, advertised (0: not stated)
        self.max_header_list_bytes = max_header_list_bytes
        self.stream_window = stream_window  # ours, advertised as SETTINGS_INITIAL_WINDOW_SIZE
        self.connection_window = connection_window
        self.recv_conn = DEFAULT_WINDOW  # what the peer may still send on the connection
        self.unacked_conn = 0
        self.peer_window = DEFAULT_WINDOW  # the peer's SETTINGS_INITIAL_WINDOW_SIZE
        self.send_conn = DEFAULT_WINDOW  # what we may still send on the connection
        self.max_outbound_frame_size = FRAME_BYTES
        self.peer_max_streams = 2**31  # until its SETTINGS say
        self.highest = 0  # the highest stream id the peer opened (a server) or we opened (a client)
        self.next_sid = 1
        self.inbuf = b""
        self.preface = not client  # a server's input starts with the client's preface
        self.settings_seen = False
        self.block: list[bytes] | None = None  # a header block in pieces: its fragments so far
        self.block_sid = 0
        self.block_end = False
        self.block_count = 0

    # -- the start ---------------------------------------------------------------------------------

    def initiate(self) -> None:
        """Our SETTINGS (a client's preface before them), and the connection window beyond the default."""
        body = b""
        if self.client:
            body += f.setting(f.ENABLE_PUSH, 0)
        if self.max_streams:
            body += f.setting(f.MAX_CONCURRENT_STREAMS, self.max_streams)
        if self.stream_window != DEFAULT_WINDOW:
            body += f.setting(f.INITIAL_WINDOW_SIZE, self.stream_window)
        if self.max_header_list_bytes:
            body += f.setting(f.MAX_HEADER_LIST_SIZE, self.max_header_list_bytes)
        out = self.out
        if self.client:
            out.append(PREFACE)
        out.append(_pack_head(0, len(body), f.SETTINGS, 0, 0) + body)
        more = self.connection_window - DEFAULT_WINDOW
        if more > 0:
            out.append(_pack_window(0, 4, f.WINDOW_UPDATE, 0, 0, more))
            self.recv_conn += more

    # -- input -------------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Takes what was read; calls the owner per event. Raises WireError for a connection error."""
        if self.inbuf:
            data = self.inbuf + data
            self.inbuf = b""
        at = 0
        if self.preface:
            if len(data) < 24:
                if PREFACE.startswith(data):
                    self.inbuf = data
                    return
                raise WireError(f.PROTOCOL_ERROR, b"no HTTP/2 connection preface")
            if not data.startswith(PREFACE):
                raise WireError(f.PROTOCOL_ERROR, b"no HTTP/2 connection preface")
            self.preface = False
            at = 24
        found, end = scan_frames(data, at, FRAME_BYTES, True)
        for ftype, flags, sid, fat, length in found:
            if self.block is not None and ftype != f.CONTINUATION:
                raise WireError(f.PROTOCOL_ERROR, b"header block interrupted by another frame")
            if not self.settings_seen:
                if ftype != f.SETTINGS or flags & f.ACK:
                    raise WireError(f.PROTOCOL_ERROR, b"the first frame was not SETTINGS")
                self.settings_seen = True
            if ftype == f.DATA:
                self._data(data, flags, sid, fat, length)
            elif ftype == f.HEADERS:
                self._headers(data, flags, sid, fat, length)
            elif ftype == f.WINDOW_UPDATE:
                self._window_update(data, sid, fat, length)
            elif ftype == f.RST_STREAM:
                self._rst_stream(data, sid, fat, length)
            elif ftype == f.SETTINGS:
                self._settings(data, flags, sid, fat, length)
            elif ftype == f.PING:
                if length != 8:
                    raise WireError(f.FRAME_SIZE_ERROR, b"PING frame not 8 bytes")
                if sid:
                    raise WireError(f.PROTOCOL_ERROR, b"PING on a stream")
                if not flags & f.ACK:
                    self.out.append(_pack_head(0, 8, f.PING, f.ACK, 0) + data[fat + 9:fat + 17])
                    self.events.on_ping()
            elif ftype == f.CONTINUATION:
                self._continuation(data, flags, sid, fat, length)
            elif ftype == f.GOAWAY:
                if sid or length < 8:
                    raise WireError(f.PROTOCOL_ERROR if sid else f.FRAME_SIZE_ERROR, b"malformed GOAWAY")
                last = int.from_bytes(data[fat + 9:fat + 13], "big") & 0x7FFFFFFF
                self.events.on_goaway(last, int.from_bytes(data[fat + 13:fat + 17], "big"))
            elif ftype == f.PRIORITY:
                if length != 5:
                    self.reset(sid, f.FRAME_SIZE_ERROR)
                elif not sid:
                    raise WireError(f.PROTOCOL_ERROR, b"PRIORITY on stream 0")
            elif ftype == f.PUSH_PROMISE:
                raise WireError(f.PROTOCOL_ERROR, b"PUSH_PROMISE, which this end does not take")
        if end < 0:
            raise WireError(f.FRAME_SIZE_ERROR, b"frame larger than SETTINGS_MAX_FRAME_SIZE")
        if end < len(data):
            self.inbuf = data[end:]

    def _data(self, data: bytes, flags: int, sid: int, fat: int, length: int) -> None:
        if not sid:
            raise WireError(f.PROTOCOL_ERROR, b"DATA on stream 0")
        if length > self.recv_conn:
            raise WireError(FLOW_CONTROL_ERROR, b"DATA beyond the connection window")
        self.recv_conn -= length
        stream = self.streams.get(sid)
        if stream is None or stream.remote_ended or not stream.started:
            if self._idle(sid):
                raise WireError(f.PROTOCOL_ERROR, b"DATA on a stream not open")
            self._ack_connection(length)  # a stream just closed: nobody reads it, the window comes back
            if stream is not None:
                self.reset(sid, STREAM_CLOSED)
                self.events.on_reset(sid, STREAM_CLOSED)
            return
        if length > stream.recv:
            self._ack_connection(length)
            self.reset(sid, FLOW_CONTROL_ERROR)
            self.events.on_reset(sid, FLOW_CONTROL_ERROR)
            return
        stream.recv -= length
        start = fat + 9
        stop = start + length
        if flags & f.PADDED:
            if not length or data[start] >= length:
                raise WireError(f.PROTOCOL_ERROR, b"padding longer than the frame")
            stop -= data[start]
            start += 1
        end = bool(flags & f.END_STREAM)
        if stream.expect >= 0:  # a body longer or shorter than its content-length is malformed (RFC 9113 8.1.1):
            left = stream.expect - (stop - start)  # past an HTTP/1.1 app it would be a second request
            if left < 0 or (end and left):
                self._ack_connection(length)
                self.reset(sid, f.PROTOCOL_ERROR)
                self.events.on_reset(sid, f.PROTOCOL_ERROR)
                return
            stream.expect = left
        if end:
            stream.remote_ended = True
            if stream.local_ended:
                del self.streams[sid]
        self.events.on_data(sid, data[start:stop], length, end)

    def _idle(self, sid: int) -> bool:
        """No stream with this id was opened yet (frames other than HEADERS on it are errors)."""
        if self.client:
            return sid % 2 == 0 or sid >= self.next_sid
        return sid > self.highest

    def _headers(self, data: bytes, flags: int, sid: int, fat: int, length: int) -> None:
        if not sid:
            raise WireError(f.PROTOCOL_ERROR, b"HEADERS on stream 0")
        piece = f.fragment(data, f.HEADERS, flags, fat, length)
        if piece is None:
            raise WireError(f.PROTOCOL_ERROR, b"padding longer than the frame")
        if flags & f.END_HEADERS:
            self._block(sid, piece, bool(flags & f.END_STREAM))
            return
        self.block = [piece]
        self.block_sid = sid
        self.block_end = bool(flags & f.END_STREAM)
        self.block_count = 0

    def _continuation(self, data: bytes, flags: int, sid: int, fat: int, length: int) -> None:
        block = self.block
        if block is None or sid != self.block_sid:
            raise WireError(f.PROTOCOL_ERROR, b"CONTINUATION without a header block")
        self.block_count += 1
        if self.block_count > MAX_CONTINUATIONS:
            raise WireError(f.ENHANCE_YOUR_CALM, b"too many CONTINUATION frames")
        block.append(data[fat + 9:fat + 9 + length])
        if flags & f.END_HEADERS:
            self.block = None
            self._block(sid, b"".join(block), self.block_end)

    def _block(self, sid: int, block: bytes, end: bool) -> None:
        """A whole header block: decoded always (the decoder's table must see every block), then a
        request, a response, trailers, or dropped for a stream that is gone."""
        try:
            fields: Fields = self.decoder.decode(block, raw=True)
        except OversizedHeaderListError as exc:
            raise WireError(f.ENHANCE_YOUR_CALM, b"header list larger than SETTINGS_MAX_HEADER_LIST_SIZE") from exc
        except Exception as exc:
            raise WireError(f.COMPRESSION_ERROR, b"header block not decodable") from exc
        stream = self.streams.get(sid)
        if stream is None:
            if self.client or sid <= self.highest:
                if self.client and self._idle(sid):
                    raise WireError(f.PROTOCOL_ERROR, b"HEADERS on a stream this end did not open")
                if not self.client:  # a client reusing a closed stream's id is told so, not left waiting
                    self.out.append(_pack_window(0, 4, f.RST_STREAM, 0, sid, STREAM_CLOSED))
                return  # a stream that is over: its late blocks are read for the table, then dropped
            if not sid % 2:
                raise WireError(f.PROTOCOL_ERROR, b"stream id not a client's")
            self.highest = sid
            if self.max_streams and len(self.streams) >= self.max_streams:
                raise WireError(f.PROTOCOL_ERROR, b"more streams than SETTINGS_MAX_CONCURRENT_STREAMS")
            expect = content_length(fields)
            if request_problem(fields, False) or expect < -1 or (end and expect > 0):
                self.out.append(_pack_window(0, 4, f.RST_STREAM, 0, sid, f.PROTOCOL_ERROR))
                return
            stream = WireStream(self.peer_window, self.stream_window)
            stream.started = True
            stream.expect = expect
            stream.remote_ended = end
            self.streams[sid] = stream
            self.events.on_headers(sid, fields, end, True)
            return
        if stream.remote_ended:
            self.reset(sid, STREAM_CLOSED)
            self.events.on_reset(sid, STREAM_CLOSED)
            return
        if not stream.started:  # a client's stream: the response
            if fields and fields[0][0] == b":status" and fields[0][1][:1] == b"1" and not end:
                return  # informational (100 Continue, 103 Early Hints): not passed on
            stream.started = True
            if end:
                self._remote_end(sid, stream)
            self.events.on_headers(sid, fields, end, True)
            return
        if not end or (not self.client and (request_problem(fields, True) or stream.expect > 0)):
            self.reset(sid, f.PROTOCOL_ERROR)
            self.events.on_reset(sid, f.PROTOCOL_ERROR)
            return
        self._remote_end(sid, stream)
        self.events.on_headers(sid, fields, True, False)

    def _remote_end(self, sid: int, stream: WireStream) -> None:
        stream.remote_ended = True
        if stream.local_ended:
            del self.streams[sid]

    def _window_update(self, data: bytes, sid: int, fat: int, length: int) -> None:
        if length != 4:
            raise WireError(f.FRAME_SIZE_ERROR, b"WINDOW_UPDATE not 4 bytes")
        increment = int.from_bytes(data[fat + 9:fat + 13], "big") & 0x7FFFFFFF
        if not sid:
            if not increment:
                raise WireError(f.PROTOCOL_ERROR, b"WINDOW_UPDATE of 0")
            self.send_conn += increment
            if self.send_conn > MAX_WINDOW:
                raise WireError(FLOW_CONTROL_ERROR, b"connection window past 2^31-1")
            self.events.on_window(0)
            return
        stream = self.streams.get(sid)
        if stream is None:
            if self._idle(sid):
                raise WireError(f.PROTOCOL_ERROR, b"WINDOW_UPDATE on a stream not open")
            return
        if not increment:
            self.reset(sid, f.PROTOCOL_ERROR)
            self.events.on_reset(sid, f.PROTOCOL_ERROR)
            return
        stream.send += increment
        if stream.send > MAX_WINDOW:
            self.reset(sid, FLOW_CONTROL_ERROR)
            self.events.on_reset(sid, FLOW_CONTROL_ERROR)
            return
        self.events.on_window(sid)

    def _rst_stream(self, data: bytes, sid: int, fat: int, length: int) -> None:
        if length != 4:
            raise WireError(f.FRAME_SIZE_ERROR, b"RST_STREAM not 4 bytes")
        if not sid or self._idle(sid):
            raise WireError(f.PROTOCOL_ERROR, b"RST_STREAM on a stream not open")
        self.streams.pop(sid, None)
        self.events.on_reset(sid, int.from_bytes(data[fat + 9:fat + 13], "big"))

    def _settings(self, data: bytes, flags: int, sid: int, fat: int, length: int) -> None:
        if sid:
            raise WireError(f.PROTOCOL_ERROR, b"SETTINGS on a stream")
        if flags & f.ACK:
            if length:
                raise WireError(f.FRAME_SIZE_ERROR, b"SETTINGS acknowledgement with a payload")
            return
        if length % 6:
            raise WireError(f.FRAME_SIZE_ERROR, b"SETTINGS not a multiple of 6 bytes")
        window_changed = streams_changed = False
        for ident, value in f.settings(data[fat + 9:fat + 9 + length]):
            if ident == f.INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise WireError(FLOW_CONTROL_ERROR, b"SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1")
                delta = value - self.peer_window
                self.peer_window = value
                if delta:
                    window_changed = True
                    for stream in self.streams.values():
                        stream.send += delta
                        if stream.send > MAX_WINDOW:
                            raise WireError(FLOW_CONTROL_ERROR, b"a stream window past 2^31-1")
            elif ident == f.MAX_FRAME_SIZE:
                if not FRAME_BYTES <= value <= 2**24 - 1:
                    raise WireError(f.PROTOCOL_ERROR, b"SETTINGS_MAX_FRAME_SIZE out of range")
                self.max_outbound_frame_size = value
            elif ident == f.MAX_CONCURRENT_STREAMS:
                self.peer_max_streams = value
                streams_changed = True
            elif ident == f.HEADER_TABLE_SIZE:
                size = min(value, MAX_TABLE_BYTES)
                if size != self.encoder.header_table_size:  # the encoder signals every size it is set to
                    self.encoder.header_table_size = size
            elif ident == f.ENABLE_PUSH and (value > 1 or (value and self.client)):  # a server may only say 0
                raise WireError(f.PROTOCOL_ERROR, b"SETTINGS_ENABLE_PUSH not 0 or 1")
        self.out.append(_pack_head(0, 0, f.SETTINGS, f.ACK, 0))
        self.events.on_settings(window_changed, streams_changed)

    # -- output ------------------------------------------------------------------------------------

    def open_stream(self) -> int:
        """A client's new stream id (send its HEADERS next)."""
        sid = self.next_sid
        self.next_sid = sid + 2
        self.highest = sid
        self.streams[sid] = WireStream(self.peer_window, self.stream_window)
        return sid

    def send_headers(self, sid: int, fields: Fields, end_stream: bool = False) -> None:
        stream = self.streams.get(sid)
        if stream is None or stream.local_ended:
            return  # reset meanwhile
        block = self.encoder.encode(fields)
        size = self.max_outbound_frame_size
        flags = f.END_STREAM if end_stream else 0
        if len(block) <= size:
            self.out.append(_pack_head(0, len(block), f.HEADERS, flags | f.END_HEADERS, sid) + block)
        else:
            pieces = [block[i:i + size] for i in range(0, len(block), size)]
            out = self.out
            out.append(_pack_head(0, len(pieces[0]), f.HEADERS, flags, sid) + pieces[0])
            for i in range(1, len(pieces)):
                piece = pieces[i]
                out.append(_pack_head(0, len(piece), f.CONTINUATION,
                                      f.END_HEADERS if i == len(pieces) - 1 else 0, sid) + piece)
        if end_stream:
            self._local_end(sid, stream)

    def send_window(self, sid: int) -> int:
        """What may be sent on the stream now: the smaller of its window and the connection's."""
        stream = self.streams.get(sid)
        if stream is None or stream.local_ended:
            return 0
        return min(stream.send, self.send_conn)

    def send_data(self, sid: int, data: bytes, end_stream: bool = False) -> None:
        """``data`` on the stream (within ``send_window``, which the caller checked), in frames no larger
        than the peer takes."""
        stream = self.streams.get(sid)
        if stream is None or stream.local_ended:
            return
        n = len(data)
        stream.send -= n
        self.send_conn -= n
        size = self.max_outbound_frame_size
        out = self.out
        if n <= size:
            out.append(_pack_head(0, n, f.DATA, f.END_STREAM if end_stream else 0, sid))
            out.append(data)
        else:
            for i in range(0, n, size):
                piece = data[i:i + size]
                last = end_stream and i + size >= n
                out.append(_pack_head(0, len(piece), f.DATA, f.END_STREAM if last else 0, sid))
                out.append(piece)
        if end_stream:
            self._local_end(sid, stream)

    def end_stream(self, sid: int) -> None:
        self.send_data(sid, b"", True)

    def _local_end(self, sid: int, stream: WireStream) -> None:
        stream.local_ended = True
        if stream.remote_ended:
            del self.streams[sid]

    def reset(self, sid: int, code: int) -> None:
        """RST_STREAM (if the stream is still open here): it is over for the wire."""
        if self.streams.pop(sid, None) is not None:
            self.out.append(_pack_window(0, 4, f.RST_STREAM, 0, sid, code))

    def ack(self, flow: int, sid: int) -> None:
        """``flow`` bytes the peer sent on ``sid`` were passed on: its windows grow again, in updates of at
        least half a window (none for a stream that has ended its side)."""
        if flow <= 0:
            return
        unacked = self.unacked_conn + flow
        if unacked >= self.connection_window >> 1:
            self.out.append(_pack_window(0, 4, f.WINDOW_UPDATE, 0, 0, unacked))
            self.recv_conn += unacked
            unacked = 0
        self.unacked_conn = unacked
        stream = self.streams.get(sid)
        if stream is not None and not stream.remote_ended:
            unacked = stream.unacked + flow
            if unacked >= self.stream_window >> 1:
                self.out.append(_pack_window(0, 4, f.WINDOW_UPDATE, 0, sid, unacked))
                stream.recv += unacked
                unacked = 0
            stream.unacked = unacked

    def _ack_connection(self, flow: int) -> None:
        self.ack(flow, 0)

    def goaway(self, last_sid: int, code: int, why: bytes = b"") -> None:
        self.out.append(f.goaway(last_sid, code, why))

    def data_to_send(self) -> bytes:
        out = self.out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data
