"""The live page's model: per-app state (cold, waking, warm) derived from periodic samples, pure.

The proxy already counts everything the page shows; this module turns a sample of those counters (taken
by live.py every tick) into one row per app and remembers recent cold starts. Nothing here reads a
clock or a socket: times come in with each sample, so the rules are tested without a loop. Rows carry
absolute times (last request, expected scale-down) rather than ages, so an idle app's row does not
change every second: the browser computes ages itself, and the event stream carries only real changes.

State rules: warm while the app has a ready endpoint; waking while it has none and requests are held
(the first held request published a wake); cold otherwise. A waking app that turns warm is a cold
start, recorded with the mean wait of the requests it released; one that turns cold again timed out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

COLD, WAKING, WARM = "cold", "waking", "warm"
RATE_TIME_CONSTANT_SECONDS = 2.0  # the request rate is an exponential average over about this long
RECENT_COLD_STARTS = 20


@dataclass(frozen=True, slots=True)
class Sample:
    """One app's counters at one moment (cumulative counts, current gauges)."""

    key: str
    ready: int  # ready endpoints as the proxy sees them
    in_flight: int
    held: int
    started: int  # requests started, cumulative
    cold_waits: int  # held requests released to an endpoint, cumulative
    cold_wait_sum: float  # their total wait in seconds


@dataclass(slots=True)
class _App:
    row: tuple[Any, ...]
    started: int
    rate: float = 0.0
    last_request_at: float = 0.0  # wall time, 0 when never seen
    waking_since: float = 0.0
    waits_at_wake: tuple[int, float] = (0, 0.0)


@dataclass(frozen=True, slots=True)
class ColdStart:
    key: str
    at: float  # wall time it ended
    wait_seconds: float | None  # mean wait of the released requests; None when it timed out

    def as_json(self) -> dict[str, Any]:
        return {"app": self.key, "at": round(self.at * 1000),
                "wait": None if self.wait_seconds is None else round(self.wait_seconds, 3)}


ROW_FIELDS = ("app", "state", "ready", "inFlight", "held", "rate", "lastRequest", "scaleDownAt")


class LiveModel:
    """Folds samples into rows; ``update`` returns whether anything a viewer sees changed."""

    def __init__(self, scale_down_after: Callable[[str], float | None] = lambda key: None) -> None:
        self.scale_down_after = scale_down_after  # seconds from the last request to scale-down, if known
        self.apps: dict[str, _App] = {}
        self.keys: list[str] = []  # sorted; rebuilt when the set of apps changes
        self.keys_version = 0
        self.version = 0  # bumped when any row, the key set or the cold-start list changes
        self.cold_starts: deque[ColdStart] = deque(maxlen=RECENT_COLD_STARTS)
        self.counts = {COLD: 0, WAKING: 0, WARM: 0}
        self._t = 0.0

    def update(self, samples: Iterable[Sample], wall_now: float) -> bool:
        dt = wall_now - self._t if self._t else 0.0
        self._t = wall_now
        alpha = min(1.0, dt / RATE_TIME_CONSTANT_SECONDS) if dt > 0 else 0.0
        seen: set[str] = set()
        changed = False
        counts = {COLD: 0, WAKING: 0, WARM: 0}
        apps = self.apps
        for s in samples:
            seen.add(s.key)
            app = apps.get(s.key)
            if app is None:
                app = apps[s.key] = _App(row=(), started=s.started)
            if s.started != app.started:
                if dt > 0:
                    app.rate += alpha * ((s.started - app.started) / dt - app.rate)
                app.started = s.started
                app.last_request_at = wall_now
            elif app.rate:
                app.rate = 0.0 if app.rate < 0.05 else app.rate * (1.0 - alpha)
            state = WARM if s.ready else WAKING if s.held else COLD
            before = app.row[1] if app.row else COLD
            if state == WAKING and before != WAKING:
                app.waking_since = wall_now
                app.waits_at_wake = (s.cold_waits, s.cold_wait_sum)
            elif before == WAKING and state != WAKING:
                self._cold_start_ended(s, app, wall_now, state)
                changed = True
            counts[state] += 1
            scale_down_at = None
            after = self.scale_down_after(s.key)
            if state == WARM and after is not None and app.last_request_at and not (s.in_flight or s.held):
                scale_down_at = round((app.last_request_at + after) * 1000)
            row = (s.key, state, s.ready, s.in_flight, s.held, round(app.rate, 1),
                   round(app.last_request_at * 1000) if app.last_request_at else None, scale_down_at)
            if row != app.row:
                app.row = row
                changed = True
        if len(seen) != len(apps):
            for key in [k for k in apps if k not in seen]:
                del apps[key]
        if changed or len(self.keys) != len(apps):
            keys = sorted(apps)
            if keys != self.keys:
                self.keys = keys
                self.keys_version += 1
                changed = True
        self.counts = counts
        if changed:
            self.version += 1
        return changed

    def _cold_start_ended(self, s: Sample, app: _App, wall_now: float, state: str) -> None:
        n0, sum0 = app.waits_at_wake
        released = s.cold_waits - n0
        if state == WARM and released > 0:
            wait: float | None = (s.cold_wait_sum - sum0) / released
        elif state == WARM:
            wait = wall_now - app.waking_since  # its held requests left before it turned warm
        else:
            wait = None
        self.cold_starts.appendleft(ColdStart(s.key, wall_now, wait))

    def row(self, key: str) -> tuple[Any, ...] | None:
        app = self.apps.get(key)
        return app.row if app is not None else None

    def page(self, query: str, offset: int, limit: int) -> tuple[list[str], int]:
        """Keys of one page of apps whose key contains ``query`` (case-insensitive), and how many match."""
        q = query.strip().lower()
        keys = [k for k in self.keys if q in k.lower()] if q else self.keys
        return keys[offset:offset + limit], len(keys)

    def summary(self) -> dict[str, Any]:
        return {"apps": len(self.apps), "counts": dict(self.counts),
                "coldStarts": [c.as_json() for c in self.cold_starts]}


def row_json(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(ROW_FIELDS, row, strict=True))
