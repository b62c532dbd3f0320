"""Each network transport against its real server: order, replay, CAUGHT_UP, many readers, outages.

Every test runs twice through the ``bus_server`` fixture: once over redis-server, once over nats-server.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kedahttp.activity.bus import CAUGHT_UP, BusUnavailable, CaughtUp, Transport
from kedahttp.process.tasks import TaskOwner
from tests.harness.servers import NatsServer, RedisServer, TransportFactory
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)


class Reader:
    """Reads one subscription in the background, keeping every item with the time it arrived."""

    def __init__(self, transport: Transport, since: float) -> None:
        self.items: list[bytes | CaughtUp] = []
        self.arrived: list[float] = []
        self.error: BaseException | None = None
        self._tasks = TaskOwner("reader")
        self._tasks.spawn(self._run(transport, since), "subscribe")

    async def _run(self, transport: Transport, since: float) -> None:
        items: AsyncIterator[bytes | CaughtUp] = transport.subscribe(since)
        try:
            async for item in items:
                self.items.append(item)
                self.arrived.append(time.monotonic())
        except BusUnavailable as exc:
            self.error = exc
        finally:
            await items.aclose()  # type: ignore[attr-defined]

    @property
    def caught_up(self) -> bool:
        return CAUGHT_UP in self.items

    @property
    def payloads(self) -> list[bytes]:
        return [i for i in self.items if isinstance(i, bytes)]

    async def close(self) -> None:
        await self._tasks.close()


def batch(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}-{i:05d}".encode() for i in range(n)]


async def test_round_trip_in_order(transports: TransportFactory) -> None:
    publisher, subscriber = transports(), transports()
    await publisher.connect()
    await subscriber.connect()
    reader = Reader(subscriber, time.time() - 60)
    await until(lambda: reader.caught_up, what="caught up on an empty log")
    assert reader.items == [CAUGHT_UP]
    await publisher.publish(batch("a", 100))
    await publisher.publish(batch("b", 3))
    await until(lambda: len(reader.payloads) == 103, what="all envelopes")
    assert reader.payloads == batch("a", 100) + batch("b", 3)
    assert reader.error is None
    await reader.close()


async def test_replay_from_a_time_then_caught_up_then_live(transports: TransportFactory) -> None:
    transport = transports()
    await transport.connect()
    await transport.publish(batch("old", 5))
    await asyncio.sleep(0.3)
    since = time.time()
    await asyncio.sleep(0.05)
    history = batch("new", 2500)  # more than one Redis page
    await transport.publish(history)
    reader = Reader(transports(), since)
    await until(lambda: reader.caught_up, what="caught up")
    assert reader.items.index(CAUGHT_UP) == 2500
    assert reader.payloads == history  # nothing before ``since``, everything after, in order
    await transport.publish([b"live"])
    await until(lambda: len(reader.payloads) == 2501, what="live envelope")
    assert reader.items[-1] == b"live"
    assert reader.items.count(CAUGHT_UP) == 1
    await reader.close()


async def test_two_subscribers_see_the_same_sequence(transports: TransportFactory) -> None:
    early = Reader(transports(), time.time() - 60)
    await until(lambda: early.caught_up, what="first reader caught up")
    publishers = [transports(), transports(), transports()]

    async def publish_from(index: int, transport: Transport) -> None:
        for round_ in range(10):
            await transport.publish(batch(f"p{index}r{round_}", 5))

    await asyncio.gather(*(publish_from(i, t) for i, t in enumerate(publishers)))
    late = Reader(transports(), time.time() - 60)  # reads the same messages as history
    await until(lambda: len(early.payloads) == 150 and len(late.payloads) == 150, what="150 envelopes each")
    assert early.payloads == late.payloads
    assert sorted(early.payloads) == sorted(
        p for i in range(3) for r in range(10) for p in batch(f"p{i}r{r}", 5)
    )
    await early.close()
    await late.close()


async def test_resending_a_batch_is_harmless(
    transports: TransportFactory, bus_server: RedisServer | NatsServer
) -> None:
    """A batch sent again after a lost ack: NATS drops the copies; Redis keeps them (readers dedup)."""
    transport = transports()
    await transport.connect()
    await transport.publish(batch("x", 3))
    await transport.publish(batch("x", 3))
    reader = Reader(transports(), 0.0)
    await until(lambda: reader.caught_up, what="caught up")
    copies = 1 if isinstance(bus_server, NatsServer) else 2
    assert reader.payloads == batch("x", 3) * copies
    await reader.close()


async def test_outage_is_reported_promptly_and_the_same_transport_recovers(
    transports: TransportFactory, bus_server: RedisServer | NatsServer
) -> None:
    transport = transports()
    await transport.connect()
    reader = Reader(transports(), time.time())
    await until(lambda: reader.caught_up, what="caught up")
    bus_server.stop()
    await until(lambda: reader.error is not None, timeout=5.0, what="reader fails with BusUnavailable")
    with pytest.raises(BusUnavailable):
        await transport.publish([b"during"])
    with pytest.raises(BusUnavailable):
        await transport.connect()
    bus_server.start()
    deadline = time.monotonic() + 10
    while True:  # JetStream may need a moment after the port opens
        try:
            await transport.publish([b"after"])
            break
        except BusUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    again = Reader(transport, 0.0)
    await until(lambda: again.caught_up, what="caught up after restart")
    assert again.payloads[-1] == b"after"
    await reader.close()
    await again.close()


async def test_a_live_subscriber_gets_a_wake_within_milliseconds(transports: TransportFactory) -> None:
    publisher = transports()
    await publisher.connect()
    reader = Reader(transports(), time.time())
    await until(lambda: reader.caught_up, what="caught up")
    latencies = []
    for i in range(7):
        await asyncio.sleep(0.15)  # let a blocking read settle, so the wake lands mid-wait
        sent = time.monotonic()
        await publisher.publish([f"wake-{i}".encode()])
        await until(lambda n=i + 1: len(reader.payloads) == n, what="wake delivered")  # type: ignore[misc]
        latencies.append(reader.arrived[-1] - sent)
    await reader.close()
    # A generous bound: a poll or pull-batch wait would show up as a large fraction of a second.
    assert statistics.median(latencies) < 0.25, latencies


async def test_a_silent_server_is_noticed_within_seconds(
    transports: TransportFactory, bus_server: RedisServer | NatsServer
) -> None:
    """A server that stops answering (paused, not killed: no RST) must not hang readers or writers."""
    transport = transports()
    await transport.connect()
    reader = Reader(transports(), time.time())
    await until(lambda: reader.caught_up, what="caught up")
    assert bus_server.proc is not None
    pid = bus_server.proc.pid
    bus_server.proc.send_signal(signal.SIGSTOP)
    try:
        # The stop can take a moment to land (a server that just restarted); until then it still answers.
        await until(lambda: "T (stopped)" in Path(f"/proc/{pid}/status").read_text(), what="server stopped")
        with pytest.raises(BusUnavailable):
            await asyncio.wait_for(transport.publish([b"into the void"]), 8.0)
        await until(lambda: reader.error is not None, timeout=8.0, what="reader fails with BusUnavailable")
    finally:
        bus_server.proc.send_signal(signal.SIGCONT)
    await reader.close()


async def test_an_idle_subscription_stays_up(transports: TransportFactory) -> None:
    """Idle longer than a Redis block and two NATS heartbeats: nothing fails, and the next message arrives."""
    publisher = transports()
    await publisher.connect()
    reader = Reader(transports(), time.time())
    await until(lambda: reader.caught_up, what="caught up")
    await asyncio.sleep(2.5)
    assert reader.error is None
    await publisher.publish([b"after a quiet spell"])
    await until(lambda: reader.payloads == [b"after a quiet spell"], what="message after idling")
    await reader.close()
