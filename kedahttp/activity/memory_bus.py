"""The in-process bus (``memory://NAME``): for ``kedahttp dev`` and unit tests, where proxy and scaler
share one process. Same semantics as the network transports: a retained log, replay from a time, then
live delivery to every subscriber.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence

from kedahttp.activity.bus import CAUGHT_UP, RETENTION_SECONDS, BusUnavailable, CaughtUp
from kedahttp.process.secrets import redact_url


class _Log:
    """A retained log; entries are addressed by absolute index so trimming never confuses readers.

    Waiters are plain futures created on the waiting loop (not a Condition bound to the first loop that
    used it), because a log outlives any one event loop, and flipping ``down`` wakes them at once.
    """

    def __init__(self) -> None:
        self.entries: deque[tuple[float, bytes]] = deque()
        self.trimmed = 0  # absolute index of entries[0]
        self._down = False
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def down(self) -> bool:
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        """Tests flip this to play an outage: subscribers fail at once, publish and connect fail."""
        self._down = value
        self.notify()

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def changed(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)

    @property
    def end(self) -> int:
        return self.trimmed + len(self.entries)

    def trim(self, now: float) -> None:
        horizon = now - RETENTION_SECONDS
        while self.entries and self.entries[0][0] < horizon:
            self.entries.popleft()
            self.trimmed += 1


_LOGS: dict[str, _Log] = {}


def _log_for(url: str) -> _Log:
    name = url.partition("://")[2] or "default"
    log = _LOGS.get(name)
    if log is None:
        log = _LOGS[name] = _Log()
    return log


class MemoryTransport:
    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = redact_url(url)  # the URL as messages show it: no credentials
        self._log = _log_for(url)

    async def connect(self) -> None:
        if self._log.down:
            raise BusUnavailable(f"{self.shown}: down")

    async def publish(self, payloads: Sequence[bytes]) -> None:
        log = self._log
        if log.down:
            raise BusUnavailable(f"{self.shown}: down")
        now = time.time()
        log.entries.extend((now, p) for p in payloads)
        log.trim(now)
        log.notify()

    async def subscribe(self, since: float) -> AsyncIterator[bytes | CaughtUp]:
        log = self._log
        if log.down:
            raise BusUnavailable(f"{self.shown}: down")
        index = log.end
        for ts, payload in list(log.entries):
            if ts >= since:
                yield payload
        yield CAUGHT_UP
        while True:
            while not log.down and log.end <= index:
                await log.changed()
            if log.down:
                raise BusUnavailable(f"{self.shown}: down")
            start = max(index, log.trimmed) - log.trimmed
            batch = [payload for _, payload in list(log.entries)[start:]]
            index = log.end
            for payload in batch:
                yield payload

    async def close(self) -> None:
        pass
