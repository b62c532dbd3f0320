"""Where an exchange goes once it is first in its pipeline: to an endpoint now, or into the hold queue.

The dispatcher is the route table's listener: it gives every route its counters and hold queue, releases
held requests the moment a backend's endpoint list turns non-empty (no polling tick), answers them 404
when the backend is removed, and runs one timer per backend for the earliest cold-start deadline. The
first request that finds a backend cold publishes a wake event, once per cold episode; a request that
finds a warm backend after a long idle spell wakes it too, so the scaler hears of it at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from kedahttp.proxy.counters import BackendCounters, CounterRegistry
from kedahttp.proxy.forward import CONNECTING, HELD, Dispatch, Exchange
from kedahttp.proxy.holding import HoldQueue
from kedahttp.proxy.routing import Route
from kedahttp.proxy.upstream import UpstreamPool

IDLE_WAKE_SECONDS: Final = 10.0  # a warm backend idle this long gets a wake event with its next request
_clock: Final = time.monotonic  # Final: compiled, a C static rather than a lookup in the module dict


class BackendState:
    __slots__ = ("counters", "queue", "timer", "timer_at", "woken")

    def __init__(self, counters: BackendCounters, limit: int) -> None:
        self.counters = counters
        self.queue: HoldQueue[Exchange] = HoldQueue(limit)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.woken = False  # a wake event went out in this cold episode


class Dispatcher(Dispatch):
    def __init__(
        self,
        pool: UpstreamPool,
        counters: CounterRegistry,
        *,
        cold_start_timeout_seconds: float,
        max_held_requests: int,
        on_wake: Callable[[str], None],
        on_unreachable: Callable[[str], None] | None = None,
    ) -> None:
        self.pool = pool
        self.counters = counters
        self.cold_start_timeout_seconds = cold_start_timeout_seconds
        self.max_held_requests = max_held_requests
        self.on_wake = on_wake
        self.on_unreachable = on_unreachable  # an endpoint refused a connection: the source re-checks
        self.held_total = 0

    # -- RouteListener -----------------------------------------------------------------------------

    def route_added(self, route: Route) -> None:
        route.state = BackendState(self.counters.for_backend(route.key), self.max_held_requests)

    def endpoints_changed(self, route: Route) -> None:
        state: BackendState = route.state
        if not route.endpoints:
            return
        state.woken = False
        self._cancel_timer(state)
        released = state.queue.release_all()
        if not released:
            return
        self.held_total -= len(released)
        now = _clock()
        counters = state.counters
        touched = set()
        for ex in released:
            counters.release(now - ex.held_at)
            ex.state = CONNECTING  # leaves HELD; send() decides the rest
            self.send(ex, False)
            touched.add(ex.conn)
        for conn in touched:
            conn.flush()

    def route_removed(self, route: Route) -> None:
        state: BackendState = route.state
        self._cancel_timer(state)
        self.counters.mark_removed(route.key)
        for ex in state.queue.release_all():  # still HELD: fail() counts them as held requests
            self.held_total -= 1
            ex.fail(404)
            ex.conn.flush()

    # -- dispatching -------------------------------------------------------------------------------

    def admit(self, ex: Exchange, route: Route) -> None:
        """Counts a request at arrival; a warm backend idle for a while is woken with it."""
        counters: BackendCounters = route.state.counters
        ex.counters = counters
        t = ex.t_start = _clock()
        if (
            route.endpoints and counters.in_flight + counters.held == 0
            and t - counters.last_start > IDLE_WAKE_SECONDS
        ):
            self.on_wake(route.key)
        counters.start(t)

    def dispatch(self, ex: Exchange) -> None:
        route = ex.route
        assert route is not None
        if route.endpoints:
            self.send(ex, False)
        else:
            self.hold(ex)

    def send(self, ex: Exchange, fresh: bool) -> None:
        route = ex.route
        assert route is not None
        endpoints = route.endpoints
        if not endpoints:  # went cold between attempts
            ex.state = CONNECTING
            ex.fail(502)
            return
        i = route.rr
        route.rr = i + 1
        endpoint = endpoints[i % len(endpoints)]
        ex.attempts += 1
        ex.endpoint = endpoint
        conn = None if fresh else self.pool.acquire(endpoint)
        if conn is not None:
            ex.attach(conn)
        else:
            ex.state = CONNECTING
            self.pool.connect(endpoint, ex)

    def hold(self, ex: Exchange) -> None:
        route = ex.route
        assert route is not None
        state: BackendState = route.state
        counters = state.counters
        timeout = route.backend.cold_start_timeout_seconds or self.cold_start_timeout_seconds
        now = _clock()
        if not state.queue.hold(ex, now + timeout):
            counters.held_rejected += 1
            ex.fail(503)
            return
        self.held_total += 1
        ex.state = HELD
        ex.held = True
        ex.held_at = now
        counters.hold()
        if not state.woken:
            state.woken = True
            counters.cold_starts += 1
            self.on_wake(route.key)
        if state.timer is None or now + timeout < state.timer_at:
            self._schedule(route, now + timeout)

    def unhold(self, ex: Exchange) -> None:
        """A held exchange ends (client gone, error): out of its queue."""
        route = ex.route
        if route is not None and route.state.queue.remove(ex):
            self.held_total -= 1

    # -- cold-start timeouts -----------------------------------------------------------------------

    def _schedule(self, route: Route, at: float) -> None:
        state: BackendState = route.state
        self._cancel_timer(state)
        loop = asyncio.get_running_loop()
        # loop.time() and time.monotonic() share a clock on uvloop and the default loop on Linux
        state.timer = loop.call_at(loop.time() + max(0.0, at - _clock()), self._expire, route)
        state.timer_at = at

    def _cancel_timer(self, state: BackendState) -> None:
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None

    def _expire(self, route: Route) -> None:
        state: BackendState = route.state
        state.timer = None
        now = _clock()
        expired = state.queue.expired(now + 0.001)
        counters = state.counters
        for ex in expired:  # still HELD: fail() counts them as held requests
            self.held_total -= 1
            counters.held_timeouts += 1
            ex.fail(504)
            ex.conn.flush()
        nxt = state.queue.next_deadline()
        if nxt is not None:
            self._schedule(route, nxt)

    def close(self, routes: list[Route]) -> None:
        for route in routes:
            if route.state is not None:
                self._cancel_timer(route.state)
