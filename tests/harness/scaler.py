"""Test helpers for the scaler: a real scaler on free ports, a client that calls it the way KEDA does, and
a simulated proxy instance that publishes reports and wakes through a real transport."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from kedahttp.activity import codec
from kedahttp.activity.bus import BusUnavailable, Transport, open_transport
from kedahttp.activity.model import BackendActivity, Report, WakeEvent
from kedahttp.process import settings as settings_mod
from kedahttp.process.lifecycle import Lifecycle
from kedahttp.process.tasks import TaskOwner
from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.protos.externalscaler_pb2_grpc import ExternalScalerStub
from kedahttp.scaler.main import build_scaler
from kedahttp.scaler.service import GrpcServer
from kedahttp.scaler.state import ScalerState
from kedahttp.scaler.telemetry import MetricsServer
from tests.harness.waiting import until

INTERVAL = 0.25


def hpa_desired(value: float, target: float) -> int:
    """What the HPA computes for an AverageValue external metric: ceil(sum / target)."""
    return math.ceil(value / target)


@dataclass
class Scaler:
    """A running scaler: its components and the ports they bound."""

    state: ScalerState
    grpc: GrpcServer
    metrics: MetricsServer
    lifecycle: Lifecycle

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc.port}"

    async def wait_fresh(self, timeout: float = 15.0) -> None:
        await until(lambda: self.state.fresh(time.time()), timeout, "fresh activity view")

    async def caught_up(self, *proxies: FakeProxy, timeout: float = 10.0) -> None:
        """Waits until every report and wake these proxies published has been folded."""
        agg = self.state.aggregator
        await until(
            lambda: agg.reports + agg.duplicates >= sum(p.seq for p in proxies)
            and agg.wakes >= sum(p.wakes for p in proxies),
            timeout,
            "scaler folded what the proxies published",
        )


def scaler_settings(bus: str, **overrides: str) -> settings_mod.Settings:
    flags: dict[str, str | None] = {
        "bus": bus,
        "scaler_addr": "127.0.0.1:0",
        "metrics_addr": "127.0.0.1:0",
        "shutdown_delay_seconds": "0",
        "drain_timeout_seconds": "2",
        **overrides,
    }
    return settings_mod.load(flags, environ={}, component="scaler")


@asynccontextmanager
async def running_scaler(
    bus: str, transport: Transport | None = None, *, fresh: bool = True, clock: Callable[[], float] = time.time,
    **overrides: str
) -> AsyncIterator[Scaler]:
    """Runs the real scaler (build_scaler under a Lifecycle) until the block ends, then shuts it down."""
    settings = scaler_settings(bus, **overrides)
    components = build_scaler(settings, transport, clock)
    state = next(c for c in components if isinstance(c, ScalerState))
    server = next(c for c in components if isinstance(c, GrpcServer))
    metrics = next(c for c in components if isinstance(c, MetricsServer))
    lifecycle = Lifecycle(components, settings.shutdown_delay_seconds, settings.drain_timeout_seconds)
    task = asyncio.get_running_loop().create_task(lifecycle.run(install_signals=False))
    try:
        await until(lambda: bool(server.port) or task.done(), 10.0, "scaler listening")
        if task.done():
            task.result()  # start-up failed: raise its error
        scaler = Scaler(state, server, metrics, lifecycle)
        if fresh:
            await scaler.wait_fresh()
        yield scaler
    finally:
        lifecycle.request_stop()
        await asyncio.wait_for(task, 15.0)


def ref(name: str = "app", namespace: str = "default", **metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=metadata)


class KedaClient:
    """Calls the scaler the way KEDA does: GetMetricSpec, then GetMetrics per metric, then IsActive."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.stub = ExternalScalerStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def spec(self, so: pb.ScaledObjectRef) -> list[tuple[str, int, float]]:
        response = await self.stub.GetMetricSpec(so, timeout=3)
        return [(s.metricName, s.targetSize, s.targetSizeFloat) for s in response.metricSpecs]

    async def metric(self, so: pb.ScaledObjectRef, name: str) -> tuple[int, float]:
        response = await self.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=so, metricName=name), timeout=3)
        assert len(response.metricValues) == 1, "exactly one value per requested metric"
        value = response.metricValues[0]
        assert value.metricName == name
        assert value.metricValue >= 0 and value.metricValueFloat >= 0
        return value.metricValue, value.metricValueFloat

    async def is_active(self, so: pb.ScaledObjectRef) -> bool:
        response = await self.stub.IsActive(so, timeout=3)
        return bool(response.result)

    async def poll(self, so: pb.ScaledObjectRef) -> tuple[dict[str, tuple[float, float]], bool]:
        """One KEDA poll: {metric: (value, target)} from the float fields, and IsActive."""
        values = {}
        for name, _, target in await self.spec(so):
            _, value = await self.metric(so, name)
            values[name] = (value, target)
        return values, await self.is_active(so)

    async def desired_replicas(self, so: pb.ScaledObjectRef) -> int:
        """The HPA's answer over all metrics of the trigger: the largest ceil(value / target)."""
        values, _ = await self.poll(so)
        return max(hpa_desired(value, target) for value, target in values.values())

    def stream(self, so: pb.ScaledObjectRef) -> Any:
        return self.stub.StreamIsActive(so)

    def watch(self, so: pb.ScaledObjectRef) -> PushStream:
        return PushStream(self.stub.StreamIsActive(so))


class PushStream:
    """An open StreamIsActive call read by a background task, so a test can wait for a message with a
    timeout without cancelling the call (a timed-out read on the call itself would cancel it)."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.received: list[tuple[float, bool]] = []  # (time.perf_counter(), result)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self.call:
            self.received.append((time.perf_counter(), message.result))
            await self.messages.put(message)
        await self.messages.put(None)  # the server ended the stream

    async def next(self, timeout: float) -> Any:
        """The next message (None when the server ended the stream); raises TimeoutError if none came."""
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def nothing_for(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.messages.get(), seconds)
        except TimeoutError:
            return True
        return False

    async def code(self) -> grpc.StatusCode:
        await self._reader
        return await self.call.code()  # type: ignore[no-any-return]

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await self._reader


class FakeProxy:
    """A proxy instance as the scaler sees it: numbered reports and wakes, published through a transport."""

    def __init__(self, transport: Transport, instance: str = "proxy-1") -> None:
        self.transport = transport
        self.instance = instance
        self.seq = 0
        self.wakes = 0
        self.last_sent = 0.0
        self._tasks = TaskOwner(f"fake-{instance}")

    @classmethod
    def on(cls, url: str, instance: str = "proxy-1") -> FakeProxy:
        return cls(open_transport(url), instance)

    async def start(self) -> None:
        await self.transport.connect()

    async def close(self) -> None:
        await self._tasks.close()
        await self.transport.close()

    async def stop_reporting(self) -> None:
        """The instance dies: its reports stop."""
        await self._tasks.close()
        self._tasks = TaskOwner(f"fake-{self.instance}")

    def make_report(self, entries: Iterable[BackendActivity], sent_at: float | None = None) -> Report:
        sent_at = time.time() if sent_at is None else sent_at
        start = self.last_sent if self.last_sent else sent_at - INTERVAL
        self.seq += 1
        self.last_sent = sent_at
        return Report(self.instance, self.seq, sent_at, start, INTERVAL, tuple(entries))

    async def report(self, *entries: BackendActivity, sent_at: float | None = None) -> None:
        await self.transport.publish([codec.encode_report(self.make_report(entries, sent_at))])

    async def wake(self, backend: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        self.wakes += 1
        await self.transport.publish([codec.encode_wake(WakeEvent(backend, self.instance, at))])

    async def history(self, seconds: float, entries: Callable[[float, float], Iterable[BackendActivity]]) -> None:
        """Publishes the reports of the last ``seconds`` at once, each built by ``entries(start, end)``."""
        now = time.time()
        ticks = int(seconds / INTERVAL)
        self.last_sent = now - ticks * INTERVAL
        batch = []
        for k in range(ticks - 1, -1, -1):
            end = now - k * INTERVAL
            batch.append(codec.encode_report(self.make_report(entries(self.last_sent, end), end)))
        await self.transport.publish(batch)

    def keep_reporting(self, entries: Callable[[float, float], Iterable[BackendActivity]] = lambda a, b: ()) -> None:
        """Publishes a report every interval in the background, as a live proxy does (idle ones too)."""

        async def loop() -> None:
            unsent: list[bytes] = []  # kept while the bus is down and sent in order when it is back
            while True:
                await asyncio.sleep(INTERVAL)
                now = time.time()
                start = self.last_sent or now - INTERVAL
                unsent.append(codec.encode_report(self.make_report(entries(start, now), now)))
                try:
                    await self.transport.publish(unsent)
                except BusUnavailable:
                    continue
                unsent = []

        self._tasks.spawn(loop(), "reports")


def steady(backend: str, in_flight: int = 0, held: int = 0, rate: float = 0.0) -> Callable[[float, float],
                                                                                         list[BackendActivity]]:
    """Entries for a backend with a constant in-flight/held count and ``rate`` arrivals per second."""

    def entries(start: float, end: float) -> list[BackendActivity]:
        span = end - start
        started = round(rate * span)
        if not (in_flight or held or started):
            return []
        return [BackendActivity(backend, in_flight=in_flight, held=held, started=started, completed=started,
                                busy_seconds=(in_flight + held) * span, last_request_at=end if started else 0.0)]

    return entries
