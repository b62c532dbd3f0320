"""HTTP/2 connections to apps that speak h2c, shared by all client streams going to the same endpoint.

One connection carries as many streams as the app's SETTINGS_MAX_CONCURRENT_STREAMS allows; a stream
that finds every connection to its endpoint full opens another. A connection being set up collects the
streams that wait for it and opens them once the TCP connect is done. GOAWAY from the app refuses the
streams above its last stream id (the client retries them: REFUSED_STREAM) and lets the rest finish; the
connection is then no longer given new streams.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kedahttp.process.tasks import TaskOwner
from kedahttp.proxy.h2.ends import StreamEnd
from kedahttp.proxy.h2.stream import send_window
from kedahttp.proxy.h2.wire import Fields, Wire, WireError

if TYPE_CHECKING:
    from kedahttp.proxy.h2.stream import Stream

log = logging.getLogger("kedahttp.proxy.h2")

STREAM_WINDOW_BYTES = 256 * 1024  # what the app may send on one stream ahead of the client reading it
CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024
ASSUMED_STREAMS = 100  # streams a connection is given before the app's SETTINGS say how many it takes
IDLE_TIMEOUT_SECONDS = 30.0  # an upstream connection without a stream this long is closed (as HTTP/1.1's)


async def dial(stream: Stream, protocol: asyncio.Protocol) -> None:
    """Connects ``protocol`` to the stream's endpoint within its app's connect timeout (the route's limits,
    as for HTTP/1.1 clients: upstream.py); raises OSError or TimeoutError. Only routed streams are sent."""
    route = stream.route
    assert route is not None
    host, _, port = stream.endpoint.rpartition(":")
    async with asyncio.timeout(route.limits.connect_timeout_seconds):
        await asyncio.get_running_loop().create_connection(lambda: protocol, host.strip("[]"), int(port))


class H2Upstream(StreamEnd):
    def __init__(self, pool: H2UpstreamPool, endpoint: str) -> None:
        self.pool = pool
        self.endpoint = endpoint
        # The app's headers are not checked field by field (the client's are, by the client's wire): they
        # are relayed as the app sent them.
        self.wire = Wire(self, True, stream_window=STREAM_WINDOW_BYTES, connection_window=CONNECTION_WINDOW_BYTES)
        self.transport: Any = None
        self.streams: dict[int, Stream] = {}
        self.pending: list[Stream] = []  # waiting for the connect, or for a free stream slot
        self.writable = True
        self.usable = True  # takes new streams (not after GOAWAY or a failure)
        self.connected = False
        self.idle_since = time.monotonic()

    @property
    def capacity(self) -> int:
        if not self.connected:
            return ASSUMED_STREAMS
        return min(self.wire.peer_max_streams, 2**20)

    def has_room(self) -> bool:
        return self.usable and len(self.streams) + len(self.pending) < self.capacity

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.connected = True
        self.wire.initiate()
        self.open_pending()
        self.flush()

    def data_received(self, data: bytes) -> None:
        wire = self.wire
        try:
            wire.receive(data)
        except WireError as exc:
            log.warning("upstream HTTP/2 protocol error", extra={"endpoint": self.endpoint, "error": exc.why.decode()})
            wire.goaway(wire.highest, exc.code, exc.why)
            self.flush()
            self.transport.close()
            return
        if wire.out:
            self.dirty()  # PING and SETTINGS acknowledgements, window updates
        self.pool.side_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self.pool.forget(self)
        for stream in self.pending:
            stream.upstream_lost()
        self.pending = []
        for stream in list(self.streams.values()):
            stream.upstream_lost()
        self.streams.clear()
        self.pool.side_flush()

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        for stream in list(self.streams.values()):
            stream.pump_up()
        self.pool.side_flush()

    # -- streams -----------------------------------------------------------------------------------

    def start(self, stream: Stream) -> None:
        """Opens ``stream`` here now, or once connected or a slot frees up."""
        if self.connected and len(self.streams) < self.capacity:
            self._open(stream)
        else:
            self.pending.append(stream)

    def _open(self, stream: Stream) -> None:
        wire = self.wire
        usid = wire.open_stream()
        end = stream.up_end and not stream.to_up and stream.up_trailers is None
        wire.send_headers(usid, stream.head, end)
        if end:
            stream.up_ended = True
        self.streams[usid] = stream
        stream.attached(self, usid)
        self.dirty()

    def open_pending(self) -> None:
        pending = self.pending
        while pending and len(self.streams) < self.capacity:
            stream = pending.pop(0)
            if not stream.done:
                self._open(stream)

    def stream_done(self, stream: Stream) -> None:
        if stream in self.pending:
            self.pending.remove(stream)
            return
        if self.streams.pop(stream.usid, None) is None:
            return
        if self.pending:
            self.open_pending()
        elif not self.streams:
            self.idle_since = time.monotonic()
            if not self.usable and self.transport is not None:
                self.transport.close()

    def pump(self, stream: Stream) -> None:
        """The stream's request body (then its trailers or END_STREAM) as far as the app's window allows."""
        wire = self.wire
        usid = stream.usid
        q = stream.to_up
        if q:
            send_window(wire, usid, q, stream.down, stream.sid)
        if not q and stream.up_end and not stream.up_ended:
            stream.up_ended = True
            if stream.up_trailers is not None:
                wire.send_headers(usid, stream.up_trailers, True)
            else:
                wire.end_stream(usid)
        self.dirty()

    def ack(self, flow: int, usid: int) -> None:
        wire = self.wire
        wire.ack(flow, usid)
        if wire.out:
            self.dirty()

    def reset(self, usid: int, code: int) -> None:
        if usid in self.streams:
            self.wire.reset(usid, code)
            self.dirty()

    def dirty(self) -> None:
        self.pool.dirty.add(self)

    def flush(self) -> None:
        transport = self.transport
        if transport is not None:
            data = self.wire.data_to_send()
            if data and not transport.is_closing():
                transport.write(data)

    # -- events ------------------------------------------------------------------------------------

    def on_headers(self, sid: int, fields: Fields, end: bool, first: bool) -> None:
        if not first:
            self._trailers(sid, fields)
            return
        stream = self.streams.get(sid)
        if stream is not None:
            stream.response(fields, end)

    def _stream_data(self, stream: Stream, data: bytes, flow: int) -> None:
        stream.upstream_data(data, flow)

    def _stream_end(self, stream: Stream, trailers: Fields | None) -> None:
        stream.upstream_end(trailers)

    def on_reset(self, sid: int, code: int) -> None:
        stream = self.streams.pop(sid, None)
        if stream is not None:
            stream.upstream_reset(code)

    def _pump(self, stream: Stream) -> None:
        stream.pump_up()

    def _waiting(self, stream: Stream) -> bool:
        return bool(stream.to_up) or (stream.up_end and not stream.up_ended)

    def on_settings(self, window_changed: bool, streams_changed: bool) -> None:
        if streams_changed and self.pending:
            self.open_pending()
        if window_changed:
            for stream in list(self.streams.values()):
                stream.pump_up()

    def on_ping(self) -> None:
        return

    def on_goaway(self, last_sid: int, code: int) -> None:
        self.usable = False
        for usid in [s for s in self.streams if s > last_sid]:
            self.streams.pop(usid).upstream_refused()
        for stream in self.pending:
            self.pool.start(stream)  # to another connection
        self.pending = []
        if code:
            self.transport.close()
            return
        if not self.streams:
            self.transport.close()


class H2UpstreamPool:
    """Connections per endpoint; streams go to the first with a free slot."""

    def __init__(self, side_flush: Callable[[], None], on_unreachable: Callable[[Stream], None]) -> None:
        self.conns: dict[str, list[H2Upstream]] = {}
        self.dirty: set[H2Upstream] = set()
        self.side_flush = side_flush
        self.on_unreachable = on_unreachable
        self.tasks = TaskOwner("h2-upstream")
        self.idle_timeout_seconds = IDLE_TIMEOUT_SECONDS

    def start(self, stream: Stream) -> None:
        endpoint = stream.endpoint
        conns = self.conns.get(endpoint)
        if conns:
            for up in conns:
                if up.has_room():
                    up.start(stream)
                    return
        else:
            conns = self.conns[endpoint] = []
        up = H2Upstream(self, endpoint)
        conns.append(up)
        up.pending.append(stream)
        self.tasks.spawn(self._connect(up, stream), f"connect {endpoint}")

    async def _connect(self, up: H2Upstream, stream: Stream) -> None:
        """Opens ``up`` for the streams that wait for it, within the connect timeout of the app of ``stream``,
        the first of them (the streams to one endpoint are one app's)."""
        try:
            await dial(stream, up)
        except (OSError, TimeoutError):
            up.usable = False
            self.forget(up)
            pending, up.pending = up.pending, []
            for stream in pending:
                if not stream.done:
                    self.on_unreachable(stream)
            self.side_flush()

    def forget(self, up: H2Upstream) -> None:
        conns = self.conns.get(up.endpoint)
        if conns and up in conns:
            conns.remove(up)
            if not conns:
                del self.conns[up.endpoint]

    def flush(self) -> None:
        dirty = self.dirty
        while dirty:
            dirty.pop().flush()

    def sweep(self, now: float) -> None:
        for conns in list(self.conns.values()):
            for up in list(conns):
                if (up.connected and not up.streams and not up.pending
                        and now - up.idle_since >= self.idle_timeout_seconds and up.transport is not None):
                    up.usable = False
                    up.transport.close()  # connection_lost forgets it

    async def close(self) -> None:
        for conns in list(self.conns.values()):
            for up in list(conns):
                if up.transport is not None:
                    up.transport.close()
        self.conns.clear()
        await self.tasks.close(1.0)
