"""The live page's model: per-app state (cold, waking, warm) derived from periodic samples, pure.

The proxy already counts everything the page shows; this module turns a sample of those counters (taken
by live.py every tick) into one row per app and remembers recent cold starts. Nothing here reads a
clock or a socket: times come in with each sample, so the rules are tested without a loop. Rows carry
absolute times (last request, expected scale-down) rather than ages, so an idle app's row does not
change every second: the browser computes ages itself, and the event stream carries only real changes.
A tick costs what moved, not how many apps there are: samples come as columns (``Samples``), the apps
that moved are found by comparing columns, and rows are written only when a viewer asks for them.

State rules: warm while the app has a ready endpoint; waking while it has none and requests are held
(the first held request published a wake); cold otherwise. A waking app that turns warm is a cold
start, recorded with the mean wait of the requests it released; one that turns cold again timed out.
"""

from __future__ import annotations

import heapq
import itertools
import math
import operator
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

COLD, WAKING, WARM = "cold", "waking", "warm"
RATE_TIME_CONSTANT_SECONDS = 2.0  # the request rate is an exponential average over about this long
RATE_SHOWN_FROM = 0.05  # below this the rate shows as 0 (it rounds to 0.0) and stops decaying
RECENT_COLD_STARTS = 20


# One app's counters at one moment: key, ready endpoints as the proxy sees them, in flight, held, requests
# started (cumulative).
Sample = tuple[str, int, int, int, int]
# An app's held requests released to an endpoint so far (cumulative) and their total wait in seconds; read
# only when an app starts or ends waking.
ColdWaits = Callable[[str], tuple[int, float]]


@dataclass(frozen=True, slots=True)
class Samples:
    """Every app's counters at one moment, a column per figure: 10,000 apps sampled four times a second
    make five lists, not 10,000 tuples, and the model finds the apps that moved by comparing columns."""

    keys: list[str]
    ready: list[int]
    in_flight: list[int]
    held: list[int]
    started: list[int]

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> Samples:
        columns = list(zip(*samples, strict=True)) or [(), (), (), (), ()]
        return cls(*(list(column) for column in columns))

    def moved_since(self, before: Samples | None) -> list[int]:
        """Indexes of the apps whose figures differ from ``before`` (every app when the keys differ); a
        column equal to its previous self (most of them, most ticks) costs one list comparison."""
        if before is None or before.keys != self.keys:
            return list(range(len(self.keys)))
        moved: set[int] = set()
        for now, then in ((self.ready, before.ready), (self.in_flight, before.in_flight), (self.held, before.held),
                          (self.started, before.started)):
            if now != then:
                moved.update(itertools.compress(itertools.count(), map(operator.ne, now, then)))
        return sorted(moved)


@dataclass(slots=True)
class _App:
    state: str
    started: int
    ready: int = 0
    in_flight: int = 0
    held: int = 0
    rate: float = 0.0  # requests per second at ``rate_at`` (wall time); decays from there
    rate_at: float = 0.0
    last_request_at: float = 0.0  # wall time, 0 when never seen
    waking_since: float = 0.0
    waits_at_wake: tuple[int, float] = (0, 0.0)
    row: tuple[Any, ...] | None = None  # written when a viewer asks, kept until the app moves


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
    """Folds samples into per-app state; ``update`` returns whether anything a viewer sees changed.

    A tick's work follows what moved, not how many apps there are: the apps whose figures changed are
    found by comparing the sample's columns with the previous ones (C-level), and only they are folded.
    A row is written when a viewer asks for it (``row``), so the request rate, which decays between
    requests, is computed for the apps on a viewer's page rather than for every app every tick; while any
    rate is still decaying, ``update`` says so, and the viewers look at their pages again."""

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
        self._decaying: dict[str, float] = {}  # app -> when its rate shows as 0
        self._decay_ends: list[tuple[float, str]] = []  # heap of those times (with stale ones)
        self._before: Samples | None = None
        self._t = 0.0

    def update(self, samples: Samples, wall_now: float) -> bool:
        dt = wall_now - self._t if self._t else 0.0
        self._t = wall_now
        alpha = min(1.0, dt / RATE_TIME_CONSTANT_SECONDS) if dt > 0 else 0.0
        changed = bool(self._decaying)  # a decaying rate moves a row even when nothing else does
        ends = self._decay_ends
        while ends and ends[0][0] <= wall_now:
            until, key = heapq.heappop(ends)
            if self._decaying.get(key) == until:  # not moved on by a later request
                del self._decaying[key]
                self.apps[key].row = None  # its rate shows as 0 from now on
        moved = samples.moved_since(self._before)
        self._before = samples
        apps, counts = self.apps, self.counts
        keys, readies, in_flights, helds, starteds = (samples.keys, samples.ready, samples.in_flight,
                                                      samples.held, samples.started)
        added = False
        for i in moved:
            key, ready, in_flight, held, started = keys[i], readies[i], in_flights[i], helds[i], starteds[i]
            app = apps.get(key)
            if app is None:  # counts before its first sample are not requests the page saw
                app = apps[key] = _App(COLD, started)
                counts[COLD] += 1
                added = True
            elif (ready, in_flight, held, started) == (app.ready, app.in_flight, app.held, app.started):
                continue  # moved only in position (the set of apps changed)
            if started != app.started:
                rate = self._rate(app, wall_now - dt)
                app.rate = rate + alpha * ((started - app.started) / dt - rate) if dt > 0 else rate
                app.rate_at = wall_now
                app.started = started
                app.last_request_at = wall_now
                until = wall_now + (RATE_TIME_CONSTANT_SECONDS * math.log(app.rate / RATE_SHOWN_FROM)
                                    if app.rate > RATE_SHOWN_FROM else 0.0)
                self._decaying[key] = until
                heapq.heappush(self._decay_ends, (until, key))
            state = WARM if ready else WAKING if held else COLD
            before = app.state
            if state == WAKING and before != WAKING:
                app.waking_since = wall_now
                app.waits_at_wake = self.cold_waits(key)
            elif before == WAKING and state != WAKING:
                self._cold_start_ended(key, app, wall_now, state)
            if state != before:
                counts[before] -= 1
                counts[state] += 1
                app.state = state
            app.ready, app.in_flight, app.held, app.row = ready, in_flight, held, None
            changed = True
        if added or len(keys) != len(apps):
            if len(keys) != len(apps):  # some apps are gone: keep those sampled now
                for key in set(apps).difference(keys):
                    counts[apps.pop(key).state] -= 1
                    self._decaying.pop(key, None)
            self.keys = sorted(apps)
            self.keys_version += 1
            changed = True
        if changed:
            self.version += 1
        return changed

    @staticmethod
    def _rate(app: _App, at: float) -> float:
        """The app's request rate at ``at``: as last computed, decayed since."""
        if not app.rate or at <= app.rate_at:
            return app.rate
        return app.rate * math.exp((app.rate_at - at) / RATE_TIME_CONSTANT_SECONDS)

    def _cold_start_ended(self, key: str, app: _App, wall_now: float, state: str) -> None:
        n0, sum0 = app.waits_at_wake
        n1, sum1 = self.cold_waits(key)
        released = n1 - n0
        if state == WARM and released > 0:
            wait: float | None = (sum1 - sum0) / released
        elif state == WARM:
            wait = wall_now - app.waking_since  # its held requests left before it turned warm
        else:
            wait = None
        self.cold_starts.appendleft(ColdStart(key, wall_now, wait))

    def row(self, key: str) -> tuple[Any, ...] | None:
        """The app's row as of the latest update."""
        app = self.apps.get(key)
        if app is None:
            return None
        if app.row is None or key in self._decaying:
            rate = self._rate(app, self._t)
            scale_down_at = None
            if app.state == WARM and app.last_request_at and not (app.in_flight or app.held):
                after = self.scale_down_after(key)
                if after is not None:
                    scale_down_at = round((app.last_request_at + after) * 1000)
            app.row = (key, app.state, app.ready, app.in_flight, app.held,
                       round(rate, 1) if rate >= RATE_SHOWN_FROM else 0.0,
                       round(app.last_request_at * 1000) if app.last_request_at else None, scale_down_at)
        return app.row

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
