"""A scaler replica SIGKILLed while KEDA-like clients hold StreamIsActive streams on it: each client
reconnects to the other replica from its list of addresses (as a Service would send it there) and is told
the current state at once: ``true`` on open for an active backend, nothing for an idle one until a request
wakes it. Activity comes from a real proxy forwarding real requests over Redis."""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kedahttp.activity.bus import open_transport
from kedahttp.proxy.assembly import build
from kedahttp.proxy.sources import Backend
from tests.harness.fault_clients import OK, HttpConnection, KedaClient, StreamWatcher, ref, send
from tests.harness.faulty_upstream import FaultyUpstream
from tests.harness.procs import ScalerProcess
from tests.harness.proxy import RunningProxy, proxy_settings
from tests.harness.servers import RedisServer
from tests.harness.static_source import StaticSource
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)

STREAMS = 6  # per backend, spread over both replicas


async def test_streams_move_to_the_surviving_replica_and_get_the_current_state(
        tmp_path: Path, procs: list[ScalerProcess], upstream: FaultyUpstream, redis_server: RedisServer) -> None:
    scalers = [ScalerProcess(tmp_path, redis_server.url, name=f"scaler-{i}") for i in range(2)]
    procs.extend(scalers)
    settings = proxy_settings(bus=redis_server.url)
    source = StaticSource([Backend(key="default/hot", hosts=("hot.test",)),
                           Backend(key="default/idle", hosts=("idle.test",))],
                          {"default/hot": [upstream.endpoint], "default/idle": [upstream.endpoint]})
    proxy = await RunningProxy(build(settings, source, open_transport(settings.bus))).start()
    clients: list[KedaClient] = []
    watchers: list[StreamWatcher] = []
    try:
        for scaler in scalers:
            await asyncio.to_thread(scaler.wait_listening)
        clients = [KedaClient(s.target) for s in scalers]
        for client in clients:
            await client.wait_fresh()
        conn = HttpConnection(proxy.port)
        for i in range(5):
            assert (await send(conn, "GET", "ok", f"hot{i}", "hot.test")).kind == OK
        conn.close()
        for client in clients:
            await until_async(functools.partial(client.is_active, ref("hot")), 5, "both replicas see hot active")

        hot = [StreamWatcher(clients, ref("hot"), first=i % 2).start() for i in range(STREAMS)]
        idle = [StreamWatcher(clients, ref("idle"), first=i % 2).start() for i in range(STREAMS)]
        watchers = hot + idle
        await until(lambda: all(w.trues for w in hot), 5, "true pushed on open for the active backend")
        await asyncio.sleep(0.3)
        assert not any(w.trues for w in idle)

        victim = scalers[0]
        on_victim = [w for w in hot if w.target == victim.target]
        idle_on_victim = [w for w in idle if w.target == victim.target]
        assert on_victim and idle_on_victim
        t0 = time.monotonic()
        victim.signal(signal.SIGKILL)
        survivor = scalers[1].target
        await until(lambda: all(any(t == survivor for _, t in w.trues) for w in on_victim), 10,
                    "moved streams told true by the survivor")
        await until(lambda: all(w.target == survivor and w.opened[-1][1] == survivor for w in idle_on_victim), 10,
                    "idle streams reconnected")
        moved = sorted(next(at for at, t in w.trues if t == survivor) - t0 for w in on_victim)
        breaks = {b[2] for w in on_victim + idle_on_victim for b in w.breaks}
        await asyncio.sleep(1.0)
        assert not any(w.trues for w in idle), "an idle backend was reported active"

        woke = time.monotonic()
        assert (await send(HttpConnection(proxy.port), "GET", "ok", "wake1", "idle.test")).kind == OK
        await until(lambda: all(w.trues for w in idle), 5, "the wake reaches every idle stream")
        pushed = max(w.trues[0][0] for w in idle) - woke
        print(f"scaler failover: streams broke with {sorted(breaks)}; true from the survivor "
              f"{moved[0] * 1000:.0f}-{moved[-1] * 1000:.0f} ms after the kill (client backoff 200 ms); "
              f"wake pushed to {STREAMS} streams within {pushed * 1000:.0f} ms")
        assert breaks == {"UNAVAILABLE"}
    finally:
        for watcher in watchers:
            await watcher.stop()
        for client in clients:
            await client.close()
        await proxy.stop()


async def until_async(check: Callable[[], Awaitable[tuple[Any, bool]]], timeout: float, what: str) -> None:
    """Polls an async check returning (status code, answer) until the answer is true."""
    deadline = time.monotonic() + timeout
    while True:
        code, value = await check()
        if value:
            return
        assert time.monotonic() < deadline, f"{what}: last answer {code} {value}"
        await asyncio.sleep(0.05)
