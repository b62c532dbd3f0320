"""One app's requests replayed against one scaling policy, in simulated time: event-driven, no sleeping.

The proxy side is the proxy's own ``CounterRegistry`` on an injected clock: a request arriving while the
app has a ready pod starts at once; otherwise it is held (a cold start) until the first pod is ready, or
fails after the cold-start timeout, as the proxy's dispatcher does, with the same wake events (once per
cold episode, and for a warm app idle for ``IDLE_WAKE_SECONDS``). Reports are built every report
interval while the app has anything to say; while it is idle the proxy's heartbeats carry nothing (the
report before the first of them already had the app's in-flight count at zero), so they are not folded,
and the stretch they cover is dropped as one lost report when activity resumes.

The policy (policies.py) receives those reports and wakes, and asks for replica counts; pods take a
start time drawn from a log-normal distribution before they are ready. Apps are independent (one
Deployment each, their own windows and timers), so each is replayed on its own: an idle app costs
nothing until its next request or its next scheduled decision.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final, Protocol

import numpy as np

from kedahttp.activity.model import Report, WakeEvent
from kedahttp.lab.config import LabConfig
from kedahttp.lab.workload import AppLoad
from kedahttp.proxy.counters import BackendCounters, CounterRegistry
from kedahttp.proxy.dispatch import IDLE_WAKE_SECONDS

BASE_WALL: Final = 1_599_999_960.0  # wall-clock second of simulated time 0: a whole minute, in the past
NAMESPACE: Final = "lab"
INF: Final = math.inf
STATUS_OK: Final = 200
STATUS_REJECTED: Final = 503  # the hold queue is full
STATUS_TIMEOUT: Final = 504  # held past the cold-start timeout


class Clock:
    """The simulated clock handed to the real code: monotonic seconds and wall-clock seconds."""

    __slots__ = ("t",)

    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return BASE_WALL + self.t


class Controller(Protocol):
    """A scaling policy for one app: it hears what the proxy publishes and sets the replica count."""

    def start(self, sim: AppReplay) -> None: ...

    def on_report(self, report: Report) -> None: ...

    def on_wake(self, wake: WakeEvent) -> None: ...

    def on_busy(self, busy: bool) -> None:
        """The app's in-flight + held count left (True) or reached (False) zero."""

    def next_tick(self) -> float:
        """Simulated time of the policy's next own decision (INF: none scheduled)."""

    def tick(self) -> None: ...


@dataclass(slots=True)
class AppResult:
    name: str
    requests: int
    cold: int  # requests that waited for a pod (held)
    failed: int
    failed_requests: np.ndarray  # indexes (into the app's arrivals) of the requests that failed
    waits: np.ndarray  # added wait of every request that was served, seconds (0 when warm)
    served: tuple[np.ndarray, np.ndarray]  # (start, end) of every served request
    pods: tuple[np.ndarray, np.ndarray]  # (created, removed) of every pod
    scale_events: list[tuple[float, int]] = field(default_factory=list)  # (time, replicas)


class PodStarts:
    """Seeded pod start times, drawn in chunks."""

    def __init__(self, config: LabConfig, seed: tuple[int, ...]) -> None:
        self.rng = np.random.default_rng(seed)
        self.median = config.pod_start_median_seconds
        self.sigma = config.pod_start_sigma
        self.pool: list[float] = []

    def next(self) -> float:
        if not self.pool:
            drawn = self.median * np.exp(self.sigma * self.rng.standard_normal(256))
            self.pool = np.clip(drawn, 0.1 * self.median, 30.0 * self.median).tolist()[::-1]
        return self.pool.pop()


class AppReplay:
    """The replay of one app under one controller (see the module docstring)."""

    def __init__(self, app: AppLoad, config: LabConfig, controller: Controller, horizon_seconds: float,
                 seed: tuple[int, ...]) -> None:
        self.app = app
        self.config = config
        self.controller = controller
        self.horizon = horizon_seconds
        self.clock = Clock()
        self.backend = f"{NAMESPACE}/{app.name}"
        self.registry = CounterRegistry(f"lab-proxy-{app.name}", clock=self.clock.monotonic,
                                        wall_clock=self.clock.wall)
        self.counters: BackendCounters = self.registry.for_backend(self.backend)
        self.pod_starts = PodStarts(config, seed)
        self.ready: list[float] = []  # creation times of ready pods
        self.starting: list[tuple[float, float]] = []  # heap of (ready at, created)
        self.pods_created: list[float] = []
        self.pods_removed: list[float] = []
        self.scale_events: list[tuple[float, int]] = []

    # -- what controllers read and do -------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.t

    @property
    def replicas(self) -> int:
        return len(self.ready) + len(self.starting)

    def scale_to(self, replicas: int) -> None:
        replicas = max(0, min(replicas, self.config.max_replicas))
        current = self.replicas
        if replicas == current:
            return
        now = self.clock.t
        self.scale_events.append((now, replicas))
        if replicas > current:
            for _ in range(replicas - current):
                heapq.heappush(self.starting, (now + self.pod_starts.next(), now))
            return
        drop = current - replicas
        if self.starting:  # pods still starting go first, the latest to be ready first
            ordered = sorted(self.starting)
            keep = max(0, len(ordered) - drop)
            for _, created in ordered[keep:]:
                self._removed(created, now)
            drop -= len(ordered) - keep
            self.starting = ordered[:keep]
            heapq.heapify(self.starting)
        for _ in range(drop):
            self._removed(self.ready.pop(), now)

    def _removed(self, created: float, now: float) -> None:
        self.pods_created.append(created)
        self.pods_removed.append(now)

    # -- the replay -------------------------------------------------------------------------------------

    def run(self) -> AppResult:
        app, config, ctl, clock = self.app, self.config, self.controller, self.clock
        counters = self.counters
        arrivals = app.arrivals.tolist()
        durations = app.durations.tolist()
        total = len(arrivals)
        serve_start = np.empty(total)
        serve_end = np.empty(total)
        waits = np.zeros(total)
        served = np.zeros(total, dtype=bool)
        ends: list[tuple[float, int]] = []  # heap of (end, request index)
        held: deque[int] = deque()
        timeout = config.cold_start_timeout_seconds
        interval = config.report_interval_seconds
        woken = False
        reporting = False
        next_report = INF
        cold = 0
        failures: list[int] = []
        i = 0
        ctl.start(self)
        t_tick = ctl.next_tick()  # asked again only after the controller was called: nothing else moves it
        while True:
            t_arrival = arrivals[i] if i < total else INF
            t_end = ends[0][0] if ends else INF
            t_ready = self.starting[0][0] if self.starting else INF
            t_timeout = arrivals[held[0]] + timeout if held else INF
            t = min(t_arrival, t_end, t_ready, t_timeout, next_report, t_tick)
            if t == INF or (t > self.horizon and i >= total and not held and not ends):
                break
            clock.t = t
            busy_before = counters.in_flight + counters.held > 0
            if t_ready == t:
                _, created = heapq.heappop(self.starting)
                self.ready.append(created)
                if len(self.ready) == 1:
                    woken = False
                    while held:
                        k = held.popleft()
                        counters.release(t - arrivals[k])
                        waits[k] = t - arrivals[k]
                        serve_start[k] = t
                        serve_end[k] = t + durations[k]
                        served[k] = True
                        heapq.heappush(ends, (t + durations[k], k))
            elif t_end == t:
                _, k = heapq.heappop(ends)
                counters.finish(t, arrivals[k], STATUS_OK)
            elif t_timeout == t:
                k = held.popleft()
                counters.finish(t, arrivals[k], STATUS_TIMEOUT, held=True)
                failures.append(k)
            elif t_arrival == t:
                if not reporting:  # the heartbeats of the idle stretch carried nothing: skip them
                    clock.t = math.floor(t / interval) * interval
                    self.registry.build_report()
                    next_report = clock.t + interval
                    reporting = True
                    clock.t = t
                k = i
                i += 1
                if self.ready:
                    if counters.in_flight + counters.held == 0 and t - counters.last_start > IDLE_WAKE_SECONDS:
                        ctl.on_wake(WakeEvent(self.backend, self.registry.instance, clock.wall()))
                        t_tick = ctl.next_tick()
                    counters.start(t)
                    serve_start[k] = t
                    serve_end[k] = t + durations[k]
                    served[k] = True
                    heapq.heappush(ends, (t + durations[k], k))
                elif counters.held >= config.max_held_requests:
                    counters.start(t)
                    counters.held_rejected += 1
                    counters.finish(t, t, STATUS_REJECTED)
                    failures.append(k)
                    cold += 1
                else:
                    counters.start(t)  # as the proxy's dispatcher: started, then held
                    counters.hold()
                    held.append(k)
                    cold += 1
                    if not woken:
                        woken = True
                        counters.cold_starts += 1
                        ctl.on_wake(WakeEvent(self.backend, self.registry.instance, clock.wall()))
                        t_tick = ctl.next_tick()
            elif next_report == t:
                report = self.registry.build_report()
                if report.backends:
                    ctl.on_report(report)
                    t_tick = ctl.next_tick()
                    next_report = t + interval
                else:  # a heartbeat: the previous report already cleared this instance's point values
                    reporting = False
                    next_report = INF
            else:
                ctl.tick()
                t_tick = ctl.next_tick()
            busy = counters.in_flight + counters.held > 0
            if busy != busy_before:
                ctl.on_busy(busy)
                t_tick = ctl.next_tick()
        end = self.clock.t
        for created in self.ready:
            self._removed(created, end)
        for _, created in self.starting:
            self._removed(created, end)
        return AppResult(
            name=app.name, requests=total, cold=cold, failed=len(failures),
            failed_requests=np.array(sorted(failures), dtype=np.int64), waits=waits[served],
            served=(serve_start[served], serve_end[served]),
            pods=(np.array(self.pods_created), np.array(self.pods_removed)),
            scale_events=self.scale_events,
        )
