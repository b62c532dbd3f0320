"""The HTTP/2 relay: a client connection whose streams go to one h2c app, passed frame by frame to a
connection of its own to that app, with no protocol stack in between (docs/http2.md, "Relay mode").

The two legs are one HTTP/2 connection end to end: the client's preface and SETTINGS reach the app, the
app's SETTINGS reach the client, stream ids are the same on both, and so are the HPACK contexts. The
proxy reads only frame headers (``scan_frames``, in C where built) and the header blocks: each block of
the client's is decoded (the routing of every new stream, and the decoder has to see every block to
keep its table), each of the app's too (the status a stream is counted with). What it changes: a new
stream's block gets the forwarded headers appended as HPACK literals that leave both tables as they
were; the app's SETTINGS are capped by the proxy's limits (concurrent streams, header list size, frame
and table sizes). Flow control is the two ends' own: nothing is buffered but a read, and a leg whose
socket does not drain stops the other from being read.

Per stream it keeps what the full stack does: counted in flight in the backend's counters from HEADERS
to the end of the response or a reset either way; the limits a hostile client tests (streams, header
list size, CONTINUATION count, RST_STREAM and PING/SETTINGS rates) from frame headers and the decoder.

It is chosen by ``plan`` at the hand-over only when the first read has the whole preface and requests
that all go to one h2c app with a ready endpoint. A later stream that needs more (another app, no
route, a cold app, CONNECT, forwarded headers the rule would rewrite) is refused with REFUSED_STREAM
and GOAWAY, which clients retry on a new connection, and that client's next connections take the full
stack (downstream.py). From the first refused block on, the app's decoder misses that block, so blocks
still sent on older streams (request trailers) go re-encoded as literals.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from jh2._hazmat import (  # jh2's HPACK decoder in Rust: docs/http2.md, "Reading the header blocks"
    Decoder,
    OversizedHeaderListError,
)

from kedahttp.proxy.forwarded import FORWARDED_NAMES, forwarded_fields
from kedahttp.proxy.h2 import frames as f
from kedahttp.proxy.h2.ends import linger
from kedahttp.proxy.h2.frames import Frame

try:
    from kedahttp.proxy._frames import request_problem, scan_frames
except ImportError:  # built without the extension (KEDAHTTP_COMPILE=0, no compiler)
    from kedahttp.proxy.h2.frames import request_problem, scan_frames

if TYPE_CHECKING:
    from kedahttp.proxy.routing import Route

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_FRAME_BYTES = 16384  # the largest frame the client may send (the app's SETTINGS are capped to it)
TABLE_BYTES = 4096  # HPACK dynamic table size either way (both sides' SETTINGS are capped to it)
MAX_CONTINUATIONS = 64  # CONTINUATION frames in one header block before the connection ends
# the client's SETTINGS on their way to the app: no server push (the proxy does not relay it), and frames
# and HPACK table no larger than the relay's own bounds
CLIENT_CAPS = {f.ENABLE_PUSH: 0, f.MAX_FRAME_SIZE: MAX_FRAME_BYTES, f.HEADER_TABLE_SIZE: TABLE_BYTES}
WAIT_BYTES = 65536  # what a connection may send before its first request and still be relayed
WAIT_READS = 16  # ... in at most this many reads (each one is planned over all of it again)
_clock = time.monotonic


class RelayError(Exception):
    """The client broke the protocol or a limit: the connection ends with GOAWAY ``code``."""

    def __init__(self, code: int, why: bytes) -> None:
        super().__init__(why)
        self.code = code
        self.why = why


def _request_fields(decoder: Any, block: bytes) -> dict[bytes, bytes] | None:
    """The fields of a request block that routing needs; None if it has any the relay cannot pass
    untouched (a forwarded header, which the full stack rewrites) or is malformed (the full stack resets
    it: RFC 9113 8.2-8.3, the same check as the full stack's)."""
    fields = decoder.decode(block, raw=True)
    if request_problem(fields, False):
        return None
    out: dict[bytes, bytes] = {}
    for name, value, _ in fields:
        if name in FORWARDED_NAMES:
            return None
        if name[0] == 58 or name == b"host":  # ":"
            out[name] = value
    return out


def _route_of(side: Any, fields: dict[bytes, bytes]) -> Route | None:
    """The route a new stream goes to, if the relay can take it there: an h2c app with a ready endpoint."""
    authority = fields.get(b":authority") or fields.get(b"host", b"")
    path = fields.get(b":path", b"")
    if not authority or not path or fields.get(b":method") == b"CONNECT":
        return None
    route = side.routes.lookup(authority, path)
    if route is None or route.state is None or not route.endpoints or route.backend.protocol != "h2c":
        return None
    return route


WAIT = "wait"  # plan: no request yet


def plan(side: Any, data: bytes) -> Route | str | None:
    """The route a connection's streams all go to, judged from what was read of it (``data``, preface
    included), if the relay can carry the connection; None if it cannot (the full stack takes it); WAIT
    while no request came yet."""
    if not data.startswith(PREFACE):
        return None
    found, end = scan_frames(data, len(PREFACE), MAX_FRAME_BYTES, False)
    if end < 0:
        return None
    decoder = Decoder(side.limits.max_header_list_bytes)
    route = None
    for ftype, flags, _, at, length in found:
        if ftype == f.CONTINUATION or (ftype == f.HEADERS and not flags & f.END_HEADERS):
            return None  # a block in pieces: left to the full stack
        if ftype == f.PING and route is None and not flags & f.ACK:
            return None  # to be answered now, before there is an app to answer it
        if ftype != f.HEADERS:
            continue
        block = f.fragment(data, ftype, flags, at, length)
        if block is None:
            return None
        try:
            fields = _request_fields(decoder, block)
        except Exception:
            return None
        this = None if fields is None else _route_of(side, fields)
        if this is None or (route is not None and this is not route):
            return None
        route = this
    return WAIT if route is None else route


class RelayStream:
    __slots__ = ("counters", "status", "t_start")

    def __init__(self, counters: Any, t_start: float) -> None:
        self.counters = counters
        self.t_start = t_start
        self.status = 0


class Upstream(asyncio.Protocol):
    """The app's leg of a relay."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.relay.from_app(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.app_lost()

    def pause_writing(self) -> None:
        self.relay.pause_client()

    def resume_writing(self) -> None:
        self.relay.resume_client()


class Relay(asyncio.Protocol):
    """The client's leg of a relay, and the relay itself."""

    def __init__(self, side: Any, client_ip: bytes, trusted: bool) -> None:
        self.side = side
        self.route: Route | None = None  # the app the connection is relayed to, once its first request came
        self.client_ip = client_ip
        self.trusted = trusted
        self.transport: Any = None
        self.up = Upstream(self)
        self.streams: dict[int, RelayStream] = {}
        self.since = 0.0
        self.born = 0.0
        self.raw: list[bytes] | None = []  # the client's bytes until the app's connection is made
        self.own_acks = 0  # SETTINGS of ours the client has yet to acknowledge (not the app's to see)
        self.inbuf = b""  # client bytes short of a whole frame
        self.appbuf = b""
        self.decoder = Decoder(side.limits.max_header_list_bytes)  # the client's blocks
        self.app_decoder = Decoder()  # the app's blocks
        self.block: list[bytes] | None = None  # a client header block in pieces: its frames so far
        self.block_frames: list[bytes] = []
        self.block_sid = 0
        self.block_flags = 0
        self.preface_seen = False
        self.app_acked = False  # the app acknowledged the client's SETTINGS
        self.goaway_waiting = False  # a graceful GOAWAY to send once it has
        self.app_block: list[bytes] | None = None
        self.app_block_sid = 0
        self.app_block_flags = 0
        self.max_sid = 0  # the highest stream id taken
        self.refused: set[int] = set()  # streams refused: the app never saw them
        self.refusing = False  # GOAWAY sent: new streams refused
        self.desynced = False  # a block of the client's was not passed on: later ones go as literals
        self.closing = False
        self.lingering = False
        self.client_paused = False
        self.window_start = 0.0
        self.resets = 0
        self.control = 0
        self.appended: dict[bytes, bytes] = {}  # authority -> the forwarded fields' literal block

    # -- the hand-over and the app's connection ----------------------------------------------------

    def start(self, transport: Any, data: bytes, route: Route | None) -> None:
        """Takes the connection from the hand-over: ``data`` is what was read of it (preface included);
        ``route`` where its first requests go, or None if none came yet. Some clients (grpcio) send no
        request before they have the server's SETTINGS: those get a SETTINGS of ours that asks nothing
        but the limits (so that neither the app nor the full stack, whichever takes the connection,
        finds the client assuming anything else), and its acknowledgement is kept from the app."""
        self.transport = transport
        self.born = self.since = self.window_start = _clock()
        self.side.connections.add(self)
        self.raw = [data]
        if route is not None:
            self._connect_to(route)
            return
        limits = self.side.limits
        self.own_acks = 1
        transport.write(f.frame(f.SETTINGS, 0, 0, b"".join(
            ident.to_bytes(2, "big") + value.to_bytes(4, "big") for ident, value in (
                (f.MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams),
                (f.MAX_HEADER_LIST_SIZE, limits.max_header_list_bytes)))))

    def _undecided(self, data: bytes) -> None:
        """More of a connection that has sent no request yet."""
        assert self.raw is not None
        self.raw.append(data)
        whole = b"".join(self.raw)
        route = plan(self.side, whole)  # over all of it again: a few reads (WAIT_READS) at most
        if route is WAIT and len(whole) <= WAIT_BYTES and len(self.raw) <= WAIT_READS:
            return
        if isinstance(route, str) or route is None:
            self._to_full_stack(whole)
            return
        self.raw = [whole]
        self._connect_to(route)

    def _to_full_stack(self, data: bytes) -> None:
        self.raw = None
        self.side.connections.discard(self)
        self.side.full_stack(self.transport, data, self.client_ip, self.trusted)

    def _connect_to(self, route: Route) -> None:
        self.route = route
        self.transport.pause_reading()  # until the app's connection is made
        self.side.pool.tasks.spawn(self._connect(), "relay " + route.key)

    async def _connect(self) -> None:
        route = self.route
        assert route is not None
        endpoints = route.endpoints
        ok = False
        if endpoints:
            i = route.rr
            route.rr = i + 1
            host, _, port = endpoints[i % len(endpoints)].rpartition(":")
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(route.limits.connect_timeout_seconds):  # the app's, as everywhere
                    await loop.create_connection(lambda: self.up, host.strip("[]"), int(port))
                ok = True
            except (OSError, TimeoutError):
                pass
        raw, self.raw = self.raw, None
        assert raw is not None
        if self.transport.is_closing():
            if ok:
                self.up.transport.close()
            self.side.connections.discard(self)
            return
        if not ok:  # the full stack takes the connection (another endpoint, or the 502 it answers)
            self._to_full_stack(b"".join(raw))
            return
        self.side.relayed += 1
        self.transport.resume_reading()
        self.data_received(b"".join(raw))
        if self.side.draining:
            self.goaway()

    # -- asyncio.Protocol, the client's leg --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.raw is not None:
            if self.route is None:
                self._undecided(data)
            else:
                self.raw.append(data)
            return
        if self.lingering:
            return
        if self.inbuf:
            data = self.inbuf + data
            self.inbuf = b""
        start = 0
        if not self.preface_seen:  # the first bytes, from the hand-over: the whole preface (plan checked)
            self.preface_seen = True
            start = len(PREFACE)
        try:
            out = self._from_client(data, start)
        except RelayError as exc:
            self.calm(exc.code, exc.why)
            return
        up = self.up.transport
        if out and up is not None and not up.is_closing():
            up.write(out)
        self._maybe_close()

    def _from_client(self, data: bytes, start: int) -> bytes:
        pieces: list[bytes] = []
        at = 0  # data[at:] not yet copied to pieces
        end = start
        while True:
            # every frame is looked at while a block is open (nothing may come between its frames) or a
            # refused stream may still send (the app must see none of its frames)
            every = bool(self.refused) or self.block is not None
            found, end = scan_frames(data, end, MAX_FRAME_BYTES, every)
            if end < 0:
                raise RelayError(f.FRAME_SIZE_ERROR, b"frame larger than SETTINGS_MAX_FRAME_SIZE")
            rescan = -1
            for ftype, flags, sid, fat, length in found:
                if self.block is not None and ftype != f.CONTINUATION:
                    raise RelayError(f.PROTOCOL_ERROR, b"header block interrupted")
                fend = fat + 9 + length
                if ftype == f.HEADERS or ftype == f.CONTINUATION:
                    pieces.append(data[at:fat])
                    at = fend
                    whole = self._header_frame(data, (ftype, flags, sid, fat, length))
                    if whole is not None:
                        pieces.append(whole)
                    if not every and (self.refused or self.block is not None):
                        rescan = fend
                        break
                    continue
                if sid and sid in self.refused:  # the app never saw the stream: none of its frames go
                    pieces.append(data[at:fat])
                    at = fend
                    if ftype == f.DATA and length:  # its window given back
                        self._to_client(f.window_update(0, length))
                    if (ftype == f.DATA and flags & f.END_STREAM) or ftype == f.RST_STREAM:
                        self.refused.discard(sid)
                    continue
                if ftype == f.RST_STREAM:
                    self._count_reset()
                    stream = self.streams.pop(sid, None)
                    if stream is not None:
                        self._finish(stream, 499)
                elif ftype == f.SETTINGS:
                    if flags & f.ACK and self.own_acks:  # of our SETTINGS (start): not the app's
                        self.own_acks -= 1
                        pieces.append(data[at:fat])
                        at = fend
                    elif not flags & f.ACK:
                        self._count_control()
                        if length % 6:
                            raise RelayError(f.FRAME_SIZE_ERROR, b"SETTINGS length not a multiple of 6")
                        pieces.append(data[at:fat])
                        at = fend
                        capped, _ = f.capped_settings(data[fat + 9:fend], CLIENT_CAPS, required=(f.ENABLE_PUSH,))
                        pieces.append(capped)
                elif ftype == f.PING:
                    if not flags & f.ACK:
                        self._count_control()
                elif ftype == f.GOAWAY:
                    self.closing = True
            if rescan < 0:
                break
            end = rescan
        self.inbuf = data[end:]
        pieces.append(data[at:end])
        return b"".join(pieces)

    def _header_frame(self, data: bytes, fr: Frame) -> bytes | None:
        """A HEADERS or CONTINUATION frame of the client's: what goes to the app for it once its block is
        whole (None while it is not, or for a refused stream)."""
        ftype, flags, sid, fat, length = fr
        piece = f.fragment(data, ftype, flags, fat, length)
        if piece is None:
            raise RelayError(f.PROTOCOL_ERROR, b"padding longer than the frame")
        raw = data[fat:fat + 9 + length]
        if ftype == f.CONTINUATION:
            if self.block is None or sid != self.block_sid:
                raise RelayError(f.PROTOCOL_ERROR, b"CONTINUATION without a header block")
            self.block.append(piece)
            self.block_frames.append(raw)
            if len(self.block_frames) > MAX_CONTINUATIONS:
                raise RelayError(f.ENHANCE_YOUR_CALM, b"too many CONTINUATION frames")
            if not flags & f.END_HEADERS:
                return None
            block = b"".join(self.block)
            frames_ = self.block_frames
            sid = self.block_sid
            flags = self.block_flags
            self.block = None
            self.block_frames = []
        elif not flags & f.END_HEADERS:
            self.block = [piece]
            self.block_frames = [raw]
            self.block_sid = sid
            self.block_flags = flags
            return None
        else:
            block = piece
            frames_ = [raw]
        return self._header_block(sid, flags, block, frames_)

    def _header_block(self, sid: int, flags: int, block: bytes, frames_: list[bytes]) -> bytes | None:
        if sid in self.streams or (sid <= self.max_sid and sid not in self.refused):  # trailers
            trailers = self._decode(block)
            if request_problem(trailers, True):
                raise RelayError(f.PROTOCOL_ERROR, b"malformed request trailers")
            if self.desynced:  # the app's table missed a block: these go as literals
                literal = f.literal_block([(n, v) for n, v, _ in trailers])
                return f.frame(f.HEADERS, (flags & f.END_STREAM) | f.END_HEADERS, sid, literal)
            return b"".join(frames_)
        if sid in self.refused:  # trailers of a refused stream: read for the table, dropped
            self._decode(block)
            if flags & f.END_STREAM:
                self.refused.discard(sid)
            return None
        if sid % 2 == 0 or sid == 0:
            raise RelayError(f.PROTOCOL_ERROR, b"stream id not a client's")
        try:
            fields = _request_fields(self.decoder, block)
        except OversizedHeaderListError as exc:
            raise RelayError(f.ENHANCE_YOUR_CALM, b"header list larger than SETTINGS_MAX_HEADER_LIST_SIZE") from exc
        except Exception as exc:
            raise RelayError(f.COMPRESSION_ERROR, b"header block not decodable") from exc
        route = None if fields is None else _route_of(self.side, fields)
        key = self.route.key if self.route is not None else ""
        if self.refusing or self.closing or route is None or route.key != key:
            self._refuse(sid, mixed=route is not None and route.key != key)
            return None
        if len(self.streams) >= self.side.limits.max_concurrent_streams:
            raise RelayError(f.PROTOCOL_ERROR, b"more streams than SETTINGS_MAX_CONCURRENT_STREAMS")
        assert fields is not None
        self.max_sid = sid
        t = _clock()
        stream = RelayStream(route.state.counters, t)
        self.streams[sid] = stream
        stream.counters.start(t)
        # the block as it came, then a CONTINUATION with the forwarded headers; END_HEADERS moves to it
        last = frames_[-1]
        frames_[-1] = last[:4] + bytes((last[4] & ~f.END_HEADERS,)) + last[5:]
        authority = fields.get(b":authority") or fields.get(b"host", b"")
        extra = self.appended.get(authority)
        if extra is None:
            extra = f.literal_block(forwarded_fields({}, [], self.trusted, self.client_ip, b"http", authority))
            if len(self.appended) < 64:
                self.appended[authority] = extra
        return b"".join(frames_) + f.frame(f.CONTINUATION, f.END_HEADERS, sid, extra)

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes, bool]]:
        try:
            return self.decoder.decode(block, raw=True)  # type: ignore[no-any-return]
        except Exception as exc:
            raise RelayError(f.COMPRESSION_ERROR, b"header block not decodable") from exc

    def _refuse(self, sid: int, mixed: bool) -> None:
        """A stream the relay cannot carry: GOAWAY naming the last stream taken, so this one and any after it
        were not processed and the client retries them on a new connection (gRPC clients do so by
        themselves); one opened before the client read the GOAWAY gets REFUSED_STREAM. A client mixing apps
        gets the full stack next time."""
        self.desynced = True
        self.refused.add(sid)
        if self.refusing:
            self._count_reset()  # streams opened after the GOAWAY count as resets: no flood of them either
            self._to_client(f.rst_stream(sid, f.REFUSED_STREAM))
            return
        self.refusing = True
        self.goaway_waiting = False
        self._to_client(f.goaway(self.max_sid, f.NO_ERROR))
        if mixed:
            self.side.mixed_client(self.client_ip)

    # -- from the app ------------------------------------------------------------------------------

    def from_app(self, data: bytes) -> None:
        if self.appbuf:
            data = self.appbuf + data
            self.appbuf = b""
        found, end = scan_frames(data, 0, MAX_FRAME_BYTES, self.app_block is not None)
        if end < 0:  # past the MAX_FRAME_SIZE the client was made to ask for
            self.app_lost()
            return
        self.appbuf = data[end:]
        pieces: list[bytes] = []
        at = 0
        for ftype, flags, sid, fat, length in found:
            fend = fat + 9 + length
            if ftype == f.HEADERS or ftype == f.CONTINUATION:
                piece = f.fragment(data, ftype, flags, fat, length)
                if piece is None:
                    self.app_lost()
                    return
                if ftype == f.HEADERS:
                    self.app_block = [piece]
                    self.app_block_sid = sid
                    self.app_block_flags = flags
                elif self.app_block is not None:
                    self.app_block.append(piece)
                if flags & f.END_HEADERS and self.app_block is not None:
                    self._app_headers(b"".join(self.app_block))
                    self.app_block = None
            elif ftype == f.DATA:
                stream = self.streams.pop(sid, None) if flags & f.END_STREAM else None
                if stream is not None:
                    self._finish(stream, stream.status or 200)
            elif ftype == f.RST_STREAM:
                stream = self.streams.pop(sid, None)
                if stream is not None:
                    self._finish(stream, stream.status or 502)
            elif ftype == f.SETTINGS and flags & f.ACK:
                self.app_acked = True
            elif ftype == f.SETTINGS and not length % 6:
                pieces.append(data[at:fat])
                at = fend
                limits = self.side.limits
                capped, _ = f.capped_settings(
                    data[fat + 9:fend],
                    {f.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                     f.MAX_HEADER_LIST_SIZE: limits.max_header_list_bytes,
                     f.MAX_FRAME_SIZE: MAX_FRAME_BYTES, f.HEADER_TABLE_SIZE: TABLE_BYTES},
                    required=(f.MAX_CONCURRENT_STREAMS, f.MAX_HEADER_LIST_SIZE), dropped=(f.ENABLE_CONNECT_PROTOCOL,))
                pieces.append(capped)
            elif ftype == f.GOAWAY:
                self.closing = True
            elif ftype == f.PUSH_PROMISE:  # the client was made to refuse pushes (CLIENT_CAPS)
                self.app_lost()
                return
        pieces.append(data[at:end])
        if self.goaway_waiting and self.app_acked:
            self.goaway_waiting = False
            pieces.append(f.goaway(self.max_sid, f.NO_ERROR))
        self._to_client(b"".join(pieces))
        self._maybe_close()

    def _app_headers(self, block: bytes) -> None:
        sid = self.app_block_sid
        try:
            fields = self.app_decoder.decode(block, raw=True)
        except Exception:
            self.app_lost()
            return
        stream = self.streams.get(sid)
        if stream is None:
            return
        if not stream.status:
            for name, value, _ in fields:
                if name == b":status":
                    status = int(value) if value.isdigit() else 502
                    if status >= 200:
                        stream.status = status
                    break
        if self.app_block_flags & f.END_STREAM:
            del self.streams[sid]
            self._finish(stream, stream.status or 502)

    def app_lost(self) -> None:
        """The app's connection closed or broke: open streams are reset, the client's connection ends."""
        up = self.up.transport
        if up is not None and not up.is_closing():
            up.close()
        if self.transport is None or self.transport.is_closing():
            return
        out = b"".join(f.rst_stream(sid, f.INTERNAL_ERROR) for sid in self.streams)
        for stream in list(self.streams.values()):
            self._finish(stream, stream.status or 502)
        self.streams.clear()
        self._to_client(out + f.goaway(self.max_sid, f.NO_ERROR))
        self.transport.close()

    # -- the client's connection -------------------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self.side.connections.discard(self)
        for stream in list(self.streams.values()):
            self._finish(stream, 499)
        self.streams.clear()
        up = self.up.transport
        if up is not None and not up.is_closing():
            up.close()
        self.side.connection_quiet()

    def eof_received(self) -> bool | None:
        return False

    def pause_writing(self) -> None:
        up = self.up.transport
        if up is not None and not up.is_closing():
            up.pause_reading()

    def resume_writing(self) -> None:
        up = self.up.transport
        if up is not None and not up.is_closing():
            up.resume_reading()

    def pause_client(self) -> None:
        if not self.lingering and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_client(self) -> None:
        if not self.lingering and not self.transport.is_closing():
            self.transport.resume_reading()

    def _to_client(self, data: bytes) -> None:
        if data and not self.transport.is_closing() and not self.lingering:  # after FIN, nothing more
            self.transport.write(data)

    def _finish(self, stream: RelayStream, status: int) -> None:
        """The stream is over (already out of ``streams``): counted. A connection going away closes once
        the writes of the read being handled are out (``_maybe_close``)."""
        stream.counters.finish(_clock(), stream.t_start, status)
        if not self.streams:
            self.since = _clock()
            self.side.connection_quiet()

    def _maybe_close(self) -> None:
        if (self.closing or self.refusing) and not self.streams and not self.goaway_waiting:
            self._close_when_quiet()

    def _close_when_quiet(self) -> None:
        """The connection is done: the app's leg closes; the client's gets FIN, and its input is dropped
        until it closes too (``ends.linger``), so a last WINDOW_UPDATE of its cannot turn the close
        into a reset that loses what it has not read yet."""
        up = self.up.transport
        if up is not None and not up.is_closing():
            up.close()
        self._linger()

    def _linger(self) -> None:
        if self.transport is None or self.transport.is_closing() or self.lingering:
            return
        self.lingering = True
        linger(self.transport)

    # -- limits ------------------------------------------------------------------------------------

    def _flooded(self) -> bool:
        now = _clock()
        if now - self.window_start >= 1.0:
            self.window_start = now
            self.resets = self.control = 0
            return False
        return True

    def _count_reset(self) -> None:
        self.resets += 1
        if self._flooded() and self.resets > self.side.limits.resets_per_second:
            raise RelayError(f.ENHANCE_YOUR_CALM, b"too many stream resets")

    def _count_control(self) -> None:
        self.control += 1
        if self._flooded() and self.control > self.side.limits.control_frames_per_second:
            raise RelayError(f.ENHANCE_YOUR_CALM, b"too many control frames")

    def calm(self, code: int, why: bytes) -> None:
        """GOAWAY for an error, then a lingering close (downstream.py's, for the same reason); the app's
        connection closes, which resets its streams there."""
        if self.lingering or self.transport.is_closing():
            return
        self.transport.write(f.goaway(self.max_sid, code, why))
        for stream in list(self.streams.values()):
            self._finish(stream, 499)
        self.streams.clear()
        self._close_when_quiet()

    # -- called by the side ------------------------------------------------------------------------

    def goaway(self) -> None:
        """Graceful: GOAWAY(NO_ERROR) naming the last stream taken; those run to their end."""
        if self.raw is not None and self.route is None:  # no request came: nothing to let finish
            self.refusing = self.closing = True
            self._to_client(f.goaway(0, f.NO_ERROR))
            self._close_when_quiet()
            return
        if self.refusing or self.raw is not None:
            return
        self.refusing = self.closing = True
        if self.app_acked:
            self._to_client(f.goaway(self.max_sid, f.NO_ERROR))
        else:  # after the app's acknowledgement of the client's SETTINGS, which some clients need first
            self.goaway_waiting = True
        self._maybe_close()
