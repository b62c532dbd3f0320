"""The push hub behind StreamIsActive: one cheap watch per open stream, woken only when it must send.

A fold returns the backends that just saw activity; ``notify`` looks up the watches of exactly those
backends and wakes the ones that were inactive, so a wake event reaches KEDA as fast as the bus delivers
it, with no polling and no thread per stream. A watch sends ``true`` when it opens on an active
backend and on every inactive-to-active change, never periodically: falling back to inactive is only
noticed by the slow ``reevaluate`` timer and sends nothing (KEDA ignores ``false``).

While the data is not fresh (bus down, replay in progress) nothing is sent, and what each watch last
saw is forgotten: when fresh data returns, every watch on an active backend sends ``true`` once, since
KEDA may have treated the outage as inactivity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable


class Watch:
    """One open StreamIsActive call."""

    __slots__ = ("active", "activity_window_seconds", "backend", "due", "event")

    def __init__(self, backend: str, activity_window_seconds: float) -> None:
        self.backend = backend
        self.activity_window_seconds = activity_window_seconds
        self.active = False  # what this stream last told KEDA (True) or has not told it (False)
        self.due = 0  # trues owed to the stream, collapsed: KEDA needs one per change, not a count
        self.event = asyncio.Event()


class StreamHub:
    def __init__(self, is_active: Callable[[str, float, float], bool]) -> None:
        self._is_active = is_active  # (backend, now, activity window) -> bool
        self._watches: dict[str, set[Watch]] = {}
        self._fresh = False
        self.closed = False
        self.pushes = 0  # trues sent, for telemetry
        self.open_streams = 0

    # -- stream side ------------------------------------------------------------------------------------

    def open(self, backend: str, activity_window_seconds: float, now: float) -> Watch:
        watch = Watch(backend, activity_window_seconds)
        self._watches.setdefault(backend, set()).add(watch)
        self.open_streams += 1
        if self.closed:
            watch.event.set()
        elif self._fresh:
            self._evaluate(watch, now)
        return watch

    def close(self, watch: Watch) -> None:
        watches = self._watches.get(watch.backend)
        if watches is not None and watch in watches:
            watches.discard(watch)
            self.open_streams -= 1
            if not watches:
                del self._watches[watch.backend]

    async def next_push(self, watch: Watch) -> bool:
        """Waits until a ``true`` is due on this stream (returns True) or the hub closes (False)."""
        while True:
            if self.closed:
                return False
            if watch.due:
                watch.due = 0
                self.pushes += 1
                return True
            watch.event.clear()
            await watch.event.wait()

    # -- data side --------------------------------------------------------------------------------------

    def notify(self, backends: Iterable[str], now: float) -> None:
        """Called after every fold with the backends that saw activity in it."""
        if not self._fresh or not self._watches:
            return
        watched = self._watches
        for backend in backends:
            watches = watched.get(backend)
            if watches:
                for watch in watches:
                    if not watch.active:
                        self._evaluate(watch, now)

    def reevaluate(self, now: float) -> None:
        """The slow timer: notices active-to-inactive changes (sending nothing) and catches any
        inactive-to-active change not signalled by ``notify``."""
        if not self._fresh:
            return
        for watches in self._watches.values():
            for watch in watches:
                self._evaluate(watch, now)

    def set_fresh(self, fresh: bool, now: float) -> None:
        if fresh == self._fresh:
            return
        self._fresh = fresh
        if fresh:
            self.reevaluate(now)
        else:
            for watches in self._watches.values():
                for watch in watches:
                    watch.active = False

    def shutdown(self) -> None:
        """Ends every stream (with OK) and any stream opened from now on."""
        self.closed = True
        for watches in self._watches.values():
            for watch in watches:
                watch.event.set()

    def _evaluate(self, watch: Watch, now: float) -> None:
        active = self._is_active(watch.backend, now, watch.activity_window_seconds)
        if active and not watch.active:
            watch.due = 1
            watch.event.set()
        watch.active = active
