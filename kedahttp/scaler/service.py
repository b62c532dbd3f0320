"""KEDA's ExternalScaler over gRPC (grpc.aio): the four calls, health, reflection, and the listener.

Every call is answered from the in-memory view (state.py) in a few lookups; nothing here waits on the
bus. Errors are mapped to status codes once, here: bad metadata is INVALID_ARGUMENT naming the key,
data that is not fresh is UNAVAILABLE (KEDA then keeps the replicas it has), never a zero we cannot vouch
for. Push streams are async generators parked on an asyncio.Event each, so thousands cost no thread.

The listener keeps idle connections alive through load balancers and conntrack tables (server pings
every 30 s, client pings accepted every 10 s without data and without strikes) and caps neither
concurrent streams nor calls waiting to be picked up: KEDA multiplexes every ScaledObject's stream over
one connection per address and opens them all at once when it starts (gRPC's default cancels calls
past 1,000 pending).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # the stubs predate it
from grpc_reflection.v1alpha import reflection

from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.settings import Address
from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.protos import externalscaler_pb2_grpc as pb_grpc
from kedahttp.scaler.metrics import InvalidArgument, Trigger, TriggerCache, int_target, int_value
from kedahttp.scaler.state import ScalerState
from kedahttp.scaler.telemetry import Telemetry

log = logging.getLogger("kedahttp.scaler.service")

SERVER_OPTIONS: Final[list[tuple[str, Any]]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_concurrent_streams", 1_000_000),
    # Calls that arrive faster than the server picks them up wait as "pending"; past 1,000 gRPC starts
    # cancelling them at random. KEDA opens one stream per ScaledObject at once when it starts.
    ("grpc.server.max_pending_requests", 1_000_000),
    ("grpc.server.max_pending_requests_hard_limit", 1_000_000),
    ("grpc.so_reuseport", 0),  # a second scaler on the same port fails to start instead of sharing it
]
DRAIN_GRACE_MAX_SECONDS: Final = 5.0  # unary calls take milliseconds; only health watches linger
SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name
HEALTH_SERVICES: Final = ("", "liveness", "readiness")
SERVING: Final = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING
_TRUE: Final = pb.IsActiveResponse(result=True)
_FALSE: Final = pb.IsActiveResponse(result=False)


class Unavailable(Exception):
    """The view is not fresh: answering would risk a false zero."""


_CODES: Final = {InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT, Unavailable: grpc.StatusCode.UNAVAILABLE}


class ExternalScalerService(pb_grpc.ExternalScalerServicer):
    def __init__(self, state: ScalerState, telemetry: Telemetry) -> None:
        self.state = state
        self.telemetry = telemetry
        self.triggers = TriggerCache()
        self._specs: dict[Trigger, pb.GetMetricSpecResponse] = {}

    # -- the four calls ---------------------------------------------------------------------------------

    async def GetMetricSpec(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            trigger = self._trigger(request)
        except Exception as exc:
            await self._abort(context, "GetMetricSpec", started, exc)
        response = self._specs.get(trigger)
        if response is None:
            response = pb.GetMetricSpecResponse(metricSpecs=[
                pb.MetricSpec(metricName=name, targetSize=int_target(target), targetSizeFloat=target)
                for name, target in trigger.targets
            ])
            if len(self._specs) >= self.triggers.max_entries:
                self._specs.clear()
            self._specs[trigger] = response
        self.telemetry.observe("GetMetricSpec", "OK", time.perf_counter() - started)
        return response

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            trigger = self._trigger(request.scaledObjectRef)
            now = self._fresh_now()
            name = request.metricName or trigger.targets[0][0]
            value = self.state.answer_metric(trigger, name, now)
        except Exception as exc:
            await self._abort(context, "GetMetrics", started, exc)
        response = pb.GetMetricsResponse(metricValues=[
            pb.MetricValue(metricName=name, metricValue=int_value(value), metricValueFloat=value)
        ])
        self.telemetry.observe("GetMetrics", "OK", time.perf_counter() - started)
        return response

    async def IsActive(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            trigger = self._trigger(request)
            now = self._fresh_now()
            active = self.state.answer_active(trigger, now)
        except Exception as exc:
            await self._abort(context, "IsActive", started, exc)
        self.telemetry.observe("IsActive", "OK", time.perf_counter() - started)
        return _TRUE if active else _FALSE

    async def StreamIsActive(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.IsActiveResponse]:
        started = time.perf_counter()
        try:
            trigger = self._trigger(request)
        except Exception as exc:
            await self._abort(context, "StreamIsActive", started, exc)
        hub = self.state.hub
        watch = self.state.open_watch(trigger, self.state.clock())
        code = "CANCELLED"  # unless the loop below ends by itself: the client went away
        try:
            while await hub.next_push(watch):
                yield _TRUE
            code = "OK"  # the scaler is shutting down: KEDA reconnects (elsewhere) with its backoff reset
        finally:
            hub.close(watch)
            self.telemetry.observe("StreamIsActive", code, time.perf_counter() - started)

    # -- helpers ----------------------------------------------------------------------------------------

    def _trigger(self, ref: pb.ScaledObjectRef) -> Trigger:
        return self.triggers.get(ref.namespace, ref.name, ref.scalerMetadata)

    def _fresh_now(self) -> float:
        now = self.state.clock()
        state = self.state
        if not state.fresh(now):
            feed = state.feed.state
            if not feed.connected:
                why = "the activity bus is not reachable"
            elif not feed.caught_up:
                why = "the activity history is still being replayed"
            else:
                why = f"no activity report for {now - state.last_message_at:.1f} s"
            raise Unavailable(f"no fresh activity data: {why}")
        return now

    async def _abort(
        self, context: grpc.aio.ServicerContext, method: str, started: float, exc: Exception
    ) -> NoReturn:
        """Ends the call with the status the error maps to (the one place errors become codes)."""
        code = _CODES.get(type(exc), grpc.StatusCode.INTERNAL)
        self.telemetry.observe(method, code.name, time.perf_counter() - started)
        if code is grpc.StatusCode.INTERNAL:
            log.error("call failed", exc_info=exc, extra={"method": method})
            await context.abort(code, f"internal error: {type(exc).__name__}")
        await context.abort(code, str(exc))
        raise AssertionError("unreachable: abort raises")


class GrpcServer(BaseComponent):
    """The gRPC listener on SCALER_ADDR: the external scaler, health checking and reflection.

    Health: ``liveness`` and ``""`` serve while the process runs (``""`` stops at shutdown); ``readiness``
    serves only while the view is fresh and the scaler is not draining.
    """

    name = "scaler-grpc"

    def __init__(self, state: ScalerState, telemetry: Telemetry, address: Address) -> None:
        self.state = state
        self.address = address
        self.service = ExternalScalerService(state, telemetry)
        self.health = health_aio.HealthServicer()
        self.port = 0  # the bound port, once started
        self._server: grpc.aio.Server | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._draining = False

    async def start(self) -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        pb_grpc.add_ExternalScalerServicer_to_server(self.service, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        try:
            self.port = server.add_insecure_port(str(self.address))
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.address}: {exc}") from exc
        if not self.port:
            raise OSError(f"cannot listen on {self.address}")
        await server.start()
        self._server = server
        for service in HEALTH_SERVICES:
            await self.health.set(service, SERVING if service != "readiness" else NOT_SERVING)
        self._health_task = asyncio.get_running_loop().create_task(self._follow_readiness(), name="scaler-health")
        log.info("serving KEDA external scaler", extra={"address": f"{self.address.host}:{self.port}"})

    def mark_not_ready(self) -> None:
        self._draining = True
        self.state.changed.set()

    async def stop_accepting(self) -> None:
        self.state.hub.shutdown()  # push streams end with OK now, so KEDA reconnects to a live replica

    async def drain(self, deadline: float) -> None:
        server, self._server = self._server, None
        if server is not None:
            grace = min(max(0.0, deadline - asyncio.get_running_loop().time()), DRAIN_GRACE_MAX_SECONDS)
            await server.stop(grace)

    async def close(self) -> None:
        self.state.hub.shutdown()
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        server, self._server = self._server, None
        if server is not None:  # not drained: start-up failed later on, or shutdown was cut short
            await server.stop(None)

    async def _follow_readiness(self) -> None:
        """Keeps the health statuses in step with freshness and draining (woken on change, else each second)."""
        ready: bool | None = None
        stopping = False
        changed = self.state.changed
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=1.0)
            changed.clear()
            now_ready = not self._draining and self.state.fresh(self.state.clock())
            if now_ready != ready:
                ready = now_ready
                await self.health.set("readiness", SERVING if ready else NOT_SERVING)
            if self._draining and not stopping:
                stopping = True
                await self.health.set("", NOT_SERVING)
