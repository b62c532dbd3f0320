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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

COLD, WAKING, WARM = "cold", "waking", "warm"
RATE_TIME_CONSTANT_SECONDS = 2.0  # the request rate is an exponential average over about this long
RECENT_COLD_STARTS = 20


# One app's counters at one moment, a plain tuple (10,000 are made every tick): key, ready endpoints as the
# proxy sees them, in flight, held, requests started (cumulative).
Sample = tuple[str, int, int, int, int]
# An app's held requests released to an endpoint so far (cumulative) and their total wait in seconds; read
# only when an app starts or ends waking.
ColdWaits = Callable[[str], tuple[int, float]]


@dataclass(slots=True)
class _App:
    row: tuple[Any, ...]
    started: int
    raw: Sample | None = None  # the previous sample: an idle app whose sample did not change is skipped
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

    def __init__(self, scale_down_after: Callable[[str], float | None] = lambda key: None,
                 cold_waits: ColdWaits = lambda key: (0, 0.0)) -> None:
        self.scale_down_after = scale_down_after  # seconds from the last request to scale-down, if known
        self.cold_waits = cold_waits
        self.apps: dict[str, _App] = {}
        self.keys: list[str] = []  # sorted; rebuilt when the set of apps changes
        self.keys_version = 0
        self.version = 0  # bumped when any row, the key set or the cold-start list changes
        self.cold_starts: deque[ColdStart] = deque(maxlen=RECENT_COLD_STARTS)
        self.counts = {COLD: 0, WAKING: 0, WARM: 0}
        self._t = 0.0

    def update(self, samples: Sequence[Sample], wall_now: float) -> bool:
        dt = wall_now - self._t if self._t else 0.0
        self._t = wall_now
        alpha = min(1.0, dt / RATE_TIME_CONSTANT_SECONDS) if dt > 0 else 0.0
        changed = added = False
        counts = {COLD: 0, WAKING: 0, WARM: 0}
        apps = self.apps
        n = 0
        for s in samples:
            n += 1
            key, ready, in_flight, held, started = s[0], s[1], s[2], s[3], s[4]
            app = apps.get(key)
            if app is None:
                app = apps[key] = _App(row=(), started=started)
                added = True
            elif s == app.raw and not app.rate:  # the common case at 10,000 apps: nothing happened
                counts[app.row[1]] += 1
                continue
            app.raw = s
            if started != app.started:
                if dt > 0:
                    app.rate += alpha * ((started - app.started) / dt - app.rate)
                app.started = started
                app.last_request_at = wall_now
            elif app.rate:
                app.rate = 0.0 if app.rate < 0.05 else app.rate * (1.0 - alpha)
            state = WARM if ready else WAKING if held else COLD
            before = app.row[1] if app.row else COLD
            if state == WAKING and before != WAKING:
                app.waking_since = wall_now
                app.waits_at_wake = self.cold_waits(key)
            elif before == WAKING and state != WAKING:
                self._cold_start_ended(s, app, wall_now, state)
                changed = True
            counts[state] += 1
            scale_down_at = None
            if state == WARM and app.last_request_at and not (in_flight or held):
                after = self.scale_down_after(key)
                if after is not None:
                    scale_down_at = round((app.last_request_at + after) * 1000)
            row = (key, state, ready, in_flight, held, round(app.rate, 1),
                   round(app.last_request_at * 1000) if app.last_request_at else None, scale_down_at)
            if row != app.row:
                app.row = row
                changed = True
        if added or n != len(apps):
            if n != len(apps):  # some apps are gone: keep those sampled now
                sampled = {s[0] for s in samples}
                for key in [k for k in apps if k not in sampled]:
                    del apps[key]
            self.keys = sorted(apps)
            self.keys_version += 1
            changed = True
        self.counts = counts
        if changed:
            self.version += 1
        return changed

    def _cold_start_ended(self, s: Sample, app: _App, wall_now: float, state: str) -> None:
        n0, sum0 = app.waits_at_wake
        n1, sum1 = self.cold_waits(s[0])
        released = n1 - n0
        if state == WARM and released > 0:
            wait: float | None = (sum1 - sum0) / released
        elif state == WARM:
            wait = wall_now - app.waking_since  # its held requests left before it turned warm
        else:
            wait = None
        self.cold_starts.appendleft(ColdStart(s[0], wall_now, wait))

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
