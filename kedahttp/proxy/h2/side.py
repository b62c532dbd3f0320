"""The HTTP/2 side of one proxy process: its connections, its held streams, its upstream pool and drain.

It stands between the route table and the dispatcher as the table's listener: every change goes to the
dispatcher first (which owns the per-backend counters and the HTTP/1.1 hold queues), then releases or
fails the HTTP/2 streams held here. Streams share the dispatcher's counters and cold-episode wake flag,
so a backend's in-flight, held and cold-start figures count both protocols alike. A held stream waits
for the first of: a ready endpoint, its cold-start timeout, its gRPC deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from kedahttp.proxy.deadlines import REASONS, sweep_interval
from kedahttp.proxy.dispatch import Dispatcher
from kedahttp.proxy.h2 import grpc, h1_leg, relay
from kedahttp.proxy.h2.downstream import H2Downstream, Limits
from kedahttp.proxy.h2.stream import Stream
from kedahttp.proxy.h2.upstream import H2UpstreamPool
from kedahttp.proxy.holding import HoldQueue
from kedahttp.proxy.routing import Route, RouteTable

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
IDLE_TIMEOUT_SECONDS = 75.0  # a client connection without a stream this long is closed (as HTTP/1.1 keep-alive)
RELAY_MAX_AGE_SECONDS = 60.0  # H2_RELAY_MAX_AGE_SECONDS: a relayed connection is asked to go (GOAWAY) this
# long after it began, so that a long-lived client spreads over the app's endpoints as they change
SWEEP_SECONDS = 1.0
_clock = time.monotonic


def preface_offset(data: bytes) -> int:
    """How much of the preface came before ``data``, the read in which the HTTP/1.1 parser stopped at it
    (a client may send the preface in pieces): the longest overlap of a preface suffix with its start."""
    for offset in range(len(PREFACE)):
        rest = PREFACE[offset:]
        if data[:len(rest)] == rest[:len(data)]:
            return offset
    return len(PREFACE)


class H2Side:
    def __init__(self, dispatcher: Dispatcher, *, cold_start_timeout_seconds: float, max_held_requests: int,
                 limits: Limits | None = None, relay: bool = False,
                 relay_max_age_seconds: float = RELAY_MAX_AGE_SECONDS) -> None:
        self.dispatcher = dispatcher
        self.routes: RouteTable = None  # type: ignore[assignment]  # set once the table exists
        self.cold_start_timeout_seconds = cold_start_timeout_seconds
        self.max_held_requests = max_held_requests
        self.limits = limits or Limits()
        self.connections: set[Any] = set()  # H2Downstream, and relay.Relay (the same attributes used here)
        self.relay = relay  # H2_RELAY: connections whose streams go to one h2c app are relayed (relay.py)
        self.mixed: set[bytes] = set()  # clients seen sending streams for more than one app: full stack
        self.relayed = 0  # client connections relayed (relay.py), for tests and docs
        self.holds: dict[str, HoldQueue[Stream]] = {}
        self.dirty: set[H2Downstream] = set()
        self.flush_pending = False  # a flush_now is due at the end of this turn of the loop
        self.pool = H2UpstreamPool(self.flush, self._unreachable)
        self.h1_pool = h1_leg.H1Pool(self.flush, self._unreachable)  # keep-alive connections to HTTP/1.1 apps
        self.draining = False
        self.quiet: asyncio.Event | None = None  # set when the drain finds no stream left
        self.now = _clock()
        self.idle_timeout_seconds = IDLE_TIMEOUT_SECONDS
        self.relay_max_age_seconds = relay_max_age_seconds
        self._sweeper: asyncio.TimerHandle | None = None

    # -- the hand-over from the HTTP/1.1 server ----------------------------------------------------

    def take_over(self, transport: Any, data: bytes, client_ip: bytes, trusted: bool = False) -> None:
        """A connection whose first request line was the HTTP/2 preface becomes an HTTP/2 connection;
        ``trusted``: its peer is in TRUSTED_PROXIES (decided by the HTTP/1.1 side, once per connection).
        The relay takes it if its first read shows streams it can carry (relay.plan), else the full stack."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_every(), self._sweep)
        data = PREFACE[:preface_offset(data)] + data
        if self.relay and not self.draining and client_ip not in self.mixed:
            route = relay.plan(self, data)
            if route is not None:
                conn = relay.Relay(self, client_ip, trusted)
                transport.set_protocol(conn)
                conn.start(transport, data, None if isinstance(route, str) else route)
                return
        self.full_stack(transport, data, client_ip, trusted)

    def full_stack(self, transport: Any, data: bytes, client_ip: bytes, trusted: bool) -> None:
        """The connection is served by jh2 (downstream.py); ``data``: what was read of it, preface first."""
        conn = H2Downstream(self, client_ip, trusted)
        transport.set_protocol(conn)
        conn.connection_made(transport)
        transport.resume_reading()  # paused while the relay tried to reach the app
        conn.data_received(data)
        if self.draining:
            conn.goaway()
            self.flush()

    # -- RouteListener, in front of the dispatcher -------------------------------------------------

    def route_added(self, route: Route) -> None:
        self.dispatcher.route_added(route)

    def endpoints_changed(self, route: Route) -> None:
        self.dispatcher.endpoints_changed(route)
        queue = self.holds.get(route.key)
        if not route.endpoints or queue is None or not len(queue):
            return
        now = _clock()
        counters = route.state.counters
        for stream in queue.release_all():
            stream.held = False
            if stream.timer is not None:
                stream.timer.cancel()
                stream.timer = None
            counters.release(now - stream.held_at)
            self.send(stream)
        self.flush()

    def route_removed(self, route: Route) -> None:
        self.dispatcher.route_removed(route)
        queue = self.holds.pop(route.key, None)
        if queue is not None:
            for stream in queue.release_all():
                stream.answer(404)
            self.flush()

    # -- streams -----------------------------------------------------------------------------------

    def admit(self, stream: Stream) -> None:
        route = stream.route
        if route is None or route.state is None:
            stream.answer(404)
            return
        counters = route.state.counters
        stream.counters = counters
        t = stream.t_start = _clock()
        counters.start(t)
        if route.endpoints:
            self.send(stream)
        else:
            self.hold(stream, t)

    def send(self, stream: Stream) -> None:
        route = stream.route
        assert route is not None
        endpoints = route.endpoints
        if not endpoints:
            stream.answer(502)
            return
        i = route.rr
        route.rr = i + 1
        stream.endpoint = endpoints[i % len(endpoints)]
        stream.attempts += 1
        if route.backend.protocol == "h2c":
            self.pool.start(stream)
        else:  # an HTTP/1.1 app: the stream becomes one exchange on a keep-alive connection
            self.h1_pool.start(stream)

    def hold(self, stream: Stream, now: float) -> None:
        route = stream.route
        assert route is not None
        state = route.state
        counters = state.counters
        queue = self.holds.get(route.key)
        if queue is None:
            queue = self.holds[route.key] = HoldQueue(self.max_held_requests)
        timeout = route.backend.cold_start_timeout_seconds or self.cold_start_timeout_seconds
        deadline = now + timeout
        if stream.grpc_deadline is not None and stream.grpc_deadline < deadline:
            deadline = stream.grpc_deadline
        if not queue.hold(stream, deadline):
            counters.held_rejected += 1
            stream.answer(503)
            return
        stream.held = True
        stream.held_at = now
        stream.deadline = deadline
        counters.in_flight -= 1
        counters.held += 1
        if not state.woken:
            state.woken = True
            counters.cold_starts += 1
            self.dispatcher.on_wake(route.key)
        loop = asyncio.get_running_loop()
        stream.timer = loop.call_at(loop.time() + max(0.0, deadline - _clock()), self._expire, stream)

    def unhold(self, stream: Stream) -> None:
        route = stream.route
        if route is not None:
            queue = self.holds.get(route.key)
            if queue is not None:
                queue.remove(stream)

    def _expire(self, stream: Stream) -> None:
        stream.timer = None
        if stream.done or not stream.held:
            return
        if stream.grpc_deadline is not None and stream.grpc_deadline <= stream.deadline:
            stream.answer(504, "deadline exceeded while the app was starting", grpc.DEADLINE_EXCEEDED)
        else:
            stream.counters.held_timeouts += 1
            stream.answer(504, "the app did not become ready in time", grpc.UNAVAILABLE)
        self.flush()

    def _unreachable(self, stream: Stream) -> None:
        """The connect to the stream's endpoint failed: another endpoint once, else 502 (UNAVAILABLE)."""
        route = stream.route
        if route is not None and self.dispatcher.on_unreachable is not None:
            self.dispatcher.on_unreachable(route.key)
        if stream.attempts < 2 and route is not None and len(route.endpoints) > 1:
            self.send(stream)
        else:
            stream.answer(502)

    def mixed_client(self, client_ip: bytes) -> None:
        """A relayed client sent a stream for another app (an ingress, say): its next connections are
        served by the full stack, which routes every stream on its own."""
        if len(self.mixed) >= 4096:
            self.mixed.clear()
        self.mixed.add(client_ip)

    def held_count(self, key: str) -> int:
        queue = self.holds.get(key)
        return 0 if queue is None else len(queue)

    # -- writes ------------------------------------------------------------------------------------

    def flush(self) -> None:
        """What was produced while handling an event goes out once the events of this turn of the loop
        are handled: one write per connection however many reads fed it (under load a turn carries reads
        from many connections; writing after each cost about a tenth more CPU per call, bench/RESULTS.md)."""
        if not self.flush_pending:
            self.flush_pending = True
            asyncio.get_running_loop().call_soon(self.flush_now)

    def flush_now(self) -> None:
        """Everything waiting goes out now: upstream connections first."""
        self.flush_pending = False
        self.pool.flush()
        dirty = self.dirty
        while dirty:
            dirty.pop().flush()

    # -- idle connections --------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Closes client connections idle past the timeout (GOAWAY first) and idle upstream connections,
        and ends the streams past an upstream timeout (the per-app timeouts, as for HTTP/1.1: no timer per
        stream); runs while there is something to sweep, as often as the shortest timeout needs."""
        now = self.now = _clock()
        for conn in list(self.connections):
            if isinstance(conn, relay.Relay):
                if now - conn.born >= self.relay_max_age_seconds or (
                        not conn.streams and now - conn.since >= self.idle_timeout_seconds):
                    conn.goaway()
                continue
            if not conn.streams:
                if now - conn.since >= self.idle_timeout_seconds:
                    conn.goaway()
                continue
            for stream in list(conn.streams.values()):
                due = stream.overdue(now)
                if due:
                    self._timed_out(stream, due)
        self.pool.sweep(now)
        self.h1_pool.sweep(now)
        self.flush()
        self._sweeper = None
        if self.connections or self.pool.conns or self.h1_pool.idle:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_every(), self._sweep)

    def _sweep_every(self) -> float:
        """A tenth of the shortest upstream timeout of any route, at most SWEEP_SECONDS (deadlines.py)."""
        routes = self.routes
        return SWEEP_SECONDS if routes is None else sweep_interval(routes.shortest_timeout_seconds, SWEEP_SECONDS)

    def _timed_out(self, stream: Stream, due: int) -> None:
        """Counted and logged as an HTTP/1.1 exchange's upstream timeout is (a 504, an upstream error)."""
        counters = stream.counters
        if counters is not None:
            counters.upstream_timeouts += 1
            counters.upstream_errors += 1
            events = self.dispatcher.events
            if events is not None:
                events.upstream_error(counters.key, stream.endpoint, REASONS[due], 504)
        stream.timed_out("the app did not answer in time" if not stream.resp_started else REASONS[due])

    # -- drain -------------------------------------------------------------------------------------

    def stop_accepting(self) -> None:
        self.draining = True
        for conn in list(self.connections):
            conn.goaway()
        self.flush_now()

    def busy(self) -> bool:
        return any(conn.streams for conn in self.connections)

    def connection_quiet(self) -> None:
        """A connection's last stream ended: the drain may be over."""
        if self.quiet is not None and not self.busy():
            self.quiet.set()

    async def drain(self, deadline: float) -> None:
        self.quiet = asyncio.Event()
        if self.busy():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.quiet.wait(), max(0.0, deadline - asyncio.get_running_loop().time()))

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for queue in self.holds.values():
            for stream in queue.release_all():
                stream.answer(503)
        self.flush_now()
        for conn in list(self.connections):
            if conn.streams:
                conn.transport.abort()
            else:
                conn.transport.close()
        await self.pool.close()
        await self.h1_pool.close()
