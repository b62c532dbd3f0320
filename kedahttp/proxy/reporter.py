"""Publishing this proxy instance's activity: a report every REPORT_INTERVAL and wake events at once.

The reporter only builds reports from the counters (counters.py) and hands them to the activity
publisher, whose ``publish_*`` calls never block and never raise: a dead bus costs a request nothing.
Reports are scheduled on absolute deadlines so the interval does not drift; a final report goes out on
shutdown so the scaler sees the in-flight count fall to zero without waiting for staleness. Each report
also says which backends this instance routes (a fingerprint; the set itself when it changes and every
30 s), so the scaler can answer NOT_FOUND for a backend no proxy routes instead of "idle" forever.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from kedahttp.activity.model import Report, WakeEvent
from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.tasks import TaskOwner
from kedahttp.proxy.counters import CounterRegistry


class Publisher(Protocol):
    stats: Any

    async def start(self) -> None: ...

    async def close(self, timeout: float = 2.0) -> None: ...

    def publish_report(self, report: Report) -> None: ...

    def publish_wake(self, wake: WakeEvent) -> None: ...


def instance_id() -> str:
    """Unique per process: host, pid and a random suffix (pids repeat across containers)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


ROUTES_RELIST_SECONDS = 30.0  # the routed set goes out at least this often, for scalers that start later


def routes_fingerprint(keys: Collection[str]) -> int:
    """A non-zero 63-bit fingerprint of a set of backend keys, the same in every process."""
    digest = hashlib.blake2b(digest_size=8)
    for key in sorted(keys):
        digest.update(key.encode())
        digest.update(b"\0")
    return int.from_bytes(digest.digest(), "big") >> 1 or 1


class Reporter(BaseComponent):
    name = "reporter"

    def __init__(self, counters: CounterRegistry, publisher: Publisher, interval_seconds: float,
                 routed: Callable[[], Collection[str] | None] | None = None) -> None:
        self.counters = counters
        self.publisher = publisher
        self.interval_seconds = interval_seconds
        self.routed = routed  # the backends this instance routes; None until its route source reported
        self.tasks = TaskOwner("reporter")
        self.wakes = 0
        self._routes_seen: tuple[int, frozenset[str]] = (0, frozenset())
        self._routes_listed_at = 0.0

    async def start(self) -> None:
        await self.publisher.start()
        self.tasks.spawn(self._run(), "reports")

    def wake(self, backend: str) -> None:
        self.wakes += 1
        self.publisher.publish_wake(WakeEvent(backend=backend, instance=self.counters.instance, at=time.time()))

    def report_now(self) -> Report:
        report = self._with_routes(self.counters.build_report())
        self.publisher.publish_report(report)
        return report

    def _with_routes(self, report: Report) -> Report:
        """Adds the routed set's fingerprint, and the set itself when it changed or is due again.

        The fingerprint is recomputed only when the set of keys differs from the last one seen (a set
        comparison per report; the route table changes rarely)."""
        keys = self.routed() if self.routed is not None else None
        if keys is None:
            return report
        version, seen = self._routes_seen
        if not version or len(keys) != len(seen) or not seen.issuperset(keys):
            seen = frozenset(keys)
            version = routes_fingerprint(seen)
            self._routes_seen = (version, seen)
            self._routes_listed_at = 0.0
        now = time.monotonic()
        if now - self._routes_listed_at >= ROUTES_RELIST_SECONDS:
            self._routes_listed_at = now
            return dataclasses.replace(report, routes_version=version, routes_listed=True, routed=tuple(sorted(seen)))
        return dataclasses.replace(report, routes_version=version)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval_seconds
        next_at = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.report_now()
            next_at += interval
            now = loop.time()
            if next_at < now:  # the loop was blocked: skip missed slots rather than burst
                next_at = now + interval

    async def close(self) -> None:
        await self.tasks.close()
        self.report_now()
        await self.publisher.close()
