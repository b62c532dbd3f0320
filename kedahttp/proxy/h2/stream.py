"""One HTTP/2 stream through the proxy: a client stream relayed to a stream on an upstream connection.

A stream is a request for the route table, the counters and the hold queue from its HEADERS to its end,
however long a streaming call lasts. Flow control is end to end: DATA received from one side is
acknowledged to that side (WINDOW_UPDATE) only once it was handed to the other side's connection within
that side's send window, so what the proxy buffers per stream is bounded by the window it granted, and
a slow reader slows its writer instead of filling memory. Trailers follow the last DATA; a reset on either
side resets the other. What the proxy answers itself (no route, cold-start timeout, full hold queue, an
unreachable app) is a gRPC trailers-only answer for gRPC calls and a short text answer for the rest.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from kedahttp.proxy.deadlines import NOT_DUE, overdue
from kedahttp.proxy.h2 import grpc

if TYPE_CHECKING:
    from kedahttp.proxy.h2.wire import Fields, Wire
    from kedahttp.proxy.routing import Route

NO_ERROR = 0
INTERNAL_ERROR = 2
REFUSED_STREAM = 7
CANCEL = 8

_clock = time.monotonic
_REASONS = {404: "no route for this host and path", 502: "the app could not be reached",
            503: "too many requests are waiting for the app to start",
            504: "the app did not become ready in time", 405: "CONNECT is not served"}


class Holder(Protocol):
    """Where a held stream waits (side.py's H2Side)."""

    def unhold(self, stream: Stream) -> None: ...


class Client(Protocol):
    """The client connection a stream belongs to (downstream.py's H2Downstream), as the stream sees it:
    declared here so the stream imports nothing that imports it."""

    wire: Wire  # the connection's framing, HPACK and flow control
    writable: bool
    @property
    def side(self) -> Holder: ...

    def ack(self, flow: int, sid: int) -> None: ...

    def reset(self, sid: int, code: int) -> None: ...

    def dirty(self) -> None: ...

    def stream_done(self, stream: Stream) -> None: ...


class Leg(Protocol):
    """The app side of a stream: a stream on an h2c connection (upstream.py) or an HTTP/1.1 exchange
    (h1_leg.py). ``ack`` gives back what the client consumed of the app's data; ``usid`` is the leg's
    own stream id."""

    writable: bool

    def pump(self, stream: Stream) -> None: ...

    def ack(self, flow: int, usid: int) -> None: ...

    def reset(self, usid: int, code: int) -> None: ...

    def stream_done(self, stream: Stream) -> None: ...


def send_window(wire: Wire, sid: int, q: deque[tuple[bytes, int]], source: Any, source_sid: int) -> None:
    """Sends what ``q`` holds on ``wire``'s stream ``sid`` as far as its send window allows, giving each
    piece's window back to the ``source`` connection it came from once all of it is sent."""
    while q:
        data, flow = q[0]
        window = wire.send_window(sid)
        if window <= 0:
            return
        if len(data) <= window:
            q.popleft()
            wire.send_data(sid, data)
            if flow and source is not None:
                source.ack(flow, source_sid)
        else:
            wire.send_data(sid, data[:window])
            q[0] = (data[window:], flow)


class Stream:
    __slots__ = (
        "attempts",
        "client_ended",
        "counters",
        "deadline",
        "done",
        "down",
        "down_end",
        "down_trailers",
        "endpoint",
        "grpc",
        "grpc_deadline",
        "head",
        "held",
        "held_at",
        "resp_started",
        "route",
        "rx",
        "seen_rx",
        "seen_rx_at",
        "seen_sent_at",
        "seen_up",
        "seen_up_at",
        "sid",
        "status",
        "streaming",
        "t_start",
        "timer",
        "to_down",
        "to_up",
        "up",
        "up_end",
        "up_ended",
        "up_trailers",
        "usid",
    )

    def __init__(self, down: Client, sid: int, head: Fields, route: Route | None,
                 grpc_call: bool, grpc_deadline: float | None) -> None:
        self.down = down
        self.sid = sid
        self.head = head  # the request headers for the upstream
        self.route = route
        self.counters: Any = None
        self.t_start = 0.0
        self.grpc = grpc_call
        self.grpc_deadline = grpc_deadline  # monotonic time the caller gives up, from grpc-timeout
        self.deadline = 0.0
        self.held = False
        self.held_at = 0.0
        self.timer: Any = None
        self.up: Leg | None = None
        self.usid = 0
        self.endpoint = ""
        self.attempts = 0
        # client -> upstream: (data, flow-controlled length) not yet sent; END_STREAM and trailers after
        self.to_up: deque[tuple[bytes, int]] = deque()
        self.up_end = False  # the client ended its side
        self.up_trailers: Fields | None = None
        self.up_ended = False  # ... and we passed that on
        self.client_ended = False
        # upstream -> client
        self.to_down: deque[tuple[bytes, int]] = deque()
        self.down_end = False
        self.down_trailers: Fields | None = None
        self.resp_started = False
        self.status = 0
        self.done = False
        self.streaming = True  # until a response head with content-length (and not gRPC) says otherwise
        # what the side's sweep saw last (deadlines.py decides from it; the data path only counts ``rx``)
        self.rx = 0  # response frames from the app
        self.seen_rx = 0
        self.seen_rx_at = 0.0
        self.seen_sent_at = 0.0  # when the sweep first saw the request passed on in full
        self.seen_up = 0  # request bytes waiting for the app's window, and since when unchanged
        self.seen_up_at = 0.0

    # -- from the client ---------------------------------------------------------------------------

    def client_data(self, data: bytes, flow: int) -> None:
        if self.done or self.up_end:
            self.down.ack(flow, self.sid)  # nobody reads it: give the window back at once
            return
        self.to_up.append((data, flow))
        if self.up is not None:
            self.pump_up()

    def client_end(self, trailers: Fields | None = None) -> None:
        self.client_ended = True
        if self.done:
            return
        self.up_end = True
        self.up_trailers = trailers
        if self.up is not None:
            self.pump_up()

    def client_reset(self) -> None:
        """The client cancelled the stream (RST_STREAM) or went away."""
        self.client_ended = True
        if self.done:
            return
        up = self.up
        if up is not None:
            up.reset(self.usid, CANCEL)
        self.finish(499)

    # -- to the upstream ---------------------------------------------------------------------------

    def attached(self, up: Leg, usid: int) -> None:
        self.up = up
        self.usid = usid
        self.pump_up()

    def pump_up(self) -> None:
        up = self.up
        if up is not None and up.writable:
            up.pump(self)

    # -- from the upstream -------------------------------------------------------------------------

    def response(self, headers: Fields, ended: bool) -> None:
        if self.done:
            return
        for field in headers:
            name = field[0]
            if name == b":status":
                value = field[1]
                self.status = int(value) if value.isdigit() else 502
            elif name == b"content-length":
                self.streaming = self.grpc
        self.rx += 1
        self.resp_started = True
        self.down.wire.send_headers(self.sid, headers, ended)
        self.down.dirty()
        if ended:
            self.down_end = True
            self.finish(self.status)

    def upstream_data(self, data: bytes, flow: int) -> None:
        if self.done:
            up = self.up
            if up is not None:
                up.ack(flow, self.usid)
            return
        self.rx += 1
        self.to_down.append((data, flow))
        self.pump_down()

    def upstream_end(self, trailers: Fields | None = None) -> None:
        if self.done or self.down_end:
            return
        self.down_end = True
        self.down_trailers = trailers
        self.pump_down()

    def upstream_reset(self, code: int) -> None:
        """The app reset the stream: the client's stream is reset with the same code."""
        if self.done:
            return
        self.up = None  # its stream is gone on that connection
        self.down.reset(self.sid, code)
        self.finish(self.status or 502)

    def upstream_refused(self) -> None:
        """The app never processed the stream (GOAWAY below its id): the client may retry it safely."""
        if self.done:
            return
        self.up = None
        self.down.reset(self.sid, REFUSED_STREAM)
        self.finish(503)

    def upstream_lost(self) -> None:
        """The upstream connection failed or closed with this stream open."""
        if self.done:
            return
        self.up = None
        if self.resp_started:
            self.down.reset(self.sid, INTERNAL_ERROR)
            self.finish(self.status)
        else:
            self.answer(502)

    def pump_down(self) -> None:
        down = self.down
        if not down.writable:
            return
        wire = down.wire
        sid = self.sid
        q = self.to_down
        if q:
            send_window(wire, sid, q, self.up, self.usid)
        down.dirty()
        if not q and self.down_end and not self.done:
            if self.down_trailers is not None:
                wire.send_headers(sid, self.down_trailers, True)
            else:
                wire.end_stream(sid)
            self.finish(self.status)

    # -- upstream timeouts (the side's sweep: side.py) -------------------------------------------------

    def overdue(self, now: float) -> int:
        """Which upstream timeout (deadlines.py) this stream has run past since it went to the app, or
        NOT_DUE. The same rules as an HTTP/1.1 exchange's, from what the sweep sees change between its
        visits: the response-header timeout from the request passed on in full, the idle timeout from the
        app's last frame (not while the client's window holds the response back) or, while request bytes
        wait for the app's window, from the last time the app took some; the total cap only for a
        response with a content-length that is not a gRPC call."""
        if self.done or self.up is None:
            return NOT_DUE
        if not self.seen_sent_at and self.up_ended:
            self.seen_sent_at = now
        if self.rx != self.seen_rx:
            self.seen_rx, self.seen_rx_at = self.rx, now
        waiting = sum(len(data) for data, _ in self.to_up)
        if waiting != self.seen_up:
            self.seen_up, self.seen_up_at = waiting, now
        route = self.route
        if route is None:
            return NOT_DUE
        return overdue(route.limits, now, 0.0, sent_at=self.seen_sent_at, req_done=self.up_ended,
                       resp_started=self.resp_started, streaming=self.streaming,
                       last_read=self.seen_rx_at or now, reading_paused=bool(self.to_down),
                       last_taken=self.seen_up_at if waiting else 0.0)

    def timed_out(self, message: str) -> None:
        """Given up on: the app's stream is cancelled; the client gets a 504 (gRPC: UNAVAILABLE, so its
        retry policy applies) if no response began, else its stream is reset."""
        up, self.up = self.up, None
        if up is not None:
            up.reset(self.usid, CANCEL)
            up.stream_done(self)
        if not self.resp_started:
            self.answer(504, message)
            return
        self.client_ended = True  # reset here: finish() sends no second RST_STREAM
        self.down.reset(self.sid, CANCEL)
        self.finish(504)

    # -- answered here -----------------------------------------------------------------------------

    def answer(self, status: int, message: str = "", grpc_code: int | None = None) -> None:
        """The proxy answers the stream itself (it never reached the app, or never will)."""
        if self.done:
            return
        self.status = status
        self.resp_started = True
        message = message or _REASONS.get(status, "")
        down = self.down
        if self.grpc:
            code = grpc.status_for_http(status) if grpc_code is None else grpc_code
            down.wire.send_headers(self.sid, grpc.trailers_only(code, message), True)
            down.dirty()
            self.finish(status)
            return
        body = message.encode() + b"\n"
        down.wire.send_headers(self.sid, [
            (b":status", str(status).encode(), False), (b"content-type", b"text/plain; charset=utf-8", False),
            (b"content-length", str(len(body)).encode(), False),
        ])
        self.to_down.append((body, 0))
        self.down_end = True
        self.pump_down()

    # -- the end -----------------------------------------------------------------------------------

    def finish(self, status: int) -> None:
        """The stream is over for the proxy: counted, unlinked, its unread input given back."""
        if self.done:
            return
        self.done = True
        down = self.down
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.held:
            down.side.unhold(self)
        for _, flow in self.to_up:
            down.ack(flow, self.sid)
        self.to_up.clear()
        up = self.up
        if up is not None:
            for _, flow in self.to_down:
                up.ack(flow, self.usid)
            up.stream_done(self)
        self.to_down.clear()
        if not self.client_ended and status != 499:
            down.reset(self.sid, NO_ERROR)  # answered before the request ended: it need not be sent
        counters = self.counters
        if counters is not None:
            counters.finish(_clock(), self.t_start, status, self.held)
        down.stream_done(self)
