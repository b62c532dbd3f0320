"""The proxy's event lines: each cold start, each 503/504 answered from holding, each upstream error.

These are the moments an operator asks about ("why was that request slow?", "why 504?"), so they are
always logged, as JSON lines with the app's key, unlike ordinary requests (the sampled access log). A
storm must not flood the log: each (app, kind) pair may log a burst of ``BURST`` lines, then one per
``INTERVAL_SECONDS``; the next line that goes out says how many were suppressed meanwhile. Events are
rare compared with requests and never on the path of a request that succeeds, so a line costs a dict
lookup and, when allowed, a ``logging`` call.

``RateLimiter`` is the pure part (plain data, a clock passed in); ``EventLog`` writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

BURST: Final = 5
INTERVAL_SECONDS: Final = 10.0
_MAX_KEYS: Final = 10_000  # pairs remembered; past it, idle ones are forgotten

log = logging.getLogger("kedahttp.proxy.events")


class RateLimiter:
    """A token bucket per key: ``burst`` at once, refilled at one per ``interval`` seconds."""

    __slots__ = ("_buckets", "burst", "interval")

    def __init__(self, burst: int = BURST, interval: float = INTERVAL_SECONDS) -> None:
        self.burst = burst
        self.interval = interval
        # key -> [tokens, updated at, suppressed since the last allowed]
        self._buckets: dict[Any, list[float]] = {}

    def allow(self, key: Any, now: float) -> int | None:
        """None when the event is suppressed; else how many of this key were suppressed before it."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_KEYS:
                self._forget_idle(now)
            bucket = self._buckets[key] = [float(self.burst), now, 0.0]
        tokens = min(float(self.burst), bucket[0] + (now - bucket[1]) / self.interval)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            bucket[2] += 1
            return None
        bucket[0] = tokens - 1.0
        suppressed = int(bucket[2])
        bucket[2] = 0.0
        return suppressed

    def _forget_idle(self, now: float) -> None:
        full = self.burst * self.interval
        for key in [k for k, b in self._buckets.items() if now - b[1] >= full and not b[2]]:
            del self._buckets[key]
        if len(self._buckets) >= _MAX_KEYS:  # all busy: start over rather than grow without bound
            self._buckets.clear()


class EventLog:
    """Writes the event lines through ``logging`` (the process's JSON or text format)."""

    def __init__(self, limiter: RateLimiter | None = None, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log) -> None:
        self.limiter = limiter or RateLimiter()
        self.clock = clock
        self.logger = logger

    def _emit(self, level: int, kind: str, backend: str, message: str, fields: dict[str, Any]) -> None:
        suppressed = self.limiter.allow((backend, kind), self.clock())
        if suppressed is None:
            return
        extra = {"event": kind, "backend": backend, **fields}
        if suppressed:
            extra["suppressed"] = suppressed
        self.logger.log(level, message, extra=extra)

    def cold_start(self, backend: str, wait_seconds: float, outcome: str, held: int) -> None:
        """A cold episode ended: ``outcome`` is ``ready`` (an endpoint turned ready), ``timeout`` (every held
        request timed out first) or ``removed`` (the app went away)."""
        level = logging.INFO if outcome == "ready" else logging.WARNING
        self._emit(level, "cold_start", backend, "cold start " + outcome,
                   {"wait_seconds": round(wait_seconds, 3), "outcome": outcome, "held": held})

    def held_answered(self, backend: str, status: int, waited_seconds: float) -> None:
        """A held request got the proxy's own 503 (held-request limit) or 504 (cold-start timeout)."""
        reason = "held-request limit reached" if status == 503 else "app not ready within the cold-start timeout"
        self._emit(logging.WARNING, f"held_{status}", backend, f"held request answered {status}: {reason}",
                   {"status": status, "waited_seconds": round(waited_seconds, 3)})

    def upstream_error(self, backend: str, endpoint: str, reason: str, status: int) -> None:
        """An upstream failed a request: refused, reset, malformed, or a timeout (504 or a cut body)."""
        self._emit(logging.WARNING, "upstream_error", backend, "upstream error: " + reason,
                   {"endpoint": endpoint, "reason": reason, "status": status})
