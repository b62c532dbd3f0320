"""The scaler's view of the bus: the feed folding into the aggregator, and whether that view is fresh.

Every call KEDA makes is answered from this one in-memory view, never from the bus directly, so a call
costs a few dictionary lookups. Fresh means the feed is connected, has replayed the retained history
(so this replica sees what its peers see), and has not gone quiet while proxies were known to be
reporting: proxies send a report every interval even when idle, so silence from all of them at once
means the feed is stuck, not that traffic stopped. After a bus outage the view also waits for every
proxy that was reporting before it to send a report made after the bus came back (so their kept-back
reports have landed), or until that proxy is presumed gone. Data that is not fresh is never served as
a zero: the service answers UNAVAILABLE and the push streams stay silent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final

from kedahttp.activity.aggregate import Aggregator
from kedahttp.activity.bus import RETENTION_SECONDS, CaughtUp, Transport
from kedahttp.activity.feed import ActivityFeed, FeedState
from kedahttp.activity.model import ReportLike, WakeLike
from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.tasks import TaskOwner
from kedahttp.scaler.keepalive import KeepAlive
from kedahttp.scaler.keepalive_store import KeepAliveStore, StoreUnavailable
from kedahttp.scaler.metrics import Trigger
from kedahttp.scaler.routed import NotRouted, RoutedBackends
from kedahttp.scaler.streams import StreamHub, Watch

log = logging.getLogger("kedahttp.scaler")

TICK_SECONDS: Final = 0.25  # expiry and freshness checks
REEVALUATE_SECONDS: Final = 1.0  # push streams re-read active-to-inactive changes this often
# Silence from every proxy for this long (or this many of their report intervals, if longer) while
# proxies were reporting means the feed is stuck: the view is stale.
STALE_AFTER_SECONDS: Final = 5.0
STALE_AFTER_INTERVALS: Final = 10
# After a bus outage, the proxies send the reports they kept meanwhile once their own backoff lets them
# (the publisher's longest backoff is 1 s). Until every proxy that was reporting before the outage has
# sent a report made after we were back, the view lacks their backlog and would read low: not fresh.
# A proxy that has not caught up after this long is presumed gone (it then expires as usual).
CATCH_UP_GIVE_UP_SECONDS: Final = 4.0
RECENT_INSTANCE_SECONDS: Final = 10.0  # proxies heard from this recently before the outage are awaited
KEEPALIVE_SAVE_SECONDS: Final = 2.0  # changed keep-alive snapshots are written this often
KEEPALIVE_LOAD_SECONDS: Final = 3.0  # at start, the stored snapshots are awaited this long at most
KEEPALIVE_FORGET_EVERY_SECONDS: Final = 60.0  # long-idle backends are dropped from the keep-alive this often


class CooperativeTransport:
    """Wraps a transport so reading it yields to the event loop every ``slice_seconds`` of work.

    A transport hands over messages in batches (a Redis XREAD returns up to a page), and the feed folds
    each as it comes without awaiting: after a bus hiccup that can be hundreds of reports in one go. A
    KEDA call arriving meanwhile would wait for all of them; with this it waits for one slice at most.
    """

    def __init__(self, inner: Transport, slice_seconds: float = 0.0005) -> None:
        self.inner = inner
        self.url = inner.url
        self.slice_seconds = slice_seconds

    async def connect(self) -> None:
        await self.inner.connect()

    async def publish(self, payloads: Sequence[bytes]) -> None:
        await self.inner.publish(payloads)

    async def subscribe(self, since: float) -> AsyncIterator[bytes | CaughtUp]:
        items = self.inner.subscribe(since)
        clock = time.perf_counter
        budget = self.slice_seconds
        try:
            resumed = clock()
            async for item in items:
                yield item  # the feed folds it before asking for the next one
                if clock() - resumed > budget:
                    await asyncio.sleep(0)
                    resumed = clock()
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()

    async def close(self) -> None:
        await self.inner.close()


class ScalerState(BaseComponent):
    """Owns the feed, the aggregator and the push hub; a lifecycle component (started first, closed last)."""

    name = "scaler-state"

    def __init__(self, transport: Transport, *, concurrency_window_seconds: float = 3.0,
                 store: KeepAliveStore | None = None, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # wall-clock seconds; the lab and its tests drive it
        self.aggregator = Aggregator(concurrency_window_seconds=concurrency_window_seconds)
        self.keepalive = KeepAlive()
        self.store = store
        self.hub = StreamHub(self.is_active)
        self.feed = ActivityFeed(CooperativeTransport(transport), self._on_delivery, on_state=self._on_feed_state)
        self.routed = RoutedBackends()
        self.last_message_at = 0.0
        self.loop_lag = LagHistogram()
        self.changed = asyncio.Event()  # readiness may have changed: the health service looks again
        self._fresh = False
        self._last_sent: dict[str, float] = {}  # proxy instance -> sent_at of its newest report
        self._lost_at: float | None = None  # when the feed last stopped being fresh
        self._resumed_at = 0.0  # when it became fresh again after that
        self._awaiting: frozenset[str] = frozenset()  # proxies whose post-outage report we still wait for
        self._tasks = TaskOwner("scaler-state")

    async def start(self) -> None:
        if self.store is not None:
            await self._load_keepalive(self.store)
            self._tasks.spawn(self._save_keepalive(self.store), "keepalive-save")
        self._tasks.spawn(self.feed.run(), "feed")
        self._tasks.spawn(self._tick(), "tick")

    async def close(self) -> None:
        self.hub.shutdown()
        await self._tasks.close()
        if self.store is not None:
            try:
                await self.store.save(self.keepalive.take_dirty())
            except StoreUnavailable as exc:
                log.warning("keep-alive snapshots not saved", extra={"error": str(exc)})
            await self.store.close()

    def is_active(self, backend: str, now: float, activity_window_seconds: float) -> bool:
        """The push streams' answer: the activity window, or the adaptive keep-alive."""
        return self.keepalive.is_active(self.aggregator, backend, now, activity_window_seconds)

    # -- the answers to KEDA's calls (the service adds only gRPC and freshness; the lab calls them too) --

    def answer_active(self, trigger: Trigger, now: float) -> bool:
        """IsActive for a trigger."""
        self.keepalive.set_adaptive(trigger.backend, trigger.adaptive_keep_alive)
        return self.is_active(trigger.backend, now, trigger.activity_window_seconds)

    def answer_metric(self, trigger: Trigger, metric_name: str, now: float) -> float:
        """GetMetrics for one of a trigger's metrics."""
        metrics = self.aggregator.metrics(trigger.backend, now, trigger.rate_window_seconds,
                                          trigger.activity_window_seconds)
        return trigger.value(metric_name, metrics)

    def open_watch(self, trigger: Trigger, now: float) -> Watch:
        """StreamIsActive for a trigger: a watch that is due a ``true`` on every inactive-to-active change."""
        self.keepalive.set_adaptive(trigger.backend, trigger.adaptive_keep_alive)
        return self.hub.open(trigger.backend, trigger.activity_window_seconds, now)

    # -- the adaptive keep-alive's snapshots -------------------------------------------------------------

    async def _load_keepalive(self, store: KeepAliveStore) -> None:
        try:
            stored = await asyncio.wait_for(store.load(), KEEPALIVE_LOAD_SECONDS)
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("keep-alive snapshots not loaded: starting without them", extra={"error": str(exc)})
            return
        for backend, text in stored.items():
            try:
                self.keepalive.restore(backend, text)
            except ValueError as exc:
                log.warning("keep-alive snapshot skipped", extra={"error": str(exc)})

    async def _save_keepalive(self, store: KeepAliveStore) -> None:
        """Writes the changed snapshots every few seconds, and deletes those of backends idle so long that
        the keep-alive forgot them; what fails is retried on the next round."""
        failing = False
        forgotten: list[str] = []
        next_forget = 0.0
        while True:
            await asyncio.sleep(KEEPALIVE_SAVE_SECONDS)
            now = self.clock()
            if now >= next_forget:
                forgotten.extend(self.keepalive.forget_idle(now))
                next_forget = now + KEEPALIVE_FORGET_EVERY_SECONDS
            snapshots = self.keepalive.take_dirty()
            try:
                await store.delete(forgotten)  # first: a forgotten backend seen again since is saved anew
                await store.save(snapshots)
            except StoreUnavailable as exc:
                self.keepalive.dirty.update(backend for backend, _ in snapshots)  # written on the next round
                if not failing:
                    log.warning("keep-alive snapshots not saved: retrying", extra={"error": str(exc)})
                failing = True
                continue
            forgotten.clear()
            failing = False

    # -- the feed's callbacks ----------------------------------------------------------------------------

    def _on_delivery(self, message: ReportLike | WakeLike, arrived: float) -> None:
        self.fold(message, self.clock())  # the arrival time on this state's own clock

    def fold(self, message: ReportLike | WakeLike, now: float) -> None:
        """One message from the bus: into the aggregator and the keep-alive, then the push streams."""
        self.last_message_at = now
        sent_at = getattr(message, "sent_at", None)
        if sent_at is not None:  # a report (wakes carry "at")
            self._last_sent[message.instance] = sent_at
            self.routed.fold(message)  # type: ignore[arg-type]
        touched = self.aggregator.fold(message, now)
        self.keepalive.observe(message, now)
        if touched:
            self.hub.notify(touched, now)

    def _on_feed_state(self, state: FeedState) -> None:
        now = self.clock()
        if not (state.connected and state.caught_up):
            if self._lost_at is None:
                self._lost_at = now
                recent = self.last_message_at - RECENT_INSTANCE_SECONDS
                self._awaiting = frozenset(n for n, sent in self._last_sent.items() if sent >= recent)
        elif self._lost_at is not None:
            self._lost_at = None
            self._resumed_at = now
        self._update(now)

    # -- freshness ---------------------------------------------------------------------------------------

    def fresh(self, now: float) -> bool:
        """True when answers from this view can be trusted (see the module docstring)."""
        if not self.feed.fresh:
            return False
        if self._awaiting and not self._caught_up(now):
            return False
        aggregator = self.aggregator
        if aggregator.known_instances == 0:
            return True  # no proxy has reported within the retention period: there is nothing to miss
        quiet = max(STALE_AFTER_SECONDS, STALE_AFTER_INTERVALS * aggregator.max_interval_seconds)
        return now - self.last_message_at <= quiet

    def _caught_up(self, now: float) -> bool:
        """True once every proxy awaited after an outage has sent a report made after we were back."""
        resumed = self._resumed_at
        last = self._last_sent
        if now - resumed < CATCH_UP_GIVE_UP_SECONDS and any(last.get(n, 0.0) < resumed for n in self._awaiting):
            return False
        self._awaiting = frozenset()
        return True

    def _forget_old_instances(self, now: float) -> None:
        horizon = now - RETENTION_SECONDS
        old = [n for n, sent in self._last_sent.items() if sent < horizon]
        for name in old:
            del self._last_sent[name]
        self.routed.forget(old)

    def check_routed(self, backend: str, now: float) -> None:
        """Raises NotRouted when every live proxy has listed its routes and none routes ``backend``.

        Live: reported within the window after which a silent proxy's counts expire."""
        window = max(STALE_AFTER_SECONDS, 3 * self.aggregator.max_interval_seconds)
        live = [name for name, sent in self._last_sent.items() if now - sent <= window]
        if self.routed.verdict(backend, live) is False:
            raise NotRouted(backend, len(live))

    def _update(self, now: float) -> None:
        fresh = self.fresh(now)
        if fresh != self._fresh:
            self._fresh = fresh
            log.info("activity view is fresh" if fresh else "activity view is not fresh: answering UNAVAILABLE",
                     extra={"feed_connected": self.feed.state.connected,
                            "feed_caught_up": self.feed.state.caught_up})
            self.hub.set_fresh(fresh, now)
            self.changed.set()

    async def _tick(self) -> None:
        next_reevaluate = 0.0
        lag = self.loop_lag
        while True:
            now = self.clock()
            self.aggregator.expire(now)
            self._update(now)
            if now >= next_reevaluate:
                self.hub.reevaluate(now)
                self._forget_old_instances(now)
                next_reevaluate = now + REEVALUATE_SECONDS
            slept = time.perf_counter()
            await asyncio.sleep(TICK_SECONDS)
            lag.observe(time.perf_counter() - slept - TICK_SECONDS)


class LagHistogram:
    """How late the tick wakes: every call waits behind whatever holds the loop, so this is the scaler's
    own contribution to call latency. Plain counters, exported at scrape time."""

    BUCKETS: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5, math.inf)

    def __init__(self) -> None:
        self.counts = [0] * len(self.BUCKETS)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sum += seconds
        for i, bound in enumerate(self.BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
                return
