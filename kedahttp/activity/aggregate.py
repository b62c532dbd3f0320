"""Folds the activity reports of every proxy instance into per-backend metrics: the scaler's pure core.

Per backend it keeps two windows of whole seconds (window.py): the area under in-flight + held
(``busy_seconds``) for the time-weighted concurrency, and the requests started for the request rate.
A report's deltas are spread over the seconds its own interval ``[interval_start, sent_at]`` covers, so
reports delivered late (after a bus outage, or replayed when a scaler starts) land where they happened
and every replica that folds the same log reads the same numbers. Windows are read over complete
seconds ending a short lag behind now (the longest report interval plus a margin), so the newest,
still partly reported second never drags an average down.

Point values (in-flight, held) are per instance: each report is a full snapshot of its instance's busy
backends, and an instance that falls silent for three of its report intervals plus a margin stops
counting. A backend is active while anything is in flight or held, or while its newest request (a wake
event counts as one) is within the activity window: never a function of how a rate rounds.

Memory follows activity: a backend's windows are allocated on its first activity and dropped once they
have been idle for their whole span. The request ring always spans the longest window a trigger may ask
for (MAX_WINDOW_SECONDS, about 4.9 KB a backend) rather than the longest asked so far, so a replica that
meets a new rateWindowSeconds answers it from full history, exactly as its peers do.

Pure: plain data in, plain data out; it never reads a clock (callers pass ``now``, wall-clock seconds).
Decoded protobuf messages are folded as they are: they carry the model's attribute names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, cast

from kedahttp.activity.bus import MAX_WINDOW_SECONDS, RETENTION_SECONDS
from kedahttp.activity.model import BackendActivityLike, ReportLike, WakeLike
from kedahttp.activity.window import CumulativeRing, placement

EXPIRY_INTERVALS: Final = 3  # an instance silent for this many of its report intervals ...
EXPIRY_MARGIN_SECONDS: Final = 0.5  # ... plus this margin stops counting
# Wall clocks of proxies and scalers differ a little. A report's expiry is counted from when it arrived,
# but from no later than its own sent_at plus this, so a replayed report of a long-dead instance expires
# at once while a live instance with a clock a little behind ours is not expired early.
MAX_CLOCK_SKEW_SECONDS: Final = 2.0
LAG_MARGIN_SECONDS: Final = 0.25  # windows end this much before now beyond the longest report interval
MAX_LAG_SECONDS: Final = 2.0
DEFAULT_INTERVAL_SECONDS: Final = 0.25  # assumed until the first report says otherwise
SWEEP_INTERVAL_SECONDS: Final = 10.0  # how often state of long-idle backends and instances is dropped
_LAG_SLOTS: Final = math.ceil(MAX_LAG_SECONDS) + 2  # seconds a ring keeps beyond its longest window
RATE_RING_SECONDS: Final = MAX_WINDOW_SECONDS + _LAG_SLOTS


@dataclass(frozen=True, slots=True)
class BackendMetrics:
    concurrency: float  # time-weighted average of in-flight + held over the concurrency window
    request_rate: float  # requests started per second over the rate window
    in_flight: int  # now, summed over live proxy instances
    held: int
    last_request_at: float  # wall-clock seconds of the newest request or wake; 0.0 if none seen
    active: bool


IDLE: Final = BackendMetrics(0.0, 0.0, 0, 0, 0.0, False)


class _Backend:
    __slots__ = ("area", "held", "in_flight", "last_request_at", "started")

    def __init__(self) -> None:
        self.area: CumulativeRing | None = None  # busy_seconds per second, allocated on first activity
        self.started: CumulativeRing | None = None  # requests started per second
        self.in_flight = 0
        self.held = 0
        self.last_request_at = 0.0


class _Instance:
    __slots__ = ("deadline", "points", "seq")

    def __init__(self) -> None:
        self.seq = 0
        self.deadline = 0.0
        self.points: dict[str, tuple[int, int]] = {}  # backend -> (in_flight, held), non-zero only


class Aggregator:
    """Per-backend metrics from the reports and wakes of all proxy instances (see the module docstring)."""

    def __init__(self, *, concurrency_window_seconds: float = 3.0) -> None:
        window = math.ceil(concurrency_window_seconds)
        if not 1 <= window <= MAX_WINDOW_SECONDS:
            raise ValueError(f"concurrency window must be 1-{MAX_WINDOW_SECONDS} seconds")
        self.concurrency_window_seconds = window
        self._area_ring_seconds = window + _LAG_SLOTS
        self._backends: dict[str, _Backend] = {}
        self._instances: dict[str, _Instance] = {}
        self._tombstones: dict[str, tuple[int, float]] = {}  # expired instance -> (last seq, forget at)
        self._next_deadline = math.inf
        self._next_sweep = 0.0
        self._max_interval = DEFAULT_INTERVAL_SECONDS
        self.lag_seconds = DEFAULT_INTERVAL_SECONDS + LAG_MARGIN_SECONDS
        # Counters for telemetry, plain ints updated in place.
        self.reports = 0
        self.wakes = 0
        self.duplicates = 0  # re-sent or replayed reports ignored
        self.lost_reports = 0  # gaps in an instance's sequence numbers
        self.expired_instances = 0
        self.last_report_sent_at = 0.0  # sent_at of the newest report folded

    # -- folding ----------------------------------------------------------------------------------------

    def fold(self, message: ReportLike | WakeLike, now: float) -> Sequence[str]:
        """Folds one report or wake; returns the backends that saw activity in it (wake, started, busy)."""
        backends: Sequence[BackendActivityLike] | None = getattr(message, "backends", None)
        if backends is None:
            return self._fold_wake(cast(WakeLike, message), now)
        return self._fold_report(cast(ReportLike, message), backends, now)

    def _state(self, backend: str) -> _Backend:
        state = self._backends.get(backend)
        if state is None:
            state = self._backends[backend] = _Backend()
        return state

    def _fold_wake(self, wake: WakeLike, now: float) -> Sequence[str]:
        self.wakes += 1
        backend = wake.backend
        state = self._state(backend)
        at = min(wake.at, now)
        if at > state.last_request_at:
            state.last_request_at = at
        return (backend,)

    def _fold_report(self, report: ReportLike, backends: Sequence[BackendActivityLike], now: float) -> Sequence[str]:
        name = report.instance
        seq = report.seq
        instance = self._instances.get(name)
        if instance is None:
            instance = _Instance()
            tomb = self._tombstones.get(name)
            if tomb is not None:
                if seq <= tomb[0]:
                    self.duplicates += 1
                    return ()
                del self._tombstones[name]
                instance.seq = tomb[0]  # it was silent, not gone: count the reports it lost meanwhile
            self._instances[name] = instance
        elif seq <= instance.seq:
            self.duplicates += 1
            return ()
        if instance.seq and seq > instance.seq + 1:
            self.lost_reports += seq - instance.seq - 1
        instance.seq = seq
        self.reports += 1

        raw_sent_at = report.sent_at
        if raw_sent_at > self.last_report_sent_at:
            self.last_report_sent_at = raw_sent_at
        end = raw_sent_at if raw_sent_at < now else now  # a clock ahead of ours cannot report the future
        start = report.interval_start
        if not 0.0 < start <= end:
            start = end
        interval = report.interval_seconds
        if interval > self._max_interval:
            self._max_interval = interval
            self.lag_seconds = min(interval + LAG_MARGIN_SECONDS, MAX_LAG_SECONDS)
        if interval <= 0.0:
            interval = self._max_interval
        deadline = min(now, raw_sent_at + MAX_CLOCK_SKEW_SECONDS) + EXPIRY_INTERVALS * interval
        deadline += EXPIRY_MARGIN_SECONDS
        instance.deadline = deadline
        if deadline < self._next_deadline:
            self._next_deadline = deadline

        touched: list[str] = []
        points: dict[str, tuple[int, int]] = {}
        states = self._backends
        first, shares = placement(start, end)  # every entry shares the report's interval
        second = first + len(shares)
        for entry in backends:
            backend: str = entry.backend
            state = states.get(backend)
            if state is None:
                state = states[backend] = _Backend()
            busy: float = entry.busy_seconds
            if busy > 0.0:
                ring = state.area
                if ring is None:
                    ring = state.area = CumulativeRing(self._area_ring_seconds, second)
                ring.place(first, shares, busy)
            started: int = entry.started
            if started > 0:
                ring = state.started
                if ring is None:
                    ring = state.started = CumulativeRing(RATE_RING_SECONDS, second)
                ring.place(first, shares, float(started))
            last: float = entry.last_request_at
            if last > state.last_request_at:
                state.last_request_at = last if last < now else now
            in_flight: int = entry.in_flight
            held: int = entry.held
            if in_flight or held:
                points[backend] = (in_flight, held)
                touched.append(backend)
            elif started:
                touched.append(backend)

        # The report is the instance's full snapshot: replace its point values wholesale.
        for backend, (in_flight, held) in instance.points.items():
            state = states[backend]
            state.in_flight -= in_flight
            state.held -= held
        for backend, (in_flight, held) in points.items():
            state = states[backend]
            state.in_flight += in_flight
            state.held += held
        instance.points = points
        return touched

    # -- expiry -----------------------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Drops proxy instances silent for 3 report intervals + margin; now and then frees idle state."""
        if now >= self._next_deadline:
            self._expire_instances(now)
        if now >= self._next_sweep:
            self._sweep(now)

    def _expire_instances(self, now: float) -> None:
        next_deadline = math.inf
        gone = []
        for name, instance in self._instances.items():
            if instance.deadline <= now:
                gone.append(name)
            elif instance.deadline < next_deadline:
                next_deadline = instance.deadline
        for name in gone:
            instance = self._instances.pop(name)
            for backend, (in_flight, held) in instance.points.items():
                state = self._backends[backend]
                state.in_flight -= in_flight
                state.held -= held
            self._tombstones[name] = (instance.seq, now + RETENTION_SECONDS)
            self.expired_instances += 1
        self._next_deadline = next_deadline

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_INTERVAL_SECONDS
        second = math.floor(now)
        horizon = now - MAX_WINDOW_SECONDS - MAX_LAG_SECONDS
        idle = []
        for backend, state in self._backends.items():
            if state.area is not None and state.area.expired(second):
                state.area = None
            if state.started is not None and state.started.expired(second):
                state.started = None
            if (
                state.area is None
                and state.started is None
                and not state.in_flight
                and not state.held
                and state.last_request_at < horizon
            ):
                idle.append(backend)
        for backend in idle:
            del self._backends[backend]
        for name in [n for n, (_, until) in self._tombstones.items() if until <= now]:
            del self._tombstones[name]

    # -- reading ----------------------------------------------------------------------------------------

    def metrics(
        self,
        backend: str,
        now: float,
        rate_window_seconds: float = 60.0,
        activity_window_seconds: float = 60.0,
    ) -> BackendMetrics:
        """The backend's metrics at ``now``; an unknown or long-idle backend reads IDLE (exact zeros)."""
        rate_window = _whole_seconds(rate_window_seconds)
        self.expire(now)
        state = self._backends.get(backend)
        if state is None:
            return IDLE
        end = math.floor(now - self.lag_seconds)
        concurrency = 0.0
        if state.area is not None:
            window = self.concurrency_window_seconds
            concurrency = state.area.window(end, window) / window
        rate = 0.0
        if state.started is not None:
            rate = state.started.window(end, rate_window) / rate_window
        in_flight = state.in_flight
        held = state.held
        last = state.last_request_at
        active = in_flight > 0 or held > 0 or (last > 0.0 and now - last <= activity_window_seconds)
        return BackendMetrics(concurrency, rate, in_flight, held, last, active)

    def is_active(self, backend: str, now: float, activity_window_seconds: float = 60.0) -> bool:
        """True iff the backend has a request in flight or held, or one within the activity window."""
        self.expire(now)
        state = self._backends.get(backend)
        if state is None:
            return False
        if state.in_flight > 0 or state.held > 0:
            return True
        last = state.last_request_at
        return last > 0.0 and now - last <= activity_window_seconds

    @property
    def max_interval_seconds(self) -> float:
        """The longest report interval any instance has announced (the default until one has)."""
        return self._max_interval

    @property
    def live_instances(self) -> int:
        return len(self._instances)

    @property
    def known_instances(self) -> int:
        """Live instances plus those expired within the retention period."""
        return len(self._instances) + len(self._tombstones)

    @property
    def backends(self) -> int:
        return len(self._backends)


def _whole_seconds(seconds: float) -> int:
    window = math.ceil(seconds)
    if not 1 <= window <= MAX_WINDOW_SECONDS:
        raise ValueError(f"window must be 1-{MAX_WINDOW_SECONDS} seconds (got {seconds})")
    return window
