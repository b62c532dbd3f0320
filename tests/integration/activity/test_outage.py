"""Publisher and feed through a real bus outage (the server is killed, then started on the same port).

Redis here keeps no data across a restart and JetStream keeps its file store: either way every report
queued while the server was down must reach the feed once it is back.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import cast

import pytest

from kedahttp.activity.feed import ActivityFeed
from kedahttp.activity.model import BackendActivity, Report, ReportLike, WakeEvent, WakeLike
from kedahttp.activity.publisher import ActivityPublisher
from kedahttp.process.tasks import TaskOwner
from tests.harness.servers import NatsServer, RedisServer, TransportFactory
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)

APP = "default/app"


class Sim:
    """One proxy instance's reports: ``started`` grows so every report's count is distinct."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.seq = 0
        self.started_total = 0
        self.last = time.time()

    def next(self) -> Report:
        self.seq += 1
        now = time.time()
        started = self.seq
        self.started_total += started
        report = Report(
            self.instance, self.seq, now, self.last, 0.25, (BackendActivity(APP, started=started),)
        )
        self.last = now
        return report


class Received:
    def __init__(self) -> None:
        self.reports: dict[tuple[str, int], ReportLike] = {}  # deduplicated by (instance, seq)
        self.order: list[str] = []  # "wake" / "report:<seq>" in arrival order

    def __call__(self, message: ReportLike | WakeLike, now: float) -> None:
        if hasattr(message, "seq"):
            report = cast(ReportLike, message)
            self.reports[(report.instance, report.seq)] = report
            self.order.append(f"report:{report.seq}")
        else:
            self.order.append("wake")

    def started(self) -> int:
        return sum(b.started for r in self.reports.values() for b in r.backends)


@pytest.fixture
async def tasks() -> AsyncIterator[TaskOwner]:
    owner = TaskOwner("test")
    yield owner
    await owner.close()


async def test_reports_queued_during_an_outage_arrive_in_full(
    transports: TransportFactory, bus_server: RedisServer | NatsServer, tasks: TaskOwner
) -> None:
    received = Received()
    feed = ActivityFeed(transports(), received, backoff_initial_seconds=0.05, backoff_max_seconds=0.3)
    tasks.spawn(feed.run(), "feed")
    publisher = ActivityPublisher(transports(), backoff_initial_seconds=0.05, backoff_max_seconds=0.3)
    await publisher.start()
    sim = Sim("proxy-1")
    await until(lambda: feed.fresh and publisher.stats.connected, what="feed fresh, publisher connected")

    for _ in range(5):
        publisher.publish_report(sim.next())
    await until(lambda: len(received.reports) == 5, what="reports before the outage")

    bus_server.stop()
    await until(lambda: not feed.fresh, timeout=5.0, what="feed not fresh during the outage")
    for _ in range(20):
        publisher.publish_report(sim.next())  # a plain call: returns at once, never raises
    await until(lambda: publisher.stats.publish_errors >= 2, what="failed attempts counted")
    assert not publisher.stats.connected
    assert publisher.stats.pending == 20
    assert not feed.fresh

    bus_server.start()
    await until(lambda: publisher.stats.pending == 0, timeout=15.0, what="publisher flushed")
    await until(lambda: len(received.reports) == 25, timeout=15.0, what="every report at the feed")
    await until(lambda: feed.fresh, what="feed fresh again")
    assert received.started() == sim.started_total
    assert publisher.stats.dropped == 0
    assert publisher.stats.connected
    assert feed.state.errors >= 1
    await publisher.close()


async def test_a_wake_queued_during_an_outage_goes_out_before_the_queued_reports(
    transports: TransportFactory, bus_server: RedisServer | NatsServer, tasks: TaskOwner
) -> None:
    received = Received()
    feed = ActivityFeed(transports(), received, backoff_initial_seconds=0.05, backoff_max_seconds=0.3)
    tasks.spawn(feed.run(), "feed")
    publisher = ActivityPublisher(transports(), backoff_initial_seconds=0.05, backoff_max_seconds=0.3)
    await publisher.start()
    sim = Sim("proxy-1")
    await until(lambda: feed.fresh and publisher.stats.connected, what="feed fresh, publisher connected")

    bus_server.stop()
    await until(lambda: not feed.fresh, timeout=5.0, what="feed not fresh")
    for _ in range(10):
        publisher.publish_report(sim.next())
    publisher.publish_wake(WakeEvent(APP, "proxy-1", time.time()))
    await until(lambda: publisher.stats.publish_errors >= 1, what="a failed attempt")

    bus_server.start()
    await until(
        lambda: len(received.reports) == 10 and "wake" in received.order,
        timeout=15.0,
        what="wake and reports at the feed",
    )
    assert received.order[0] == "wake"
    assert received.order[1:] == [f"report:{n}" for n in range(1, 11)]
    await publisher.close()
