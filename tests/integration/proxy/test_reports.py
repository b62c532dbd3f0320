"""Activity reports over real Redis and NATS: three proxy instances add up in the scaler's Aggregator;
a dead bus never fails a request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from kedahttp.activity.aggregate import Aggregator
from kedahttp.activity.bus import CAUGHT_UP, open_transport
from kedahttp.activity.codec import decode
from tests.harness.clients import curl
from tests.harness.proxy import RunningProxy, app_backend, make_settings
from tests.harness.servers import free_port
from tests.harness.static_source import StaticSource
from tests.harness.upstreams import Upstream

pytestmark = pytest.mark.timeout(60)


async def read_log(url: str) -> list[Any]:
    transport = open_transport(url)
    await transport.connect()
    messages = []
    try:
        async with asyncio.timeout(10):
            async for item in transport.subscribe(since=0.0):
                if item is CAUGHT_UP:
                    break
                messages.append(decode(item))  # type: ignore[arg-type]
    finally:
        await transport.close()
    return messages


def fold(messages: list[Any]) -> Aggregator:
    aggregator = Aggregator()
    now = time.time()
    for message in messages:
        aggregator.fold(message, now)
    return aggregator


async def test_three_instances_sum_in_the_aggregator(bus_server: Any, upstream: Upstream, proxy_factory: Any) -> None:
    settings = make_settings(bus=bus_server.url, report_interval_seconds=0.1)
    proxies: list[RunningProxy] = [
        await proxy_factory(StaticSource([app_backend()], {"default/app": [upstream.endpoint]}), settings)
        for _ in range(3)
    ]
    assert len({p.proxy.counters.instance for p in proxies}) == 3
    upstream.gate.clear()  # requests stay in flight until the gate opens
    pending = [
        asyncio.ensure_future(curl("-H", "Host: app.test", f"{p.url}/slow"))
        for p, n in zip(proxies, (2, 3, 4), strict=True) for _ in range(n)
    ]
    async with asyncio.timeout(10):
        while True:
            if sum(p.counters().in_flight for p in proxies) == 9:
                break
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.35)  # a few report intervals
    metrics = fold(await read_log(bus_server.url)).metrics("default/app", time.time())
    assert metrics.in_flight == 9 and metrics.held == 0 and metrics.active

    upstream.gate.set()
    results = await asyncio.gather(*pending)
    assert all(code == 0 for code, _, _ in results)
    await asyncio.sleep(0.35)
    messages = await read_log(bus_server.url)
    metrics = fold(messages).metrics("default/app", time.time())
    assert metrics.in_flight == 0 and metrics.active
    reports = [m for m in messages if hasattr(m, "seq")]
    started = sum(b.started for r in reports for b in r.backends if b.backend == "default/app")
    completed = sum(b.completed for r in reports for b in r.backends if b.backend == "default/app")
    assert (started, completed) == (9, 9)
    for proxy in proxies:  # every instance numbers its reports 1, 2, 3... and heartbeats while idle
        seqs = [r.seq for r in reports if r.instance == proxy.proxy.counters.instance]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 5


async def test_dead_bus_never_fails_or_holds_a_request(upstream: Upstream, proxy_factory: Any) -> None:
    settings = make_settings(bus=f"redis://127.0.0.1:{free_port()}/0", report_interval_seconds=0.05)
    running: RunningProxy = await proxy_factory(
        StaticSource([app_backend()], {"default/app": [upstream.endpoint]}), settings)
    for _ in range(20):
        code, out, err = await curl("-H", "Host: app.test", f"{running.url}/headers")
        assert code == 0 and '"method": "GET"' in out, err
    async with asyncio.timeout(10):
        while True:
            if running.proxy.publisher.stats.publish_errors > 0:
                break
            await asyncio.sleep(0.05)
    assert running.counters().completed == 20
    metrics = running.proxy.metrics
    assert metrics is not None
    code, out, _ = await curl(f"http://127.0.0.1:{metrics.port}/metrics")
    line = next(x for x in out.splitlines() if x.startswith("kedahttp_proxy_report_publish_errors_total"))
    assert float(line.split()[-1]) >= 1
