"""A bounded soak: steady load through a real proxy process with periodic bus restarts and cold starts, and
a real scaler process counting it. At the end: no request lost, the ones that must succeed succeeded, no
descriptor or memory growth past a stated bound in either process, and the scaler's counts equal to the
requests the clients sent.

``KEDAHTTP_SOAK_SECONDS`` (default 60) sets the length, ``KEDAHTTP_SOAK_BUS`` (redis or nats, default redis)
the bus (``KEDAHTTP_SOAK_SEGMENT_SECONDS`` the counting segment, below). Each cycle of CYCLE_SECONDS: the bus is SIGKILLed and restarted, then the "cold" backend goes to
zero the way KEDA takes it there (idle first, then stopped), requests arrive and are held, and it starts
again. Every request for either backend must come back 200 with its own body: the held ones after the
cold start, the others while the bus is down. A long soak is counted in segments of at most 500 s (the
scaler's rate window is at most 600 s), with a quiet gap between them.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path

import grpc
import pytest

from tests.harness.fault_clients import OK, KedaClient, Poller, Traffic, ref
from tests.harness.faulty_upstream import FaultyUpstream
from tests.harness.procs import KedahttpProcess, ProxyProcess, ScalerProcess
from tests.harness.servers import NatsServer, RedisServer, free_port

SOAK_SECONDS = float(os.environ.get("KEDAHTTP_SOAK_SECONDS", "60"))
CYCLE_SECONDS = 12.0
SEGMENT_SECONDS = min(580.0, float(os.environ.get("KEDAHTTP_SOAK_SEGMENT_SECONDS", "500")))
GAP_SECONDS = 4.0  # quiet between segments, so each segment's count is read over its own seconds
WARM_SECONDS = CYCLE_SECONDS  # one full cycle before the baselines of memory and descriptors
# Bounds on growth from the end of the first cycle to the end of the soak.
FD_GROWTH = 5
RSS_GROWTH_KB = 8 * 1024

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SOAK_SECONDS + 150)]


class Usage:
    """Descriptors and resident memory (KiB) of the proxy and the scaler, sampled once per cycle."""

    def __init__(self, **procs: KedahttpProcess) -> None:
        self.procs = procs
        self.samples: dict[str, list[tuple[int, int]]] = {name: [] for name in procs}

    def sample(self) -> None:
        for name, proc in self.procs.items():
            self.samples[name].append((proc.fd_count(), proc.rss_kb()))

    def growth(self, name: str) -> tuple[int, int]:
        """(descriptors, RSS KiB) at the last sample minus the first."""
        (fd0, rss0), (fd1, rss1) = self.samples[name][0], self.samples[name][-1]
        return fd1 - fd0, rss1 - rss0

    def describe(self, name: str) -> str:
        samples = self.samples[name]
        (fd0, rss0), (fd1, rss1) = samples[0], samples[-1]
        return (f"{name}: descriptors {fd0} -> {fd1} (max {max(s[0] for s in samples)}), RSS "
                f"{rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB (max {max(s[1] for s in samples) / 1024:.1f} MiB)")


async def cycle(bus: RedisServer | NatsServer, cold: FaultyUpstream, cold_traffic: Traffic) -> None:
    """One cycle: a bus outage, then a cold start of the cold backend."""
    began = time.monotonic()
    bus.stop()
    await asyncio.sleep(1.5)
    bus.start()
    await asyncio.sleep(2.0)
    await cold_traffic.idle()  # KEDA scales to zero only after the backend has been idle
    await cold.stop()
    await asyncio.sleep(2.0)  # the proxy's readiness probe (every second) sees it gone
    cold_traffic.resume()  # these requests are held...
    await asyncio.sleep(1.5)
    await cold.start()  # ...and released when it accepts connections again
    await asyncio.sleep(max(0.0, CYCLE_SECONDS - (time.monotonic() - began)))


async def test_soak(tmp_path: Path, procs: list[KedahttpProcess], soak_bus: RedisServer | NatsServer) -> None:
    bus = soak_bus
    steady = await FaultyUpstream().start()
    cold = await FaultyUpstream(free_port()).start()
    proxy = ProxyProcess(tmp_path, {"steady": steady.port, "cold": cold.port}, bus.url,
                         cold_start_timeout_seconds="15")
    scaler = ScalerProcess(tmp_path, bus.url)
    procs += [proxy, scaler]
    await asyncio.to_thread(proxy.wait_listening)
    await asyncio.to_thread(scaler.wait_listening)
    keda = KedaClient(scaler.target)
    await keda.wait_fresh()
    segment_began = time.monotonic()  # the first segment counts from the first request
    steady_traffic = Traffic(proxy.port, "steady.test", concurrency=3, prefix="s", query="delay=5").start()
    cold_traffic = Traffic(proxy.port, "cold.test", concurrency=4, prefix="c", pace=0.05).start()
    so = ref("steady", targetConcurrency="1")
    deadline = time.monotonic() + 10
    while not (await keda.is_active(so))[1]:  # the scaler has heard of the steady traffic
        assert time.monotonic() < deadline, "the scaler never saw the steady traffic"
        await asyncio.sleep(0.05)
    poller = Poller(keda, so, every=0.25).start()
    usage = Usage(proxy=proxy, scaler=scaler)
    counts: list[tuple[str, float, int]] = []  # (backend, counted by the scaler, sent)
    quiet: list[tuple[float, float]] = []  # gaps between counting segments: concurrency may read 0 there
    cycles = 0
    started = time.monotonic()
    try:
        sent_before = {"steady": 0, "cold": 0}
        while time.monotonic() - started < SOAK_SECONDS:
            while (time.monotonic() - started < SOAK_SECONDS
                   and time.monotonic() - segment_began < SEGMENT_SECONDS):
                await cycle(bus, cold, cold_traffic)
                cycles += 1
                usage.sample()  # the first sample, after one whole cycle, is the baseline
            quiet_from = time.monotonic()
            await steady_traffic.idle()
            await cold_traffic.idle()
            await asyncio.sleep(2.5)  # the last reports, and the rate window's lag
            window_start = math.floor(time.time() - (time.monotonic() - segment_began) - 1.0)
            window = math.floor(time.time() - 0.5) - window_start
            assert window <= 600, window  # the longest rate window the scaler serves
            for name, traffic in (("steady", steady_traffic), ("cold", cold_traffic)):
                counted = await keda.started_total(name, window)
                counts.append((name, counted, traffic.sent - sent_before[name]))
            if time.monotonic() - started < SOAK_SECONDS:
                await asyncio.sleep(GAP_SECONDS)
                segment_began = time.monotonic()
                quiet.append((quiet_from, segment_began + 1.0))
                sent_before = {"steady": steady_traffic.sent, "cold": cold_traffic.sent}
                steady_traffic.resume()
                cold_traffic.resume()
        await poller.stop()
        await steady_traffic.stop()
        await cold_traffic.stop()
        await asyncio.sleep(1.0)
        usage.sample()
    finally:
        await poller.stop()
        await steady_traffic.stop()
        await cold_traffic.stop()
        await keda.close()
        await steady.stop()
        await cold.stop()

    outcomes = steady_traffic.outcomes + cold_traffic.outcomes
    held = [o for o in cold_traffic.outcomes if o.headers.get("x-kedahttp-cold-start") == "true"]
    zeros = [s for s in poller.samples if s[1] == grpc.StatusCode.OK and s[2] <= 0
             and not any(a <= s[0] <= b + 4.0 for a, b in quiet)]
    unavailable = sum(1 for s in poller.samples if s[1] == grpc.StatusCode.UNAVAILABLE)
    print(f"soak over {bus.name}: {time.monotonic() - started:.0f} s, {cycles} bus restarts and cold starts; "
          f"{len(steady_traffic.outcomes)} steady + {len(cold_traffic.outcomes)} cold requests "
          f"({len(held)} held through a cold start); scaler counts {counts}; "
          f"polls: {len(poller.samples)}, {unavailable} UNAVAILABLE, {len(zeros)} zero concurrency")
    for name in usage.procs:
        print("  " + usage.describe(name))
    by_kind = {OK: 0}
    for o in outcomes:
        by_kind[o.kind] = by_kind.get(o.kind, 0) + 1
    assert by_kind == {OK: len(outcomes)}, {k: v for k, v in by_kind.items() if k != OK}
    handled = sorted(r.rid for r in steady.received + cold.received)
    assert handled == sorted(o.rid for o in outcomes)  # every request answered by its upstream, once
    assert held, "no request was held through a cold start"
    idle = [round(s[0] - started, 2) for s in poller.samples if s[3] == grpc.StatusCode.OK and not s[4]]
    assert not idle, f"IsActive said idle at {idle} s"
    for name, counted, sent in counts:
        assert abs(counted - sent) < 0.01, (name, counted, sent)
    for name in usage.procs:
        fds, rss = usage.growth(name)
        assert fds <= FD_GROWTH and rss < RSS_GROWTH_KB, usage.describe(name)
