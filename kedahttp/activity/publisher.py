"""The proxy's side of the bus: queue reports and wakes without ever blocking, send them from one task.

The reporter calls ``publish_report`` and ``publish_wake`` from the event loop; both only touch an
in-memory queue and return at once, whatever the bus is doing. One owned background task encodes and
sends in batches. Choices:

* **Outage: keep, retry, flush in order.** A failed batch goes back to the front of the queue and is
  retried with exponential backoff and jitter; when the bus answers again everything pending is sent in
  the order it was queued. Re-sent envelopes are harmless: readers drop reports whose (instance, seq)
  they have seen, and the NATS transport lets JetStream drop exact re-sends.
* **Bounded memory: drop the oldest reports.** Past ``max_pending_reports`` (10 minutes at the default
  4 reports a second) the oldest report is dropped and counted in ``stats.dropped``. Newest first is
  what the scaler needs after an outage; a gap in sequence numbers shows the loss to readers too.
* **Wakes jump the queue.** A wake is a cold-start signal the scaler must see now, so the sender sends
  pending wakes before any report, a new wake cuts a backoff wait short, and while the bus is down only
  the newest wake per backend is kept (one is all the scaler needs to scale from zero).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field

from kedahttp.activity.bus import BusUnavailable, Transport
from kedahttp.activity.codec import encode_report, encode_wake
from kedahttp.activity.model import Report, WakeEvent
from kedahttp.process.backoff import Backoff
from kedahttp.process.tasks import TaskOwner

log = logging.getLogger("kedahttp.activity.publisher")

MAX_BATCH = 500  # envelopes per transport call; bounds one round trip after a long outage


@dataclass
class PublisherStats:
    published: int = 0  # envelopes the bus accepted (reports and wakes)
    publish_errors: int = 0  # failed attempts (one per batch, not per envelope)
    dropped: int = 0  # reports discarded because more than max_pending_reports were queued
    connected: bool = False  # the last attempt to reach the bus succeeded
    _publisher: ActivityPublisher | None = field(default=None, repr=False, compare=False)

    @property
    def pending(self) -> int:
        """Reports and wakes queued or in flight, not yet accepted by the bus."""
        p = self._publisher
        if p is None:
            return 0
        return len(p._reports) + p._reports_in_flight + len(p._wakes) + p._wakes_in_flight


class ActivityPublisher:
    def __init__(
        self,
        transport: Transport,
        *,
        max_pending_reports: int = 2400,
        backoff_initial_seconds: float = 0.1,
        backoff_max_seconds: float = 1.0,
    ) -> None:
        if max_pending_reports < 1:
            raise ValueError("max_pending_reports must be at least 1")
        self.transport = transport
        self.max_pending_reports = max_pending_reports
        self.backoff_initial_seconds = backoff_initial_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.stats = PublisherStats(_publisher=self)
        # Reports in order; an entry is encoded (bytes) once it has been tried, so retries reuse the bytes.
        self._reports: deque[Report | bytes] = deque()
        self._wakes: dict[str, WakeEvent] = {}  # newest pending wake per backend
        self._reports_in_flight = 0
        self._wakes_in_flight = 0
        self._batch = min(MAX_BATCH, max_pending_reports)
        self._work = asyncio.Event()  # something was queued
        self._wake_queued = asyncio.Event()  # cuts a backoff wait short
        self._closing = False
        self._tasks = TaskOwner("activity-publisher")
        self._sender: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Starts the sender, which connects in the background: a down bus does not stop the proxy."""
        if self._sender is None:
            self._sender = self._tasks.spawn(self._run(), "sender")

    def publish_report(self, report: Report) -> None:
        """Queues a report; O(1), never blocks or raises. Past the cap the oldest queued report goes."""
        reports = self._reports
        if len(reports) + self._reports_in_flight >= self.max_pending_reports and reports:
            reports.popleft()
            self.stats.dropped += 1
        reports.append(report)
        self._work.set()

    def publish_wake(self, wake: WakeEvent) -> None:
        """Queues a wake to be sent before any queued report; a newer wake for the backend replaces it."""
        self._wakes.pop(wake.backend, None)  # re-insert: dict order is the order wakes go out
        self._wakes[wake.backend] = wake
        self._work.set()
        self._wake_queued.set()

    async def close(self, timeout: float = 2.0) -> None:
        """Sends what is pending (bounded by ``timeout``), stops the sender, then closes the transport."""
        self._closing = True
        self._work.set()
        self._wake_queued.set()
        if self._sender is not None and not self._sender.done():
            await asyncio.wait({self._sender}, timeout=timeout)
        await self._tasks.close(timeout=1.0)
        if self.stats.pending:
            log.warning("closing with activity not sent", extra={"pending": self.stats.pending})
        with contextlib.suppress(Exception):
            await self.transport.close()

    # The sender.

    async def _run(self) -> None:
        backoff = Backoff(self.backoff_initial_seconds, self.backoff_max_seconds, jitter=(0.5, 1.0))
        while True:
            pending = bool(self._wakes or self._reports)
            if not pending and (self.stats.connected or self._closing):
                if self._closing:
                    return
                self._work.clear()
                await self._work.wait()
                continue
            self._wake_queued.clear()
            try:
                if not self.stats.connected:
                    await self.transport.connect()
                if pending:
                    await self._send_one_batch()
            except BusUnavailable as exc:
                self.stats.publish_errors += 1
                if self.stats.connected or self.stats.publish_errors == 1:
                    log.warning(
                        "bus unavailable: keeping activity to send later",
                        extra={"error": str(exc), "pending": self.stats.pending},
                    )
                self.stats.connected = False
                await self._backoff(backoff)
                continue
            if not self.stats.connected:
                self.stats.connected = True
                if self.stats.publish_errors:
                    log.info(
                        "bus available again",
                        extra={"pending": self.stats.pending, "dropped": self.stats.dropped},
                    )
            backoff.reset()

    async def _send_one_batch(self) -> None:
        """Sends all pending wakes, else up to one batch of reports; requeues them on failure."""
        if self._wakes:
            wakes = list(self._wakes.values())
            self._wakes.clear()
            self._wakes_in_flight = len(wakes)
            try:
                await self.transport.publish([encode_wake(w) for w in wakes])
            except BaseException:
                for wake in wakes:  # a newer wake for the same backend, queued meanwhile, wins
                    self._wakes.setdefault(wake.backend, wake)
                raise
            finally:
                self._wakes_in_flight = 0
            self.stats.published += len(wakes)
            return
        reports = self._reports
        count = min(len(reports), self._batch)
        batch = [reports.popleft() for _ in range(count)]
        payloads = [item if isinstance(item, bytes) else encode_report(item) for item in batch]
        self._reports_in_flight = count
        try:
            await self.transport.publish(payloads)
        except BaseException:
            reports.extendleft(reversed(payloads))
            overflow = max(0, len(reports) - self.max_pending_reports)
            for _ in range(overflow):
                reports.popleft()
            self.stats.dropped += overflow
            raise
        finally:
            self._reports_in_flight = 0
        self.stats.published += count

    async def _backoff(self, backoff: Backoff) -> None:
        """Sleeps the backoff's next delay, less if a wake is queued meanwhile: wakes must not wait."""
        delay = backoff.next_delay(jitter=False)
        if self._closing:
            delay = min(delay, 0.05)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake_queued.wait(), backoff.jittered(delay))
