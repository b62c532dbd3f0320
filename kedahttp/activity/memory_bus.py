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


class _Log:
    """A retained log; entries are addressed by absolute index so trimming never confuses readers."""

    def __init__(self) -> None:
        self.entries: deque[tuple[float, bytes]] = deque()
        self.trimmed = 0  # absolute index of entries[0]
        self.changed = asyncio.Condition()
        self.down = False  # tests flip this to play an outage

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
        self._log = _log_for(url)

    async def connect(self) -> None:
        if self._log.down:
            raise BusUnavailable(f"{self.url}: down")

    async def publish(self, payloads: Sequence[bytes]) -> None:
        log = self._log
        if log.down:
            raise BusUnavailable(f"{self.url}: down")
        now = time.time()
        log.entries.extend((now, p) for p in payloads)
        log.trim(now)
        async with log.changed:
            log.changed.notify_all()

    async def subscribe(self, since: float) -> AsyncIterator[bytes | CaughtUp]:
        log = self._log
        if log.down:
            raise BusUnavailable(f"{self.url}: down")
        index = log.end
        for ts, payload in list(log.entries):
            if ts >= since:
                yield payload
        yield CAUGHT_UP
        while True:
            async with log.changed:
                await log.changed.wait_for(lambda i=index: log.down or log.end > i)
            if log.down:
                raise BusUnavailable(f"{self.url}: down")
            start = max(index, log.trimmed) - log.trimmed
            batch = [payload for _, payload in list(log.entries)[start:]]
            index = log.end
            for payload in batch:
                yield payload

    async def close(self) -> None:
        pass
