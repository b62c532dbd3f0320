"""The live view of `kedahttp dev`: per app, replicas ready/desired, in-flight, held, request rate, the
metrics the emulated HPA acts on, and the last scaling events.

Traffic numbers come from the bus through the scaler's own fold (activity.aggregate, fed by
activity.feed), so the view shows what the scaler sees, not a second opinion; the metric values and
targets are the ones the emulator last read with GetMetrics/GetMetricSpec. On a terminal the screen
is redrawn once a second and log records are shown in a short panel under it (so they do not scroll
the table away); when stdout is not a terminal the view prints a plain line per app when its replica
counts change, and every few seconds while it has traffic.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from kedahttp.activity.aggregate import Aggregator, BackendMetrics
from kedahttp.activity.bus import Transport
from kedahttp.activity.feed import ActivityFeed
from kedahttp.activity.model import ReportLike, WakeLike
from kedahttp.dev.config import AppConfig
from kedahttp.dev.emulator import KedaEmulator
from kedahttp.dev.runtime import LocalRuntime
from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.tasks import TaskOwner

RATE_WINDOW_SECONDS = 10.0
REFRESH_SECONDS = 1.0
PLAIN_BUSY_EVERY_SECONDS = 5.0
LOG_LINES = 8
EVENT_LINES = 4
CLEAR = "\x1b[H\x1b[2J"


@dataclass(frozen=True, slots=True)
class AppLine:
    key: str
    hosts: str
    ready: int
    desired: int
    replicas: int
    stopping: int
    traffic: BackendMetrics
    metrics: str  # "concurrency 3.2/5"
    state: str


_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class _Capture(logging.Handler):
    """Keeps the last log lines for the panel under the table while the live view owns the screen."""

    def __init__(self, lines: deque[str]) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record).splitlines()[0]
            extra = " ".join(f"{k}={v}" for k, v in record.__dict__.items()
                             if k not in _STANDARD_ATTRS and not k.startswith("_"))
            self.lines.append(f"{line} {extra}"[:200] if extra else line[:200])
        except Exception:
            self.handleError(record)


class LiveView(BaseComponent):
    name = "dev-view"

    def __init__(self, apps: Sequence[AppConfig], runtime: LocalRuntime, emulator: KedaEmulator,
                 transport: Transport, header: Sequence[str], *, tty: bool, concurrency_window_seconds: float = 3.0,
                 out: TextIO | None = None, clock: Callable[[], float] = time.time) -> None:
        self.apps = list(apps)
        self.runtime = runtime
        self.emulator = emulator
        self.header = list(header)
        self.tty = tty
        self.out = out or sys.stdout
        self.clock = clock
        self.aggregator = Aggregator(concurrency_window_seconds=concurrency_window_seconds)
        self.feed = ActivityFeed(transport, self._fold, replay_seconds=RATE_WINDOW_SECONDS + 5)
        self._tasks = TaskOwner("dev-view")
        self._log_lines: deque[str] = deque(maxlen=LOG_LINES)
        self._capture: _Capture | None = None
        self._saved_handlers: list[logging.Handler] = []
        self._plain_last: dict[str, tuple[tuple[int, int, int], float]] = {}

    def _fold(self, message: ReportLike | WakeLike, now: float) -> None:
        self.aggregator.fold(message, now)

    async def start(self) -> None:
        self._tasks.spawn(self.feed.run(), name="activity-feed")
        if not self.tty:
            self.out.write("\n".join(self.header) + "\n")
            self.out.flush()
        else:
            root = logging.getLogger()
            self._saved_handlers = list(root.handlers)
            self._capture = _Capture(self._log_lines)
            root.handlers[:] = [self._capture]
        self._tasks.spawn(self._loop(), name="render")

    def mark_not_ready(self) -> None:
        self._restore_logging()  # shutdown messages go to the terminal as usual

    async def close(self) -> None:
        await self._tasks.close()
        self._restore_logging()

    def _restore_logging(self) -> None:
        if self._capture is not None:
            logging.getLogger().handlers[:] = self._saved_handlers
            self._capture = None
            if self.tty:
                self.out.write("\n".join(self.render()) + "\n")
                self.out.flush()

    async def _loop(self) -> None:
        while True:
            if self._capture is not None:
                self.out.write(CLEAR + "\n".join(self.render()) + "\n")
                self.out.flush()
            elif not self.tty:
                for line in self.plain_lines():
                    self.out.write(line + "\n")
                self.out.flush()
            await asyncio.sleep(REFRESH_SECONDS)

    # -- what is shown ------------------------------------------------------------------------------

    def lines(self) -> list[AppLine]:
        now = self.clock()
        out = []
        for app in self.apps:
            status = self.runtime.status(app.key)
            traffic = self.aggregator.metrics(app.key, now, rate_window_seconds=RATE_WINDOW_SECONDS,
                                              activity_window_seconds=app.activity_window_seconds or 60.0)
            obj = self.emulator.objects.get(app.key)
            metrics, state = "", ""
            if obj is not None:
                view = obj.view
                metrics = "  ".join(
                    f"{r.name} {'?' if r.value is None else f'{r.value:.2f}'}/{r.target:g}" for r in view.readings)
                parts = ["active" if view.active else "idle" if view.active is not None else "?",
                         f"stream {view.stream}"]
                left = obj.executor.cooldown_left(time.monotonic(), status.desired)
                if left is not None and not view.active:
                    parts.append(f"to zero in {left:.0f}s")
                if view.error:
                    parts.append(f"error: {view.error}")
                state = ", ".join(parts)
            if status.stopping:
                state += f", {status.stopping} stopping"
            if status.restarts:
                state += f", {status.restarts} restarts"
            out.append(AppLine(app.key, ",".join(app.hosts), status.ready, status.desired, status.replicas,
                               status.stopping, traffic, metrics, state))
        return out

    def render(self) -> list[str]:
        rows = [*self.header, "",
                f"{'APP':<22} {'READY/DESIRED':>13} {'IN-FLIGHT':>9} {'HELD':>5} {'REQ/S':>7}  {'METRIC/TARGET':<26} STATE"]
        for line in self.lines():
            t = line.traffic
            rows.append(f"{line.key:<22} {f'{line.ready}/{line.desired}':>13} {t.in_flight:>9} {t.held:>5} "
                        f"{t.request_rate:>7.1f}  {line.metrics:<26} {line.state}")
            obj = self.emulator.objects.get(line.key)
            if obj is not None:
                for event in list(obj.view.events)[-EVENT_LINES:][::-1]:
                    stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
                    rows.append(f"    {stamp}  {event.by:<4} {event.old} -> {event.new}  {event.reason}")
        if self._log_lines:
            rows += ["", "log:", *(f"  {line}" for line in self._log_lines)]
        rows += ["", "Ctrl-C stops everything (replicas included)."]
        return rows

    def plain_lines(self) -> list[str]:
        """Lines for a log file or pipe: on a change of replica counts, and every few seconds while busy."""
        now = time.monotonic()
        out = []
        for line in self.lines():
            t = line.traffic
            counts = (line.ready, line.desired, line.replicas)
            last = self._plain_last.get(line.key)
            busy = t.in_flight + t.held > 0 or t.request_rate > 0
            if last is None or last[0] != counts or (busy and now - last[1] >= PLAIN_BUSY_EVERY_SECONDS):
                self._plain_last[line.key] = (counts, now)
                out.append(f"[dev] {line.key} replicas {line.ready}/{line.desired} ready, in-flight {t.in_flight}, "
                           f"held {t.held}, {t.request_rate:.1f} req/s"
                           + (f", {line.metrics}" if line.metrics else "") + (f" ({line.state})" if line.state else ""))
        return out
