"""Issue "done when": scaler replicas reading the same bus agree on every backend's metrics.

Three simulated proxy instances (three publishers, each with its own instance id and sequence) publish
reports for a handful of backends in real time; two independent ActivityFeed + Aggregator pairs read
them, one from the start and one that joins halfway and catches up from the replayed history. Once both
have folded everything, they must give identical metrics for every backend and window, and those
metrics must reflect the traffic (in-flight is the sum of the instances' last snapshots).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest

from kedahttp.activity.aggregate import Aggregator
from kedahttp.activity.feed import ActivityFeed
from kedahttp.activity.model import BackendActivity, Report, WakeEvent
from kedahttp.activity.publisher import ActivityPublisher
from kedahttp.process.tasks import TaskOwner
from tests.harness.servers import NatsServer, RedisServer, TransportFactory
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)

INSTANCES = ("proxy-a", "proxy-b", "proxy-c")
BACKENDS = ("default/app0", "default/app1", "shop/cart", "shop/idle")
BUSY = BACKENDS[:3]  # shop/idle only ever gets a wake
INTERVAL = 0.1
ROUNDS = 20


class Replica:
    """One scaler replica's view: a feed folding into its own aggregator."""

    def __init__(self, transports: TransportFactory, tasks: TaskOwner, name: str) -> None:
        self.aggregator = Aggregator()
        self.feed = ActivityFeed(transports(), self.aggregator.fold)
        tasks.spawn(self.feed.run(), name)


class Proxy:
    """One simulated proxy instance: deterministic pseudo-random traffic, one report per round."""

    def __init__(self, instance: str, publisher: ActivityPublisher, seed: int) -> None:
        self.instance = instance
        self.publisher = publisher
        self.rng = random.Random(seed)
        self.seq = 0
        self.last_sent = time.time()
        self.in_flight: dict[str, int] = {}  # the last snapshot sent, per backend
        self.held: dict[str, int] = {}

    def report(self) -> None:
        now = time.time()
        self.seq += 1
        entries = []
        for backend in BUSY:
            started = self.rng.randint(0, 30)
            in_flight = self.rng.randint(0, 5)
            held = self.rng.randint(0, 2) if backend == "default/app0" else 0
            self.in_flight[backend] = in_flight
            self.held[backend] = held
            if started or in_flight or held:
                entries.append(
                    BackendActivity(
                        backend,
                        in_flight=in_flight,
                        held=held,
                        started=started,
                        completed=max(0, started - 1),
                        busy_seconds=(in_flight + held) * (now - self.last_sent),
                        last_request_at=now if started else 0.0,
                    )
                )
        self.publisher.publish_report(
            Report(self.instance, self.seq, now, self.last_sent, INTERVAL, tuple(entries))
        )
        self.last_sent = now


@pytest.fixture
async def tasks() -> AsyncIterator[TaskOwner]:
    owner = TaskOwner("agreement")
    yield owner
    await owner.close()


async def test_two_replicas_agree_on_every_backend(
    transports: TransportFactory, bus_server: RedisServer | NatsServer, tasks: TaskOwner
) -> None:
    first = Replica(transports, tasks, "replica-1")
    await until(lambda: first.feed.fresh, what="first replica fresh")
    publishers = [ActivityPublisher(transports()) for _ in INSTANCES]
    for publisher in publishers:
        await publisher.start()
    proxies = [
        Proxy(name, pub, seed) for seed, (name, pub) in enumerate(zip(INSTANCES, publishers, strict=True))
    ]
    for proxy in proxies:
        proxy.publisher.publish_wake(WakeEvent("shop/idle", proxy.instance, time.time()))

    second: Replica | None = None
    for round_ in range(ROUNDS):
        if round_ == ROUNDS // 2:
            second = Replica(transports, tasks, "replica-2")  # joins late: replays the first half
        for proxy in proxies:
            proxy.report()
        await asyncio.sleep(INTERVAL)
    assert second is not None

    replicas = (first, second)
    total = ROUNDS * len(INSTANCES)
    await until(
        lambda: all(r.aggregator.reports == total and r.aggregator.wakes == 3 for r in replicas),
        what="both replicas folded every report and wake",
    )
    assert all(r.feed.fresh for r in replicas)
    assert all(r.aggregator.lost_reports == 0 for r in replicas)

    now = time.time()  # within the instances' expiry: their last snapshots still count
    for backend in BACKENDS:
        for rate_window, activity_window in ((1, 1), (2, 60), (60, 60)):
            one = first.aggregator.metrics(backend, now, rate_window, activity_window)
            two = second.aggregator.metrics(backend, now, rate_window, activity_window)
            assert one == two, (backend, rate_window)

    for backend in BUSY:
        m = first.aggregator.metrics(backend, now)
        assert m.active
        assert m.in_flight == sum(p.in_flight[backend] for p in proxies)
        assert m.held == sum(p.held[backend] for p in proxies)
        assert m.request_rate > 0
        assert m.concurrency > 0
    idle = first.aggregator.metrics("shop/idle", now)
    assert idle.active and idle.in_flight == 0 and idle.request_rate == 0.0

    for publisher in publishers:
        assert publisher.stats.dropped == 0 and publisher.stats.publish_errors == 0
        await publisher.close()
