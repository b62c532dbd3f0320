"""Adaptive keep-alive: per backend, a histogram of idle times learned from the activity the scaler folds,
and the active/inactive answer it implies (the hybrid policy of "Serverless in the Wild", ATC'20).

A fixed activity window keeps every app warm for the same time after its last request: too long for an
app called every two minutes, too short for a timer that fires every fifteen. Here each backend's idle
gaps (whole minutes between two minutes with activity, at least one idle minute between them) go into
1-minute bins over 4 hours. When that histogram is representative (enough gaps, most within range,
concentrated rather than flat: the coefficient of variation of the bin counts), the backend counts as
active from its last activity ``L`` until the idle-time tail (p99 plus a margin) and not after. When the
head of the distribution (p5) is far enough away, the backend is let go once its burst is over (a bin
without activity) and counts as active again shortly before the head: the push stream then wakes it
ahead of the expected request.
Otherwise the backend keeps the trigger's activity window.

Every replica learns the same thing from the same log: observations use the times the messages carry
(report ``sent_at`` while something is in flight, ``last_request_at``, a wake's ``at``), and an
observation not newer than what is known is ignored, so replaying history over a restored snapshot
counts nothing twice. Snapshots are small JSON documents that the scaler keeps in Redis or NATS
key-value storage (keepalive_store.py).

Pure: no clock, no I/O; callers pass ``now`` (wall-clock seconds).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, cast

from kedahttp.activity.aggregate import Aggregator
from kedahttp.activity.model import BackendActivityLike, ReportLike, WakeLike

BIN_SECONDS: Final = 60
RANGE_BINS: Final = 240  # 1-minute bins over 4 hours; longer gaps are out of range
MAX_GAPS: Final = 1000  # newest gaps kept per backend
MIN_GAPS: Final = 5  # fewer gaps than this: not representative yet
MAX_OUT_OF_RANGE_FRACTION: Final = 0.5
MIN_BIN_CV: Final = 2.0  # ATC'20: a flat histogram (low CV) predicts nothing
HEAD_PERCENTILE: Final = 5.0
TAIL_PERCENTILE: Final = 99.0
MARGIN: Final = 0.10  # the keep-alive ends this much after the tail, pre-warming starts this much before the head
MIN_RELEASE_SECONDS: Final = 120.0  # a pre-warm closer than this to the last activity is not worth a release
SNAPSHOT_VERSION: Final = 1
# A backend with no activity for this long is forgotten (its model and its stored snapshot): apps are
# renamed and removed, and nothing else would ever drop them. A week keeps what a weekday-only app learned
# across a weekend; every gap it could teach is out of range (4 hours) long before that.
FORGET_AFTER_SECONDS: Final = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Window:
    """After its last activity at ``L`` the backend is active in ``[L + prewarm_seconds, L + keep_seconds]``."""

    prewarm_seconds: float
    keep_seconds: float


def percentile(ordered: list[int], pct: float) -> int:
    """The nearest-rank percentile of a sorted, non-empty list."""
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def window_for(gaps: Iterable[int]) -> Window | None:
    """The keep-alive window the idle gaps (in minutes) imply, or None when they are not representative."""
    values = list(gaps)
    total = len(values)
    if total < MIN_GAPS:
        return None
    in_range = sorted(g for g in values if g <= RANGE_BINS)
    if not in_range or total - len(in_range) > MAX_OUT_OF_RANGE_FRACTION * total:
        return None
    counts: dict[int, int] = {}
    for gap in in_range:
        counts[gap] = counts.get(gap, 0) + 1
    mean = len(in_range) / RANGE_BINS
    variance = (sum((c - mean) ** 2 for c in counts.values()) + (RANGE_BINS - len(counts)) * mean**2) / RANGE_BINS
    if math.sqrt(variance) / mean < MIN_BIN_CV:
        return None
    head = percentile(in_range, HEAD_PERCENTILE)
    tail = percentile(in_range, TAIL_PERCENTILE)
    # A gap of g minutes puts the next request between (g - 1) and (g + 1) minutes after the last one.
    prewarm = (head - 1) * BIN_SECONDS * (1.0 - MARGIN)
    if prewarm < MIN_RELEASE_SECONDS:
        prewarm = 0.0
    return Window(prewarm, (tail + 1) * BIN_SECONDS * (1.0 + MARGIN))


class _Model:
    __slots__ = ("gaps", "last_at", "last_minute", "window")

    def __init__(self) -> None:
        self.last_at = 0.0  # wall-clock seconds of the newest activity seen
        self.last_minute = 0
        self.gaps: dict[int, int] = {}  # minute the gap ended -> idle gap in minutes, insertion = time order
        self.window: Window | None = None


class KeepAlive:
    """Every backend's idle-time model, and which backends opted in (see the module docstring)."""

    def __init__(self) -> None:
        self._models: dict[str, _Model] = {}
        self._adaptive: set[str] = set()
        self.dirty: set[str] = set()  # backends whose snapshot changed since the last ``take_dirty``

    # -- learning ---------------------------------------------------------------------------------------

    def observe(self, message: ReportLike | WakeLike, now: float) -> None:
        """Learns from one folded report or wake (the times it carries, never later than ``now``)."""
        backends: Iterable[BackendActivityLike] | None = getattr(message, "backends", None)
        if backends is None:
            wake = cast(WakeLike, message)
            self.seen(wake.backend, min(wake.at, now))
            return
        sent_at = min(cast(ReportLike, message).sent_at, now)
        for entry in backends:
            if entry.in_flight or entry.held:
                self.seen(entry.backend, sent_at)
            elif entry.started and entry.last_request_at > 0.0:
                self.seen(entry.backend, min(entry.last_request_at, now))

    def seen(self, backend: str, at: float) -> None:
        """Activity of ``backend`` at ``at``; closes an idle gap when it comes after an idle minute."""
        model = self._models.get(backend)
        if model is None:
            model = self._models[backend] = _Model()
        if at <= model.last_at:
            return
        model.last_at = at
        minute = int(at // BIN_SECONDS)
        if minute <= model.last_minute:
            return
        if model.last_minute and minute - model.last_minute >= 2:
            model.gaps[minute] = minute - model.last_minute
            if len(model.gaps) > MAX_GAPS:
                del model.gaps[next(iter(model.gaps))]
            model.window = window_for(model.gaps.values())
        model.last_minute = minute
        self.dirty.add(backend)

    # -- deciding ---------------------------------------------------------------------------------------

    def set_adaptive(self, backend: str, adaptive: bool) -> None:
        """Records the trigger's choice (called on every call that carries the trigger's metadata)."""
        if adaptive:
            self._adaptive.add(backend)
        else:
            self._adaptive.discard(backend)

    def window(self, backend: str) -> Window | None:
        model = self._models.get(backend)
        return None if model is None else model.window

    def last_activity(self, backend: str) -> float:
        model = self._models.get(backend)
        return 0.0 if model is None else model.last_at

    def is_active(self, aggregator: Aggregator, backend: str, now: float, activity_window_seconds: float) -> bool:
        """IsActive for ``backend``: the aggregator's answer, unless the backend opted in to the adaptive
        keep-alive; then busy now, or within the learned window (or the activity window until one is learned)."""
        if backend not in self._adaptive:
            return aggregator.is_active(backend, now, activity_window_seconds)
        if aggregator.is_active(backend, now, 0.0):
            return True
        model = self._models.get(backend)
        if model is None or not model.last_at:
            return False
        idle = now - model.last_at
        window = model.window
        if window is None:
            return idle <= activity_window_seconds
        # Within a bin of the last activity the app is in a burst, not in a gap: never let go there
        # (a request held meanwhile has no report yet, only its wake).
        return idle <= BIN_SECONDS or window.prewarm_seconds <= idle <= window.keep_seconds

    def next_change(self, backend: str, now: float, activity_window_seconds: float) -> float | None:
        """When an idle adaptive backend's answer next changes without new activity (None: it does not)."""
        model = self._models.get(backend)
        if backend not in self._adaptive or model is None or not model.last_at:
            return None
        window = model.window
        edges = ((activity_window_seconds,) if window is None
                 else (BIN_SECONDS, window.prewarm_seconds, window.keep_seconds))
        for edge in edges:
            at = model.last_at + edge
            if at > now:
                return at
        return None

    def forget_idle(self, now: float) -> list[str]:
        """Drops the backends idle for FORGET_AFTER_SECONDS and returns them (their snapshots go too)."""
        horizon = now - FORGET_AFTER_SECONDS
        gone = [backend for backend, model in self._models.items() if model.last_at < horizon]
        for backend in gone:
            del self._models[backend]
            self._adaptive.discard(backend)  # the next call carrying the trigger adds it back
            self.dirty.discard(backend)
        return gone

    # -- persistence ------------------------------------------------------------------------------------

    def take_dirty(self) -> list[tuple[str, str]]:
        """Snapshots of the backends that changed since the last call, and forgets that they changed."""
        out = [(backend, self.snapshot(backend)) for backend in sorted(self.dirty)]
        self.dirty.clear()
        return out

    def snapshot(self, backend: str) -> str:
        model = self._models[backend]
        return json.dumps({
            "v": SNAPSHOT_VERSION, "last_at": model.last_at, "last_minute": model.last_minute,
            "gaps": [[end, gap] for end, gap in model.gaps.items()],
        }, separators=(",", ":"))

    def restore(self, backend: str, text: str) -> None:
        """Merges a stored snapshot: newer knowledge wins, gaps are united. Raises ValueError on a bad one."""
        try:
            data = json.loads(text)
            if data.get("v") != SNAPSHOT_VERSION:
                raise ValueError(f"snapshot version {data.get('v')!r}, expected {SNAPSHOT_VERSION}")
            last_at = float(data["last_at"])
            last_minute = int(data["last_minute"])
            gaps = {int(end): int(gap) for end, gap in data["gaps"]}
        except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"bad keep-alive snapshot for {backend}: {exc}") from exc
        model = self._models.get(backend)
        if model is None:
            model = self._models[backend] = _Model()
        if last_at > model.last_at:
            model.last_at = last_at
        model.last_minute = max(model.last_minute, last_minute)
        merged = dict(sorted({**gaps, **model.gaps}.items()))
        while len(merged) > MAX_GAPS:
            del merged[next(iter(merged))]
        model.gaps = merged
        model.window = window_for(merged.values())

    @property
    def backends(self) -> int:
        return len(self._models)
