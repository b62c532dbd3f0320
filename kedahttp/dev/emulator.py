"""The KEDA emulator: a real gRPC client of the scaler that scales local apps the way KEDA and the HPA would.

Per app it plays one ScaledObject with an ``external-push`` trigger (CONTRACT section 8):

* the push path: ``StreamIsActive`` held open; a pushed ``true`` runs KEDA's scale executor at once
  (activation from 0); a pushed ``false`` is ignored; a broken stream is reopened after 2 s doubling to
  60 s, reset only when the scaler ends it with OK;
* the polling path: every ``pollingInterval``, ``GetMetricSpec`` then ``GetMetrics`` + ``IsActive`` per
  metric, and the scale executor (activation, ``cooldownPeriod`` before 0; a failed call counts as
  inactive, as in KEDA without a fallback);
* the HPA path (1..N): every sync period while the app has replicas, the same calls within the 3 s
  budget, then the HPA's arithmetic (hpa.py) on the values, with each metric's target from
  ``GetMetricSpec``.

The decisions themselves are the pure cores keda.py and hpa.py; this module owns only the calls, the
timers and KEDA's per-ScaledObject lock between the push and the polling paths. Every change of replica
count is kept as a ScalingEvent (for the view) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from kedahttp.dev.config import AppConfig, EmulatorConfig
from kedahttp.dev.hpa import Hpa, HpaSpec, MetricReading
from kedahttp.dev.keda import ScaledObjectSpec, ScaleExecutor, stream_backoff
from kedahttp.dev.runtime import AppStatus
from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.tasks import TaskOwner
from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.protos.externalscaler_pb2_grpc import ExternalScalerStub

log = logging.getLogger("kedahttp.dev.emulator")

EVENTS_KEPT = 20


class ScaleTarget(Protocol):
    """What the emulator scales: the local runtime, or anything with a scale subresource."""

    def status(self, key: str) -> AppStatus: ...

    async def scale(self, key: str, replicas: int) -> None: ...


@dataclass(frozen=True, slots=True)
class ScalingEvent:
    at: float  # wall-clock seconds
    app: str
    by: str  # "keda" (activation, cooldown) or "hpa"
    old: int
    new: int
    reason: str


@dataclass(frozen=True, slots=True)
class Observation:
    """One round of GetMetricSpec + GetMetrics + IsActive."""

    readings: tuple[MetricReading, ...]
    active: bool
    error: str | None = None


@dataclass(slots=True)
class AppView:
    """What the emulator last saw and did for one app, for the live view."""

    readings: tuple[MetricReading, ...] = ()
    active: bool | None = None
    error: str | None = None
    stream: str = "connecting"
    reconnect_delay: float = 0.0  # the last StreamIsActive reconnect delay chosen
    hpa_reason: str = ""
    events: deque[ScalingEvent] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))


class ScaledObjectEmulator:
    """KEDA's handling of one ScaledObject plus its HPA."""

    def __init__(self, app: AppConfig, config: EmulatorConfig, stub: ExternalScalerStub, target: ScaleTarget,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.key = app.key
        self.config = config
        self.stub = stub
        self.target = target
        self.clock = clock
        self.ref = pb.ScaledObjectRef(name=app.name, namespace=app.namespace, scalerMetadata=app.scaler_metadata())
        spec = ScaledObjectSpec(
            min_replica_count=app.min_replicas, max_replica_count=app.max_replicas,
            polling_interval_seconds=config.polling_interval_seconds,
            cooldown_period_seconds=config.cooldown_period_seconds,
        )
        self.executor = ScaleExecutor(spec)
        self.hpa = Hpa(HpaSpec(
            min_replicas=spec.hpa_min_replicas, max_replicas=app.max_replicas, tolerance=config.tolerance,
            scale_up=config.scale_up, scale_down=config.scale_down,
        ))
        self.view = AppView()
        self._lock = asyncio.Lock()  # KEDA's scaling mutex: push and poll never decide at once

    # -- the calls ----------------------------------------------------------------------------------

    async def observe(self) -> Observation:
        """GetMetricSpec, then GetMetrics and IsActive for each metric, within the call budget."""
        budget = self.config.call_timeout_seconds
        deadline = time.monotonic() + budget
        try:
            specs = await self.stub.GetMetricSpec(self.ref, timeout=budget)
            readings: list[MetricReading] = []
            active = False
            failed: str | None = None
            for metric in specs.metricSpecs:
                target = metric.targetSizeFloat if metric.targetSizeFloat > 0 else float(metric.targetSize)
                try:
                    left = max(deadline - time.monotonic(), 0.01)
                    response = await self.stub.GetMetrics(
                        pb.GetMetricsRequest(scaledObjectRef=self.ref, metricName=metric.metricName), timeout=left)
                    value = _value_of(response.metricValues, metric.metricName)
                    if value is None:
                        failed = f"GetMetrics returned no value for {metric.metricName!r}"
                    left = max(deadline - time.monotonic(), 0.01)
                    is_active = await self.stub.IsActive(self.ref, timeout=left)
                    active = active or is_active.result
                except grpc.aio.AioRpcError as exc:
                    value, failed = None, _describe(exc)
                readings.append(MetricReading(metric.metricName, target, value))
            if not specs.metricSpecs:
                failed = "GetMetricSpec returned no metrics"
            return Observation(tuple(readings), active, failed)
        except grpc.aio.AioRpcError as exc:
            return Observation((), False, _describe(exc))

    # -- the decisions ------------------------------------------------------------------------------

    async def request_scale(self, active: bool, by: str) -> None:
        """KEDA's scale executor after a poll or a pushed ``true``."""
        async with self._lock:
            current = self.target.status(self.key).desired
            step = self.executor.request_scale(self.clock(), current, active)
            if step.replicas is not None and step.replicas != current:
                await self._scale(current, step.replicas, "keda", f"{step.reason} ({by})")

    async def hpa_sync(self) -> None:
        """One HPA reconcile; the HPA does nothing (and asks for no metrics) while the app is at 0."""
        if self.target.status(self.key).desired == 0:
            return
        observation = await self.observe()
        self._saw(observation)
        async with self._lock:
            status = self.target.status(self.key)
            decision = self.hpa.sync(self.clock(), status.desired, status.replicas, observation.readings)
            self.view.hpa_reason = decision.reason
            if decision.rescale:
                await self._scale(status.desired, decision.desired, "hpa", decision.reason)

    async def _scale(self, old: int, new: int, by: str, reason: str) -> None:
        event = ScalingEvent(time.time(), self.key, by, old, new, reason)
        self.view.events.append(event)
        log.info("scaling %s %d -> %d (%s: %s)", self.key, old, new, by, reason,
                 extra={"app": self.key, "from": old, "to": new, "by": by})
        await self.target.scale(self.key, new)

    def _saw(self, observation: Observation) -> None:
        self.view.readings = observation.readings
        self.view.active = observation.active
        if observation.error != self.view.error and observation.error:
            log.warning("scaler call failed", extra={"app": self.key, "error": observation.error})
        self.view.error = observation.error

    # -- the loops ----------------------------------------------------------------------------------

    async def poll_loop(self) -> None:
        while True:
            try:
                observation = await self.observe()
                self._saw(observation)
                await self.request_scale(observation.active, "poll")
            except Exception:  # a bug must not stop KEDA for this app: log it, poll again
                log.exception("polling failed", extra={"app": self.key})
            await asyncio.sleep(self.config.polling_interval_seconds)

    async def hpa_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.hpa_sync_period_seconds)
            try:
                await self.hpa_sync()
            except Exception:
                log.exception("HPA sync failed", extra={"app": self.key})

    async def stream_loop(self) -> None:
        backoff = stream_backoff(self.config.stream_backoff_initial_seconds, self.config.stream_backoff_max_seconds)
        while True:
            call = self.stub.StreamIsActive(self.ref)
            try:
                self.view.stream = "open"
                async for response in call:
                    if response.result:  # KEDA ignores a pushed false
                        await self.request_scale(True, "push")
                backoff.reset()  # the scaler ended the stream with OK: a clean restart, not a failure
                self.view.stream = "ended by the scaler"
            except grpc.aio.AioRpcError as exc:
                self.view.stream = f"broken ({exc.code().name})"
            except Exception:
                self.view.stream = "broken (error)"
                log.exception("StreamIsActive failed", extra={"app": self.key})
            finally:
                call.cancel()
            delay = self.view.reconnect_delay = backoff.next_delay()
            log.debug("StreamIsActive reconnect", extra={"app": self.key, "in_seconds": delay})
            await asyncio.sleep(delay)


class KedaEmulator(BaseComponent):
    """All ScaledObjects of the dev config, over one channel to the scaler."""

    name = "keda-emulator"

    def __init__(self, apps: Sequence[AppConfig], config: EmulatorConfig, scaler_target: str,
                 target: ScaleTarget) -> None:
        self.apps = list(apps)
        self.config = config
        self.scaler_target = scaler_target  # "host:port" of the scaler's gRPC listener
        self.target = target
        self.objects: dict[str, ScaledObjectEmulator] = {}
        self._channel: grpc.aio.Channel | None = None
        self._tasks = TaskOwner("keda-emulator")

    async def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.scaler_target)
        stub = ExternalScalerStub(self._channel)
        for app in self.apps:
            obj = ScaledObjectEmulator(app, self.config, stub, self.target)
            self.objects[app.key] = obj
            self._tasks.spawn(obj.stream_loop(), name=f"{app.key}/stream")
            self._tasks.spawn(obj.poll_loop(), name=f"{app.key}/poll")
            self._tasks.spawn(obj.hpa_loop(), name=f"{app.key}/hpa")

    async def stop_accepting(self) -> None:
        # No scaling decisions while the proxy drains: replicas must stay for the requests in flight.
        await self._tasks.close()

    async def close(self) -> None:
        await self._tasks.close()
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close(grace=None)
            self._channel = None


def _value_of(values: Sequence[pb.MetricValue], name: str) -> float | None:
    """The value KEDA would take: the float field when set (KEDA 2.17+), the integer one otherwise."""
    for value in values:
        if value.metricName == name:
            return value.metricValueFloat if value.metricValueFloat > 0 else float(value.metricValue)
    return None


def _describe(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {exc.details() or ''}".strip()
