"""The adaptive keep-alive against real Redis and real NATS: two replicas learn the same idle-time
histogram from the log, a scaler started after the log is gone gets it back from the store, and the
snapshot of an app idle for a week is deleted from the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import nats
import pytest
import redis.asyncio as aredis

from kedahttp.activity.nats_bus import STREAM
from kedahttp.activity.redis_bus import DEFAULT_STREAM_KEY
from kedahttp.scaler import keepalive
from kedahttp.scaler.keepalive_store import open_store
from tests.harness.scaler import FakeProxy, KedaClient, ref, running_scaler
from tests.harness.servers import NatsServer, RedisServer
from tests.harness.waiting import until

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


async def test_the_store_deletes_what_it_saved(bus_server: BusServer) -> None:
    store = open_store(bus_server.url)
    try:
        await store.save([("ns/a", '{"v":1}'), ("ns/b", '{"v":2}')])
        await store.delete(["ns/a", "ns/never-saved"])  # an absent key is no error
        assert await store.load() == {"ns/b": '{"v":2}'}
        await store.delete([])
    finally:
        await store.close()


async def test_a_snapshot_idle_for_a_week_is_dropped_from_the_store(bus_server: BusServer) -> None:
    """A scaler restoring an old snapshot forgets it on its first round and deletes it from the store,
    while a recent one is kept in both."""
    now = time.time()
    old_at, recent_at = now - keepalive.FORGET_AFTER_SECONDS - 60, now - 60
    seed = open_store(bus_server.url)
    await seed.save([("default/gone", f'{{"v":1,"last_at":{old_at},"last_minute":{int(old_at // 60)},"gaps":[]}}'),
                     ("default/kept", f'{{"v":1,"last_at":{recent_at},"last_minute":{int(recent_at // 60)},"gaps":[]}}')])
    try:
        async with running_scaler(bus_server.url, fresh=False) as scaler:
            async def stored() -> set[str]:
                return set(await seed.load())

            deadline = time.monotonic() + 15
            while await stored() != {"default/kept"}:
                assert time.monotonic() < deadline, f"store still holds {await stored()}"
                await asyncio.sleep(0.1)
            await until(lambda: scaler.state.keepalive.backends == 1, 5, "the old backend forgotten in memory")
            assert scaler.state.keepalive.last_activity("default/kept") == recent_at
    finally:
        await seed.close()
