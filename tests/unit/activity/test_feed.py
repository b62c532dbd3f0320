"""The feed over the in-memory bus: replay, freshness through an outage, bad envelopes, resume point."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from kedahttp.activity.bus import CaughtUp
from kedahttp.activity.codec import encode_report, encode_wake
from kedahttp.activity.feed import RESUBSCRIBE_MARGIN_SECONDS, ActivityFeed, FeedState
from kedahttp.activity.memory_bus import MemoryTransport
from kedahttp.activity.model import BackendActivity, Report, ReportLike, WakeEvent, WakeLike
from kedahttp.process.tasks import TaskOwner
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(30)


class RecordingTransport(MemoryTransport):
    """The memory bus, remembering the ``since`` of every subscription."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.since: list[float] = []
        self.closed = False

    def subscribe(self, since: float) -> AsyncIterator[bytes | CaughtUp]:
        self.since.append(since)
        return super().subscribe(since)

    async def close(self) -> None:
        self.closed = True


def report(seq: int, sent_at: float | None = None, instance: str = "proxy-1") -> bytes:
    sent = time.time() if sent_at is None else sent_at
    return encode_report(
        Report(instance, seq, sent, sent - 0.25, 0.25, (BackendActivity("default/app", started=1),))
    )


class Harness:
    def __init__(self, **kwargs: object) -> None:
        self.transport = RecordingTransport(f"memory://{uuid.uuid4().hex}")
        self.received: list[tuple[ReportLike | WakeLike, float]] = []
        self.states: list[tuple[bool, bool]] = []
        self.feed = ActivityFeed(
            self.transport,
            lambda message, now: self.received.append((message, now)),
            on_state=lambda s: self.states.append((s.connected, s.caught_up)),
            backoff_initial_seconds=0.01,
            backoff_max_seconds=0.05,
            **kwargs,  # type: ignore[arg-type]
        )
        self.tasks = TaskOwner("test-feed")

    def start(self) -> None:
        self.tasks.spawn(self.feed.run(), "feed")

    @property
    def seqs(self) -> list[int]:
        return [m.seq for m, _ in self.received if hasattr(m, "seq")]  # type: ignore[union-attr]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    yield h
    h.transport._log.down = False
    await h.tasks.close()


async def test_replays_history_then_follows_live(harness: Harness) -> None:
    await harness.transport.publish([report(1), report(2)])
    harness.start()
    await until(lambda: harness.feed.fresh)
    assert harness.seqs == [1, 2]
    before = time.time()
    await harness.transport.publish([report(3), encode_wake(WakeEvent("default/app", "proxy-1", 5.0))])
    await until(lambda: len(harness.received) == 4)
    assert harness.seqs == [1, 2, 3]
    wake, received_at = harness.received[3]
    assert wake.backend == "default/app" and wake.at == 5.0  # type: ignore[union-attr]
    assert before <= received_at <= time.time()
    assert harness.feed.state.last_message_at == received_at
    assert harness.states == [(True, False), (True, True)]


async def test_replay_window_leaves_older_history_out() -> None:
    h = Harness(replay_seconds=0.2)
    await h.transport.publish([report(1)])
    await asyncio.sleep(0.3)
    await h.transport.publish([report(2)])
    h.start()
    await until(lambda: h.feed.fresh)
    assert h.seqs == [2]
    await h.tasks.close()


async def test_an_empty_log_is_fresh_at_once(harness: Harness) -> None:
    assert not harness.feed.fresh
    harness.start()
    await until(lambda: harness.feed.fresh)
    assert harness.received == []


async def test_outage_turns_fresh_off_and_recovery_turns_it_back_on(harness: Harness) -> None:
    harness.start()
    await until(lambda: harness.feed.fresh)
    await harness.transport.publish([report(1)])
    await until(lambda: harness.seqs == [1])
    harness.transport._log.down = True
    await until(lambda: not harness.feed.fresh)
    assert not harness.feed.state.connected
    await until(lambda: harness.feed.state.errors >= 2)  # it keeps trying, with backoff
    harness.transport._log.down = False
    await until(lambda: harness.feed.fresh)
    await harness.transport.publish([report(2)])
    await until(lambda: 2 in harness.seqs)
    assert (False, False) in harness.states and harness.states[-1] == (True, True)


async def test_resubscribes_from_the_earlier_of_arrival_and_sent_time(harness: Harness) -> None:
    old = time.time() - 100.0  # a report replayed long after it was sent
    await harness.transport.publish([report(1, sent_at=old)])
    harness.start()
    await until(lambda: harness.feed.fresh)
    harness.transport._log.down = True
    await until(lambda: not harness.feed.fresh)
    harness.transport._log.down = False
    await until(lambda: harness.feed.fresh)
    assert harness.transport.since[-1] == pytest.approx(old - RESUBSCRIBE_MARGIN_SECONDS)
    assert harness.seqs == [1, 1]  # replayed again: the aggregator drops the duplicate


async def test_bad_envelopes_are_counted_and_skipped(harness: Harness) -> None:
    await harness.transport.publish([b"\xff\xff not protobuf", b"", report(1)])
    harness.start()
    await until(lambda: harness.feed.fresh)
    assert harness.seqs == [1]
    assert harness.feed.state.decode_errors == 2
    assert harness.feed.state.errors == 0


async def test_a_failing_handler_does_not_stop_the_feed() -> None:
    seen: list[int] = []

    def handler(message: ReportLike | WakeLike, now: float) -> None:
        seen.append(message.seq)  # type: ignore[union-attr]
        if message.seq == 1:  # type: ignore[union-attr]
            raise RuntimeError("bug in the aggregator")

    transport = MemoryTransport(f"memory://{uuid.uuid4().hex}")
    await transport.publish([report(1), report(2)])
    feed = ActivityFeed(transport, handler)
    tasks = TaskOwner("test-feed")
    tasks.spawn(feed.run(), "feed")
    await until(lambda: feed.fresh)
    assert seen == [1, 2]
    assert feed.state.handler_errors == 1
    await tasks.close()


async def test_cancel_closes_the_transport(harness: Harness) -> None:
    harness.start()
    await until(lambda: harness.feed.fresh)
    await harness.tasks.close()
    assert harness.transport.closed
    assert not harness.feed.fresh
    assert isinstance(harness.feed.state, FeedState)
