"""Wake-to-push latency: from a proxy publishing a wake event to KEDA's StreamIsActive receiving ``true``.

Private redis-server and nats-server (tests/harness/servers.py); the scaler runs as its own process
(``python -m kedahttp scaler``, on uvloop, as deployed); the bench process plays the proxy (publishing
through the real transport) and KEDA (one open stream per backend, plus idle streams for load). Each
sample wakes a backend that was idle, so every push is an inactive-to-active change. One simulated
proxy instance keeps reporting (heartbeats with some busy backends) meanwhile, as a live one would.
Goal (issue 3): p99 under 10 ms. The KEDA HTTP add-on polls every 500 ms and pushes every 200 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from kedahttp.activity import codec
from kedahttp.activity.bus import Transport, open_transport
from kedahttp.activity.model import BackendActivity, Report, WakeEvent
from kedahttp.process.tasks import TaskOwner
from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.protos.externalscaler_pb2_grpc import ExternalScalerStub
from tests.harness.servers import NatsServer, RedisServer, ServerProcess, free_port, wait_port

NAME = "scaler_latency"
INTERVAL = 0.25


@contextlib.contextmanager
def bus_server(kind: str) -> Iterator[ServerProcess]:
    server: ServerProcess = RedisServer() if kind == "redis" else NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@dataclass
class ScalerProcess:
    target: str  # host:port of the gRPC listener
    metrics_port: int

    def histogram(self, name: str, match: str = "") -> dict[str, Any]:
        """A histogram the scaler exports, summarised: the upper bound of the bucket holding its 99th
        percentile and of the one holding its worst sample (bucket bounds, so "at most")."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        buckets = []
        for line in text.splitlines():
            if line.startswith(f"{name}_bucket") and match in line:
                bound = line.split('le="')[1].split('"')[0]
                buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
        total = buckets[-1][1] if buckets else 0.0
        if not total:
            return {"samples": 0}
        p99 = next(bound for bound, count in buckets if count >= 0.99 * total)
        worst = next(bound for bound, count in buckets if count >= total)
        return {"samples": int(total), "p99_at_most_ms": p99 * 1000, "max_at_most_ms": worst * 1000}

    def loop_lag(self) -> dict[str, Any]:
        """How late the scaler's 0.25 s timer fired (uvloop timers have 1 ms resolution)."""
        return self.histogram("kedahttp_scaler_loop_lag_seconds")


@contextlib.contextmanager
def scaler_process(bus_url: str) -> Iterator[ScalerProcess]:
    """Runs ``kedahttp scaler`` on free ports."""
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "KEDAHTTP_BUS": bus_url, "KEDAHTTP_SHUTDOWN_DELAY_SECONDS": "0",
           "KEDAHTTP_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kedahttp", "scaler", "--scaler-addr", f"127.0.0.1:{port}",
         "--metrics-addr", f"127.0.0.1:{metrics_port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, 20)
        wait_port(metrics_port, 5)
        yield ScalerProcess(f"127.0.0.1:{port}", metrics_port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_fresh(stub: ExternalScalerStub, timeout: float = 20.0) -> None:
    """Waits until the scaler answers (it says UNAVAILABLE while it replays the bus)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await stub.IsActive(pb.ScaledObjectRef(name="probe", namespace="bench"), timeout=2)
            return
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


class Proxies:
    """Simulated proxy instances reporting every interval through one transport."""

    def __init__(self, transport: Transport, instances: int, backends: list[str], per_report: int) -> None:
        self.transport = transport
        self.instances = instances
        self.backends = backends
        self.per_report = per_report
        self.seq = 0
        self.offset = 0

        self.last = [time.time()] * instances

    def report(self, i: int) -> bytes:
        """Instance ``i``'s next report. Instances report at their own phase, spread over the interval,
        as independent proxies do."""
        now = time.time()
        if i == 0:
            self.seq += 1
        entries = []
        for _ in range(self.per_report):
            name = self.backends[self.offset % len(self.backends)]
            self.offset += 1
            entries.append(BackendActivity(name, in_flight=1, started=2, completed=2,
                                           busy_seconds=now - self.last[i], last_request_at=now))
        report = Report(f"bench-proxy-{i}", self.seq, now, self.last[i], INTERVAL, tuple(entries))
        self.last[i] = now
        return codec.encode_report(report)

    async def run(self) -> None:
        step = INTERVAL / self.instances
        next_at = time.monotonic()
        while True:
            for i in range(self.instances):
                await self.transport.publish([self.report(i)])
                next_at += step
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))


@contextlib.asynccontextmanager
async def proxies(bus_url: str, instances: int, backends: list[str], per_report: int) -> AsyncIterator[Transport]:
    """Reports from simulated proxies, published by a separate process (encoding thousands of entries a
    second must not stall the measuring client's loop); yields a transport for the bench's own wakes."""
    process = multiprocessing.get_context("spawn").Process(
        target=_publish_forever, args=(bus_url, instances, backends, per_report), daemon=True
    )
    process.start()
    transport = open_transport(bus_url)
    await transport.connect()
    try:
        yield transport
    finally:
        process.terminate()
        process.join(10)
        await transport.close()


def _publish_forever(bus_url: str, instances: int, backends: list[str], per_report: int) -> None:
    async def main() -> None:
        transport = open_transport(bus_url)
        await transport.connect()
        await Proxies(transport, instances, backends, per_report).run()

    asyncio.run(main())


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"samples": len(ordered), "p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99),
            "max_ms": round(ordered[-1], 3), "mean_ms": round(statistics.fmean(ordered), 3)}


async def measure_push(bus_url: str, target: str, samples: int, idle_streams: int) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(target) as channel, \
            proxies(bus_url, 1, [f"busy/app{i}" for i in range(100)], 20) as transport:
        stub = ExternalScalerStub(channel)
        await wait_fresh(stub)
        received: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
        tasks = TaskOwner("bench-streams")

        async def read(name: str, call: Any) -> None:
            with contextlib.suppress(grpc.aio.AioRpcError):  # cancelled at the end
                async for message in call:
                    if message.result:
                        received.put_nowait((name, time.perf_counter()))

        calls = []
        names = [f"wake{i}" for i in range(samples)]
        for name in names + [f"idle{i}" for i in range(idle_streams)]:
            call = stub.StreamIsActive(pb.ScaledObjectRef(name=name, namespace="bench"))
            calls.append(call)
            tasks.spawn(read(name, call), name)
        await asyncio.sleep(1.0)  # every stream open and registered
        latencies = []
        for name in names:
            sent = time.perf_counter()
            await transport.publish([codec.encode_wake(WakeEvent(f"bench/{name}", "bench-proxy-0", time.time()))])
            got, at = await asyncio.wait_for(received.get(), 5)
            assert got == name, (got, name)
            latencies.append((at - sent) * 1000)
            await asyncio.sleep(0.01)
        await tasks.close()
        for call in calls:
            call.cancel()
        return percentiles(latencies)


def run(quick: bool) -> dict[str, Any]:
    samples, idle = (200, 1000) if quick else (1000, 2000)
    figures: dict[str, Any] = {"open_idle_streams": idle, "goal_p99_ms": 10,
                               "load_average_at_start": round(os.getloadavg()[0], 2)}
    for kind in ("redis", "nats"):
        with bus_server(kind) as server, scaler_process(server.url) as scaler:  # type: ignore[attr-defined]
            figures[kind] = asyncio.run(measure_push(server.url, scaler.target, samples, idle))  # type: ignore[attr-defined]
            figures[kind]["scaler_loop_lag"] = scaler.loop_lag()
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
