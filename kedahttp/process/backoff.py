"""Retry delays: exponential backoff with a cap and optional jitter, written once for every retry loop.

The bus feed and publisher, the Kubernetes watches and the dev KEDA emulator all wait longer after each
failure, up to a cap, and start over after a success; each caller keeps its own numbers (initial, cap,
jitter range) but the rule is this one. Pure: no clock and no sleeping; the caller sleeps however suits
it (``asyncio.sleep``, an ``Event.wait`` that a stop or a wake cuts short, a thread's wait).

Jitter multiplies a delay by a factor drawn uniformly from ``jitter`` (``(0.5, 1.0)``: between half and
all of it), so replicas that failed together do not retry together; the default ``(1.0, 1.0)`` is none.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delays ``initial_seconds``, doubling after each one up to ``maximum_seconds``; ``reset`` starts over."""

    initial_seconds: float
    maximum_seconds: float
    jitter: tuple[float, float] = (1.0, 1.0)
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)
    _next: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial_seconds <= self.maximum_seconds:
            raise ValueError(
                f"backoff needs 0 < initial <= maximum, got initial={self.initial_seconds} "
                f"maximum={self.maximum_seconds}"
            )
        low, high = self.jitter
        if not 0 <= low <= high:
            raise ValueError(f"backoff jitter needs 0 <= low <= high, got {self.jitter}")
        self._next = self.initial_seconds

    @property
    def delay_seconds(self) -> float:
        """The delay the next ``next_delay`` is based on, before jitter (for logs)."""
        return self._next

    def next_delay(self, *, jitter: bool = True) -> float:
        """The delay to wait now (jittered unless ``jitter=False``); the one after it doubles, to the cap."""
        delay = self._next
        self._next = min(delay * 2, self.maximum_seconds)
        return self.jittered(delay) if jitter else delay

    def jittered(self, delay: float) -> float:
        """``delay`` times a factor drawn from the jitter range (itself when there is no jitter)."""
        low, high = self.jitter
        if low == high == 1.0:
            return delay
        return delay * self.uniform(low, high)

    def reset(self) -> None:
        """After a success: the next delay is the initial one again."""
        self._next = self.initial_seconds
