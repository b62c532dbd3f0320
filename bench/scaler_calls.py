"""GetMetrics and IsActive latency under the issue's load: 10,000 backends, 50 proxy instances reporting every
0.25 s (200 reports/s, 50 backends per report, so every backend is busy every second).

The scaler runs as its own process (``python -m kedahttp scaler``, as deployed) on a private Redis and
NATS in turn; the bench process publishes the reports and, once the scaler folds them, calls it the way
KEDA does: GetMetrics (concurrency), then IsActive, for backends picked at random, one call at a time.
Latency is measured at the client, so it includes the gRPC round trip and the client's own overhead;
the scaler's own view (its call histogram: handler time only) is reported beside it. The reference is a
gRPC health Check on the same channel, interleaved with the calls: the same round trip through the same
server with none of our logic, so ``added_*`` is what answering KEDA costs beyond gRPC itself. The
machine has 2 cores shared by the scaler, the client, the publisher and the bus server, so the tail
measures CPU contention too. Goal (issue 3): p99 under 2 ms.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.scaler_latency import bus_server, percentiles, proxies, scaler_process, wait_fresh
from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.protos.externalscaler_pb2_grpc import ExternalScalerStub

NAME = "scaler_calls"
BACKENDS = 10_000
INSTANCES = 50
PER_REPORT = 50


async def measure_calls(bus_url: str, target: str, calls: int) -> dict[str, Any]:
    names = [f"app{i}" for i in range(BACKENDS)]
    keys = [f"bench/{name}" for name in names]
    async with grpc.aio.insecure_channel(target) as channel, proxies(bus_url, INSTANCES, keys, PER_REPORT):
        stub = ExternalScalerStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service="")
        await wait_fresh(stub)
        await asyncio.sleep(3.0)  # every backend reported on, windows filling
        rng = random.Random(7)
        get_metrics, is_active, reference = [], [], []
        nonzero = 0
        metadata = {"targetConcurrency": "10", "activityWindowSeconds": "60"}
        for _ in range(calls):
            ref = pb.ScaledObjectRef(name=rng.choice(names), namespace="bench", scalerMetadata=metadata)
            request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName="concurrency")
            started = time.perf_counter()
            response = await stub.GetMetrics(request, timeout=3)
            middle = time.perf_counter()
            active = await stub.IsActive(ref, timeout=3)
            ended = time.perf_counter()
            await health.Check(check, timeout=3)
            reference.append((time.perf_counter() - ended) * 1000)
            get_metrics.append((middle - started) * 1000)
            is_active.append((ended - middle) * 1000)
            nonzero += response.metricValues[0].metricValueFloat > 0 and active.result
        figures = {
            "GetMetrics": percentiles(get_metrics),
            "IsActive": percentiles(is_active),
            "reference_health_check": percentiles(reference),
            "answers_active_and_nonzero": round(nonzero / calls, 3),
        }
        for method in ("GetMetrics", "IsActive"):
            for q in ("p50_ms", "p99_ms"):
                figures[f"added_{q}_{method}"] = round(figures[method][q] - figures["reference_health_check"][q], 3)
        return figures


def run(quick: bool) -> dict[str, Any]:
    calls = 1000 if quick else 5000
    figures: dict[str, Any] = {
        "scenario": f"{BACKENDS} backends, {INSTANCES} instances every 0.25 s, {PER_REPORT} backends per report",
        "goal_p99_ms": 2,
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }
    for kind in ("redis", "nats"):
        with bus_server(kind) as server, scaler_process(server.url) as scaler:  # type: ignore[attr-defined]
            figures[kind] = asyncio.run(measure_calls(server.url, scaler.target, calls))  # type: ignore[attr-defined]
            figures[kind]["server_side"] = {
                method: scaler.histogram("kedahttp_scaler_call_seconds", f'method="{method}"')
                for method in ("GetMetrics", "IsActive")
            }
            figures[kind]["scaler_loop_lag"] = scaler.loop_lag()
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
