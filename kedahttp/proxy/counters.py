"""Per-backend activity counters, updated in place on the hot path, and the report builder.

Counters are plain ints and floats on a slotted object: a request start or end is a few attribute
updates and one clock read. ``busy_seconds`` (the integral of in_flight + held) is kept exactly with an
accumulator: at a start ``acc -= t``, at an end ``acc += t``; at a report at ``t1`` the area since the
previous report at ``t0`` is ``acc + active(t1) * t1 - active(t0) * t0``. Histograms for Prometheus are
bucket counts here too, turned into metric families only when scraped (telemetry.py), so the hot path
never touches a prometheus_client object or a lock.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Final

from kedahttp.activity.model import BackendActivity, Report

# Upper bounds in seconds; held requests wait up to the cold-start timeout, so buckets go past 60 s.
DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
)
COLD_WAIT_BUCKETS: Final[tuple[float, ...]] = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)

# by_class slots. Slot 0 is the client closing before its answer began (nginx's 499), its own series rather
# than part of 4xx, which would blame the app's clients for the app being slow. A status outside 100-599
# (an upstream that sent one) counts as 5xx: there is no "0xx".
STATUS_CLASSES = ("499", "1xx", "2xx", "3xx", "4xx", "5xx")
STATUS_CLIENT_CLOSED: Final = 499  # the status a request ends with when its client left before any answer


def bucket(bounds: tuple[float, ...], value: float) -> int:
    """The histogram bucket of ``value``: the first bound at or above it (``len(bounds)``: +Inf), as
    bisect_left; a plain loop because nearly every value lands in the first buckets, and compiled it
    costs a few instructions where bisect's generic float comparisons cost hundreds."""
    i = 0
    for bound in bounds:
        if value <= bound:
            return i
        i += 1
    return i


class BackendCounters:
    """One backend's activity in this process. ``clock`` is time.monotonic."""

    __slots__ = (
        "active_t0",
        "busy_acc",
        "by_class",
        "cold_starts",
        "cold_wait_buckets",
        "cold_wait_sum",
        "completed",
        "duration_buckets",
        "duration_sum",
        "held",
        "held_rejected",
        "held_timeouts",
        "in_flight",
        "key",
        "last_start",
        "removed",
        "rep_completed",
        "rep_started",
        "started",
        "tunnel_idle_closes",
        "upstream_errors",
        "upstream_timeouts",
        "waiting_pages",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.in_flight = 0
        self.held = 0
        self.started = 0  # cumulative
        self.completed = 0  # cumulative
        self.busy_acc = 0.0
        self.active_t0 = 0  # in_flight + held at the previous report
        self.last_start = 0.0  # monotonic time of the latest start, 0 when never
        self.rep_started = 0  # ``started`` at the previous report
        self.rep_completed = 0
        self.removed = False  # the route is gone; dropped from the registry once idle and reported
        # Prometheus-only, cumulative
        self.by_class = [0, 0, 0, 0, 0, 0]
        self.duration_buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.cold_starts = 0
        self.cold_wait_buckets = [0] * (len(COLD_WAIT_BUCKETS) + 1)
        self.cold_wait_sum = 0.0
        self.upstream_errors = 0
        self.held_timeouts = 0
        self.held_rejected = 0
        # issue 15
        self.upstream_timeouts = 0  # 504 before the response began, or a response cut for stalling
        self.tunnel_idle_closes = 0  # WebSocket/Upgrade tunnels closed for idleness
        self.waiting_pages = 0  # browsers answered with the waiting page while the app woke

    # -- hot path ------------------------------------------------------------------------------------

    def start(self, t: float) -> None:
        self.in_flight += 1
        self.started += 1
        self.busy_acc -= t
        self.last_start = t

    def hold(self) -> None:
        """A started request waits for its backend to start: still active, now held."""
        self.in_flight -= 1
        self.held += 1

    def release(self, waited: float) -> None:
        """A held request goes to an endpoint: it stays active, now in flight."""
        self.held -= 1
        self.in_flight += 1
        buckets = self.cold_wait_buckets
        i = bucket(COLD_WAIT_BUCKETS, waited)
        buckets[i] = buckets[i] + 1  # not ``+=``: see finish
        self.cold_wait_sum += waited

    def finish(self, t: float, started_at: float, status: int, held: bool = False) -> None:
        if held:
            self.held -= 1
        else:
            self.in_flight -= 1
        self.completed += 1
        self.busy_acc += t
        d = t - started_at
        # ``a[i] = a[i] + 1`` rather than ``a[i] += 1``: compiled, the latter goes through the generic
        # in-place add (hundreds of instructions per request), the former adds tagged ints
        buckets = self.duration_buckets
        i = bucket(DURATION_BUCKETS, d)
        buckets[i] = buckets[i] + 1
        self.duration_sum += d
        # the slot of STATUS_CLASSES: 499 its own, 100-599 by class, anything else 5xx
        by_class = self.by_class
        i = 0 if status == STATUS_CLIENT_CLOSED else status // 100 if 100 <= status < 600 else 5
        by_class[i] = by_class[i] + 1

    # -- report time ---------------------------------------------------------------------------------

    @property
    def active(self) -> int:
        return self.in_flight + self.held

    def take_activity(self, t0: float, t1: float, wall_now: float) -> BackendActivity | None:
        """The activity since the previous call (at ``t0``), or None when there is nothing to say."""
        active = self.in_flight + self.held
        area = self.busy_acc + active * t1 - self.active_t0 * t0
        started = self.started - self.rep_started
        completed = self.completed - self.rep_completed
        self.busy_acc = 0.0
        self.active_t0 = active
        self.rep_started = self.started
        self.rep_completed = self.completed
        if not (active or started or completed):
            return None
        last = wall_now - (t1 - self.last_start) if self.last_start else 0.0
        return BackendActivity(
            backend=self.key,
            in_flight=self.in_flight,
            held=self.held,
            started=started,
            completed=completed,
            busy_seconds=max(0.0, area),
            last_request_at=last,
        )

    def metrics_snapshot(self) -> dict[str, Any]:
        """Cumulative values for Prometheus; snapshots of several workers add up field by field."""
        return {
            "in_flight": self.in_flight,
            "held": self.held,
            "started": self.started,
            "by_class": list(self.by_class),
            "duration_buckets": list(self.duration_buckets),
            "duration_sum": self.duration_sum,
            "cold_starts": self.cold_starts,
            "cold_wait_buckets": list(self.cold_wait_buckets),
            "cold_wait_sum": self.cold_wait_sum,
            "upstream_errors": self.upstream_errors,
            "held_timeouts": self.held_timeouts,
            "held_rejected": self.held_rejected,
            "upstream_timeouts": self.upstream_timeouts,
            "tunnel_idle_closes": self.tunnel_idle_closes,
            "waiting_pages": self.waiting_pages,
        }


class CounterRegistry:
    """Every backend's counters in this process, and the report builder over them."""

    def __init__(self, instance: str, clock: Any = time.monotonic, wall_clock: Any = time.time) -> None:
        self.instance = instance
        self.clock = clock
        self.wall_clock = wall_clock
        self.backends: dict[str, BackendCounters] = {}
        self.unrouted = UnroutedCounters()
        self.seq = 0
        self._t0 = clock()
        self._wall_t0 = wall_clock()

    def for_backend(self, key: str) -> BackendCounters:
        counters = self.backends.get(key)
        if counters is None:
            counters = self.backends[key] = BackendCounters(key)
        counters.removed = False
        return counters

    def mark_removed(self, key: str) -> None:
        counters = self.backends.get(key)
        if counters is not None:
            counters.removed = True

    def build_report(self) -> Report:
        """The next report: activity of every non-idle backend since the previous one (maybe none)."""
        t1 = self.clock()
        wall = self.wall_clock()
        t0, self._t0 = self._t0, t1
        wall_t0, self._wall_t0 = self._wall_t0, wall
        items = []
        for counters in list(self.backends.values()):
            activity = counters.take_activity(t0, t1, wall)
            if activity is not None:
                items.append(activity)
            elif counters.removed:
                del self.backends[counters.key]
        self.seq += 1
        return Report(
            instance=self.instance,
            seq=self.seq,
            sent_at=wall,
            interval_start=wall_t0,
            interval_seconds=max(0.0, t1 - t0),
            backends=tuple(items),
        )

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {key: c.metrics_snapshot() for key, c in self.backends.items()}


def sum_snapshots(snapshots: Iterable[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Adds per-worker snapshots backend by backend (lists element-wise)."""
    total: dict[str, dict[str, Any]] = {}
    for snap in snapshots:
        for key, values in snap.items():
            into = total.get(key)
            if into is None:
                total[key] = {k: list(v) if isinstance(v, list) else v for k, v in values.items()}
                continue
            for name, value in values.items():
                if isinstance(value, list):
                    into[name] = [a + b for a, b in zip(into[name], value, strict=True)]
                else:
                    into[name] = into[name] + value
    return total


class UnroutedCounters:
    """Requests that never reached a backend, so no backend's counters hold them: no route for their Host
    and path (404), and requests refused as malformed (400, 405, 431, 501, 505). Labelled by status only:
    the Host of an unrouted request is whatever a client typed, an unbounded label."""

    __slots__ = ("refused", "unrouted")

    def __init__(self) -> None:
        self.unrouted = 0
        self.refused: dict[int, int] = {}  # status -> count; the statuses the parser can refuse with

    def refuse(self, status: int) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {"unrouted": self.unrouted, "refused": {str(k): v for k, v in self.refused.items()}}


def sum_unrouted(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Adds per-worker UnroutedCounters snapshots."""
    total: dict[str, Any] = {"unrouted": 0, "refused": {}}
    for snap in snapshots:
        total["unrouted"] += snap.get("unrouted", 0)
        for status, count in snap.get("refused", {}).items():
            total["refused"][status] = total["refused"].get(status, 0) + count
    return total
