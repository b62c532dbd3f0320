"""The publisher over the in-memory bus: queueing, outage, drop-oldest, wakes first, close."""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from kedahttp.activity.bus import CAUGHT_UP, CaughtUp
from kedahttp.activity.codec import decode
from kedahttp.activity.memory_bus import MemoryTransport
from kedahttp.activity.model import BackendActivity, Report, ReportLike, WakeEvent, WakeLike
from kedahttp.activity.publisher import ActivityPublisher
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(30)


def report(seq: int, started: int = 1, instance: str = "proxy-1") -> Report:
    now = time.time()
    return Report(instance, seq, now, now - 0.25, 0.25, (BackendActivity("default/app", started=started),))


def wake(backend: str = "default/app", at: float = 0.0) -> WakeEvent:
    return WakeEvent(backend, "proxy-1", at or time.time())


@pytest.fixture
def transport() -> MemoryTransport:
    return MemoryTransport(f"memory://{uuid.uuid4().hex}")


async def read_log(transport: MemoryTransport) -> list[ReportLike | WakeLike]:
    """Everything in the log, decoded, in log order."""
    out: list[ReportLike | WakeLike] = []
    items: AsyncIterator[bytes | CaughtUp] = transport.subscribe(0.0)
    try:
        async for item in items:
            if item is CAUGHT_UP:
                break
            assert isinstance(item, bytes)
            out.append(decode(item))
    finally:
        await items.aclose()  # type: ignore[attr-defined]
    return out


@pytest.fixture
async def publisher(transport: MemoryTransport) -> AsyncIterator[ActivityPublisher]:
    pub = ActivityPublisher(transport, backoff_initial_seconds=0.01, backoff_max_seconds=0.05)
    await pub.start()
    yield pub
    transport._log.down = False
    await pub.close(timeout=1.0)


async def test_reports_reach_the_log_in_order(
    transport: MemoryTransport, publisher: ActivityPublisher
) -> None:
    await until(lambda: publisher.stats.connected)
    for seq in range(1, 51):
        publisher.publish_report(report(seq))
    await until(lambda: publisher.stats.pending == 0)
    log = await read_log(transport)
    assert [m.seq for m in log] == list(range(1, 51))  # type: ignore[union-attr]
    assert publisher.stats.published == 50
    assert publisher.stats.publish_errors == 0
    assert publisher.stats.dropped == 0


async def test_start_does_not_raise_for_a_down_bus(transport: MemoryTransport) -> None:
    transport._log.down = True
    pub = ActivityPublisher(transport, backoff_initial_seconds=0.01, backoff_max_seconds=0.02)
    await pub.start()
    await until(lambda: pub.stats.publish_errors >= 2)
    assert not pub.stats.connected
    transport._log.down = False
    await until(lambda: pub.stats.connected)
    await pub.close()


async def test_outage_keeps_reports_and_flushes_them_in_order(
    transport: MemoryTransport, publisher: ActivityPublisher
) -> None:
    publisher.publish_report(report(1, started=3))
    await until(lambda: publisher.stats.published == 1)
    transport._log.down = True
    assert not inspect.iscoroutinefunction(ActivityPublisher.publish_report)  # nothing to await, ever
    for seq in range(2, 41):
        # Returns at once: a plain function that only touches a deque, however long the bus is down.
        publisher.publish_report(report(seq, started=seq))
        assert publisher.stats.pending == seq - 1
    await until(lambda: publisher.stats.publish_errors >= 3)
    assert not publisher.stats.connected
    assert publisher.stats.pending == 39
    transport._log.down = False
    await until(lambda: publisher.stats.pending == 0)
    assert publisher.stats.connected
    log = await read_log(transport)
    assert [m.seq for m in log] == list(range(1, 41))  # type: ignore[union-attr]
    assert sum(m.backends[0].started for m in log) == 3 + sum(range(2, 41))  # type: ignore[union-attr]
    assert publisher.stats.dropped == 0


async def test_over_the_cap_the_oldest_reports_are_dropped_and_counted(transport: MemoryTransport) -> None:
    transport._log.down = True
    pub = ActivityPublisher(
        transport, max_pending_reports=10, backoff_initial_seconds=0.01, backoff_max_seconds=0.02
    )
    await pub.start()
    for seq in range(1, 26):
        pub.publish_report(report(seq))
    await until(lambda: pub.stats.publish_errors >= 2)  # the sender tried (and requeued) meanwhile
    assert pub.stats.pending == 10
    assert pub.stats.dropped == 15
    transport._log.down = False
    await until(lambda: pub.stats.pending == 0)
    log = await read_log(transport)
    assert [m.seq for m in log] == list(range(16, 26))  # type: ignore[union-attr]
    await pub.close()


async def test_wake_goes_out_before_queued_reports(
    transport: MemoryTransport, publisher: ActivityPublisher
) -> None:
    await until(lambda: publisher.stats.connected)
    transport._log.down = True
    for seq in range(1, 11):
        publisher.publish_report(report(seq))
    publisher.publish_wake(wake("default/a", at=100.0))
    publisher.publish_wake(wake("default/b", at=100.0))
    publisher.publish_wake(wake("default/a", at=200.0))  # replaces the pending wake for default/a
    assert publisher.stats.pending == 12
    await until(lambda: publisher.stats.publish_errors >= 1)
    transport._log.down = False
    await until(lambda: publisher.stats.pending == 0)
    log = await read_log(transport)
    kinds = ["wake" if hasattr(m, "at") else "report" for m in log]
    assert kinds == ["wake"] * 2 + ["report"] * 10
    assert {(m.backend, m.at) for m in log[:2]} == {("default/b", 100.0), ("default/a", 200.0)}  # type: ignore[union-attr]


async def test_a_wake_cuts_the_backoff_short(transport: MemoryTransport) -> None:
    transport._log.down = True
    pub = ActivityPublisher(transport, backoff_initial_seconds=30.0, backoff_max_seconds=30.0)
    await pub.start()
    await until(lambda: pub.stats.publish_errors == 1)  # now sleeping ~15-30 s before the next try
    transport._log.down = False
    pub.publish_wake(wake())
    await until(lambda: pub.stats.pending == 0, timeout=5.0)
    assert [type(m).__name__ for m in await read_log(transport)] == ["WakeEvent"]
    await pub.close()


async def test_close_flushes_what_is_pending(transport: MemoryTransport) -> None:
    pub = ActivityPublisher(transport)
    await pub.start()
    for seq in range(1, 6):
        pub.publish_report(report(seq))
    pub.publish_wake(wake())
    await pub.close(timeout=2.0)
    assert pub.stats.pending == 0
    assert len(await read_log(transport)) == 6


async def test_close_gives_up_after_its_timeout_when_the_bus_is_down(transport: MemoryTransport) -> None:
    transport._log.down = True
    pub = ActivityPublisher(transport, backoff_initial_seconds=0.01)
    await pub.start()
    pub.publish_report(report(1))
    began = time.monotonic()
    await pub.close(timeout=0.3)
    assert time.monotonic() - began < 2.5  # bounded, not forever (a loose bound: this is no benchmark)
    assert pub.stats.pending == 1


async def test_publish_never_raises_before_start_or_after_close(transport: MemoryTransport) -> None:
    pub = ActivityPublisher(transport)
    pub.publish_report(report(1))
    pub.publish_wake(wake())
    await pub.start()
    await pub.close()
    assert pub.stats.pending == 0
    for seq in range(2, 7):
        pub.publish_report(report(seq))
    pub.publish_wake(wake())
    assert pub.stats.pending == 6  # queued, never sent: the publisher is closed
