"""A scripted KEDA external scaler on a real gRPC port, for testing the emulator without the real scaler."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.protos.externalscaler_pb2_grpc import (
    ExternalScalerServicer,
    add_ExternalScalerServicer_to_server,
)


@dataclass
class Script:
    targets: dict[str, float] = field(default_factory=lambda: {"concurrency": 10.0})
    values: dict[str, float] = field(default_factory=lambda: {"concurrency": 0.0})
    active: bool = False
    fail: grpc.StatusCode | None = None  # every unary call aborts with this


class FakeScaler(ExternalScalerServicer):
    def __init__(self) -> None:
        self.script = Script()
        self.calls: list[tuple[float, str]] = []
        self.streams: list[float] = []  # when each StreamIsActive was opened
        self.pushes: asyncio.Queue[bool | grpc.StatusCode | None] = asyncio.Queue()
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = grpc.aio.server()
        add_ExternalScalerServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=None)

    def names(self) -> list[str]:
        return [name for _, name in self.calls]

    async def _check(self, context: grpc.aio.ServicerContext, name: str) -> None:
        self.calls.append((time.monotonic(), name))
        if self.script.fail is not None:
            await context.abort(self.script.fail, "scripted failure")

    async def GetMetricSpec(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> pb.GetMetricSpecResponse:
        await self._check(context, "GetMetricSpec")
        specs = [pb.MetricSpec(metricName=n, targetSize=int(t), targetSizeFloat=t) for n, t in self.script.targets.items()]
        return pb.GetMetricSpecResponse(metricSpecs=specs)

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext) -> pb.GetMetricsResponse:
        await self._check(context, "GetMetrics")
        value = self.script.values.get(request.metricName, 0.0)
        return pb.GetMetricsResponse(metricValues=[
            pb.MetricValue(metricName=request.metricName, metricValue=int(value), metricValueFloat=value)])

    async def IsActive(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> pb.IsActiveResponse:
        await self._check(context, "IsActive")
        return pb.IsActiveResponse(result=self.script.active)

    async def StreamIsActive(self, request: pb.ScaledObjectRef,
                             context: grpc.aio.ServicerContext) -> AsyncIterator[pb.IsActiveResponse]:
        """Sends what is put on ``pushes``: a bool is sent, None ends the stream OK, a code aborts it."""
        self.streams.append(time.monotonic())
        while True:
            item = await self.pushes.get()
            if item is None:
                return
            if isinstance(item, grpc.StatusCode):
                await context.abort(item, "scripted stream failure")
            yield pb.IsActiveResponse(result=bool(item))
