"""Where an exchange goes once it is first in its pipeline: to an endpoint now, or into the hold queue.

The dispatcher is the route table's listener: it gives every route its counters and hold queue, releases
held requests the moment a backend's endpoint list turns non-empty (no polling tick), answers them 404
when the backend is removed, and runs one timer per backend for the earliest cold-start deadline. The
first request that finds a backend cold publishes a wake event, once per cold episode; a request that
finds a warm backend after a long idle spell wakes it too, so the scaler hears of it at once.

For an app with the waiting page (waiting_page.py), a browser's request is answered with the page at
once instead of being held; it wakes the app all the same. Each episode's end (ready, every held request
timed out, app removed) and each 503/504 from holding is an event line (events.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from kedahttp.proxy.access_log import AccessLog
from kedahttp.proxy.counters import BackendCounters, CounterRegistry
from kedahttp.proxy.events import EventLog
from kedahttp.proxy.forward import CONNECTING, HELD, Dispatch, Exchange
from kedahttp.proxy.holding import HoldQueue
from kedahttp.proxy.routing import Route
from kedahttp.proxy.tracing import HoldObserver
from kedahttp.proxy.upstream import UpstreamPool
from kedahttp.proxy.waiting_page import page_response

IDLE_WAKE_SECONDS: Final = 10.0  # a warm backend idle this long gets a wake event with its next request
_clock: Final = time.monotonic  # Final: compiled, a C static rather than a lookup in the module dict


class BackendState:
    __slots__ = ("cold_since", "counters", "queue", "timer", "timer_at", "woken")

    def __init__(self, counters: BackendCounters, limit: int) -> None:
        self.counters = counters
        self.queue: HoldQueue[Exchange] = HoldQueue(limit)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.woken = False  # a wake event went out in this cold episode
        self.cold_since = 0.0  # when that episode began


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
        events: EventLog | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self.pool = pool
        self.counters = counters
        self.cold_start_timeout_seconds = cold_start_timeout_seconds
        self.max_held_requests = max_held_requests
        self.on_wake = on_wake
        self.on_unreachable = on_unreachable  # an endpoint refused a connection: the source re-checks
        self.events = events  # cold starts, 503/504 from holding, upstream errors
        self.access_log = access_log  # None unless ACCESS_LOG_SAMPLE_RATE > 0
        self.held_total = 0
        self.observer: HoldObserver | None = None  # tracing.py, when TRACING is on; never on the hot path

    # -- RouteListener -----------------------------------------------------------------------------

    def route_added(self, route: Route) -> None:
        route.state = BackendState(self.counters.for_backend(route.key), self.max_held_requests)

    def endpoints_changed(self, route: Route) -> None:
        state: BackendState = route.state
        if not route.endpoints:
            return
        now = _clock()
        released = state.queue.release_all()
        if state.woken and self.events is not None:
            self.events.cold_start(route.key, now - state.cold_since, "ready", len(released))
        state.woken = False
        self._cancel_timer(state)
        if not released:
            return
        self.held_total -= len(released)
        counters = state.counters
        touched = set()
        observer = self.observer
        for ex in released:
            counters.release(now - ex.held_at)
            if observer is not None:
                observer.released(route.key, ex)
            ex.state = CONNECTING  # leaves HELD; send() decides the rest
            self.send(ex, False)
            touched.add(ex.conn)
        for conn in touched:
            conn.flush()

    def route_removed(self, route: Route) -> None:
        state: BackendState = route.state
        self._cancel_timer(state)
        self.counters.mark_removed(route.key)
        if state.woken and self.events is not None:
            self.events.cold_start(route.key, _clock() - state.cold_since, "removed", len(state.queue))
        for ex in state.queue.release_all():  # still HELD: fail() counts them as held requests
            self.held_total -= 1
            if self.observer is not None:
                self.observer.ended(route.key, ex, "removed", True)
            ex.fail(404)
            ex.conn.flush()

    # -- dispatching -------------------------------------------------------------------------------

    def admit(self, ex: Exchange, route: Route) -> None:
        """Counts a request at arrival; a warm backend idle for a while is woken with it."""
        state: BackendState = route.state  # typed: a native attribute read below, not a generic lookup
        counters = state.counters
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
        if ex.wants_page:
            self._answer_page(ex, route, state, now)
            return
        if not state.queue.hold(ex, now + timeout):
            counters.held_rejected += 1
            if self.events is not None:
                self.events.held_answered(route.key, 503, 0.0)
            ex.fail(503)
            return
        self.held_total += 1
        ex.state = HELD
        ex.held = True
        ex.held_at = now
        counters.hold()
        wakes = not state.woken
        if wakes:
            self._wake(route, state, now)
        if self.observer is not None:
            self.observer.held(route.key, ex, wakes)
        if state.timer is None or now + timeout < state.timer_at:
            self._schedule(route, now + timeout)

    def _wake(self, route: Route, state: BackendState, now: float) -> None:
        """The first request of a cold episode: the scaler hears of it now."""
        state.woken = True
        state.cold_since = now
        state.counters.cold_starts += 1
        self.on_wake(route.key)

    def _answer_page(self, ex: Exchange, route: Route, state: BackendState, now: float) -> None:
        """A browser asking a cold app with the waiting page: the page now; the app wakes all the same."""
        if not state.woken:
            self._wake(route, state, now)
        elif self.on_unreachable is not None:
            self.on_unreachable(route.key)  # still cold: the source re-checks at once
        page = route.limits.page
        assert page is not None
        state.counters.waiting_pages += 1
        body = page.render(backend=route.key, waited_seconds=now - state.cold_since)
        close = ex.must_close()
        ex.reply(503, page_response(body, close=close, head_only=ex.is_head), close)

    def unhold(self, ex: Exchange) -> None:
        """A held exchange ends (client gone, error): out of its queue."""
        route = ex.route
        if route is not None and route.state.queue.remove(ex):
            self.held_total -= 1
            if self.observer is not None:
                self.observer.ended(route.key, ex, "gone", not route.state.queue)

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
        events = self.events
        empty = not state.queue
        for ex in expired:  # still HELD: fail() counts them as held requests
            self.held_total -= 1
            counters.held_timeouts += 1
            if self.observer is not None:
                self.observer.ended(route.key, ex, "timeout", empty)
            if events is not None:
                events.held_answered(route.key, 504, now - ex.held_at)
            ex.fail(504)
            ex.conn.flush()
        if expired and not state.queue and not route.endpoints and events is not None:
            events.cold_start(route.key, now - state.cold_since, "timeout", len(expired))
        nxt = state.queue.next_deadline()
        if nxt is not None:
            self._schedule(route, nxt)

    def close(self, routes: list[Route]) -> None:
        for route in routes:
            if route.state is not None:
                self._cancel_timer(route.state)
