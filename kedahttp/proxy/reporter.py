"""Publishing this proxy instance's activity: a report every REPORT_INTERVAL and wake events at once.

The reporter only builds reports from the counters (counters.py) and hands them to the activity
publisher, whose ``publish_*`` calls never block and never raise: a dead bus costs a request nothing.
Reports are scheduled on absolute deadlines so the interval does not drift; a final report goes out on
shutdown so the scaler sees the in-flight count fall to zero without waiting for staleness.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
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


class Reporter(BaseComponent):
    name = "reporter"

    def __init__(self, counters: CounterRegistry, publisher: Publisher, interval_seconds: float) -> None:
        self.counters = counters
        self.publisher = publisher
        self.interval_seconds = interval_seconds
        self.tasks = TaskOwner("reporter")
        self.wakes = 0

    async def start(self) -> None:
        await self.publisher.start()
        self.tasks.spawn(self._run(), "reports")

    def wake(self, backend: str) -> None:
        self.wakes += 1
        self.publisher.publish_wake(WakeEvent(backend=backend, instance=self.counters.instance, at=time.time()))

    def report_now(self) -> Report:
        report = self.counters.build_report()
        self.publisher.publish_report(report)
        return report

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
