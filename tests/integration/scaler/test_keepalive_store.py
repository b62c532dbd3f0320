"""The adaptive keep-alive against real Redis and real NATS: two replicas learn the same idle-time
histogram from the log, and a scaler started after the log is gone gets it back from the store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import nats
import pytest
import redis.asyncio as aredis

from kedahttp.activity.nats_bus import STREAM
from kedahttp.activity.redis_bus import DEFAULT_STREAM_KEY
from tests.harness.servers import NatsServer, RedisServer
from tests.unit.scaler.harness import FakeProxy, KedaClient, ref, running_scaler

pytestmark = pytest.mark.timeout(60)

APP = "default/timer"
BusServer = RedisServer | NatsServer
EVERY_MINUTES = 15


@pytest.fixture
async def proxy(bus_server: BusServer) -> AsyncIterator[FakeProxy]:
    fake = FakeProxy.on(bus_server.url, "proxy-a")
    await fake.start()
    yield fake
    await fake.close()


async def drop_log(server: BusServer) -> None:
    """Deletes the bus's retained log but nothing else (the keep-alive store stays)."""
    if isinstance(server, RedisServer):
        client = aredis.Redis.from_url(server.url)
        await client.delete(DEFAULT_STREAM_KEY)
        await client.aclose()
        return
    nc = await nats.connect(server.url)
    await nc.jetstream().delete_stream(STREAM)
    await nc.close()


async def test_replicas_agree_and_a_restart_keeps_what_was_learned(bus_server: BusServer, proxy: FakeProxy) -> None:
    now = time.time()
    last = now - 5 * 60  # the timer last fired 5 minutes ago
    for k in range(10, -1, -1):  # ... and every 15 minutes before that
        await proxy.wake(APP, at=last - k * EVERY_MINUTES * 60)
    adaptive = ref("timer", keepAlive="adaptive", activityWindowSeconds="600")
    window = ref("timer", activityWindowSeconds="600")
    async with running_scaler(bus_server.url) as a, running_scaler(bus_server.url) as b:
        await a.caught_up(proxy)
        await b.caught_up(proxy)
        snapshot = a.state.keepalive.snapshot(APP)
        assert b.state.keepalive.snapshot(APP) == snapshot
        learned = a.state.keepalive.window(APP)
        assert learned is not None and learned.prewarm_seconds > 5 * 60  # released after the burst
        keda = KedaClient(a.target)
        assert await keda.is_active(window) is True  # a 10-minute window still holds it
        assert await keda.is_active(adaptive) is False  # the histogram lets it go
        await keda.close()
    await drop_log(bus_server)
    async with running_scaler(bus_server.url) as c:
        assert c.state.aggregator.wakes == 0  # nothing replayed: all it knows comes from the store
        assert c.state.keepalive.snapshot(APP) == snapshot
        keda = KedaClient(c.target)
        assert await keda.is_active(adaptive) is False
        assert await keda.is_active(window) is False  # the log is gone: the window knows nothing
        await keda.close()
