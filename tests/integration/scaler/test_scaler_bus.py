"""The scaler against real Redis and real NATS: a KEDA-like client over a real port, activity published by
simulated proxy instances through the real transports, outages played by killing the bus server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.protos.externalscaler_pb2_grpc import ExternalScalerStub
from tests.harness.scaler import FakeProxy, KedaClient, ref, running_scaler, steady, until
from tests.harness.servers import NatsServer, RedisServer

pytestmark = pytest.mark.timeout(60)

APP = "default/app"
BusServer = RedisServer | NatsServer


@pytest.fixture
async def proxy(bus_server: BusServer) -> AsyncIterator[FakeProxy]:
    fake = FakeProxy.on(bus_server.url, "proxy-a")
    await fake.start()
    yield fake
    bus_server.start()  # a test that stopped the server leaves it running for the next one
    await fake.close()


async def code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_keda_poll_reads_known_concurrency_and_rate(bus_server: BusServer, proxy: FakeProxy) -> None:
    # 6 in flight and 12 arrivals a second for 10 s, then live; plus 30 held for a cold app (target 10).
    await proxy.history(10, lambda a, b: [*steady(APP, in_flight=6, rate=12)(a, b),
                                          *steady("default/cold", held=30)(a, b)])
    proxy.keep_reporting(lambda a, b: [*steady(APP, in_flight=6, rate=12)(a, b),
                                       *steady("default/cold", held=30)(a, b)])
    async with running_scaler(bus_server.url) as scaler:
        await scaler.caught_up(proxy)
        keda = KedaClient(scaler.target)
        so = ref(targetConcurrency="4", targetRequestRate="5", rateWindowSeconds="5")
        assert await keda.spec(so) == [("concurrency", 4, 4.0), ("requestrate", 5, 5.0)]
        values, active = await keda.poll(so)
        assert active and values["concurrency"] == pytest.approx((6.0, 4.0), rel=1e-9)
        assert values["requestrate"] == pytest.approx((12.0, 5.0), rel=0.1)  # live reports jitter a little
        assert await keda.desired_replicas(so) == 3  # max(ceil(6 / 4), ceil(12 / 5))
        cold = ref("cold", targetConcurrency="10")
        assert await keda.is_active(cold)
        assert await keda.metric(cold, "concurrency") == (30, 30.0)
        assert await keda.desired_replicas(cold) == 3  # woken to 3 replicas, not 1
        unknown = ref("unknown")
        assert await keda.metric(unknown, "concurrency") == (0, 0.0) and not await keda.is_active(unknown)
        await keda.close()


async def test_wake_is_pushed_within_milliseconds_and_idle_pushes_nothing(
    bus_server: BusServer, proxy: FakeProxy
) -> None:
    proxy.keep_reporting()
    async with running_scaler(bus_server.url) as scaler:
        keda = KedaClient(scaler.target)
        stream = keda.watch(ref(activityWindowSeconds="1"))
        await until(lambda: scaler.state.hub.open_streams == 1, 5, "stream open")
        assert await stream.nothing_for(0.5)
        latencies = []
        for _ in range(2):
            sent = time.perf_counter()
            await proxy.wake(APP)
            message = await stream.next(2.0)
            assert message is not None and message.result is True
            latencies.append(stream.received[-1][0] - sent)
            assert await stream.nothing_for(2.2)  # activity window lapses; no periodic true meanwhile
        print(f"wake-to-push over {bus_server.name}: {[round(x * 1000, 2) for x in latencies]} ms")
        await stream.close()
        await keda.close()


async def test_outage_answers_unavailable_then_recovers(bus_server: BusServer, proxy: FakeProxy) -> None:
    proxy.keep_reporting(steady(APP, in_flight=2))
    async with running_scaler(bus_server.url) as scaler:
        keda = KedaClient(scaler.target)
        so = ref()
        await until(lambda: scaler.state.aggregator.metrics(APP, time.time()).concurrency == 2.0, 10,
                    "a full window of reports")
        assert await keda.metric(so, "concurrency") == (2, 2.0)
        stream = keda.watch(ref("idle"))
        bus_server.stop()
        await until(lambda: not scaler.state.fresh(time.time()), 10, "the scaler notices the outage")
        request = pb.GetMetricsRequest(scaledObjectRef=so, metricName="concurrency")
        assert await code_of(keda.stub.GetMetrics(request)) == grpc.StatusCode.UNAVAILABLE
        assert await code_of(keda.stub.IsActive(so)) == grpc.StatusCode.UNAVAILABLE
        await asyncio.sleep(0.5)
        bus_server.start()
        await scaler.wait_fresh(20)
        await until(lambda: scaler.state.aggregator.metrics(APP, time.time()).concurrency == 2.0, 10,
                    "correct again after the outage")
        assert await keda.metric(so, "concurrency") == (2, 2.0)
        assert await keda.is_active(so)
        assert not stream.call.done() and stream.messages.empty()  # open through it all, and silent
        await stream.close()
        await keda.close()


async def test_two_replicas_agree_and_a_dead_proxy_stops_counting(bus_server: BusServer, proxy: FakeProxy) -> None:
    other = FakeProxy.on(bus_server.url, "proxy-b")
    await other.start()
    await proxy.history(6, steady(APP, in_flight=3, rate=8))
    await other.history(6, steady(APP, in_flight=1, held=2, rate=4))
    proxy.keep_reporting(steady(APP, in_flight=3, rate=8))
    other.keep_reporting(steady(APP, in_flight=1, held=2, rate=4))
    async with running_scaler(bus_server.url) as a, running_scaler(bus_server.url) as b:
        await a.caught_up(proxy, other)
        await b.caught_up(proxy, other)
        ka, kb = KedaClient(a.target), KedaClient(b.target)
        so = ref(targetConcurrency="1", targetRequestRate="1", rateWindowSeconds="5")
        for keda in (ka, kb):
            values, active = await keda.poll(so)
            assert active and values["concurrency"] == pytest.approx((6.0, 1.0), rel=1e-9)
            # Live reports come every 0.25 s give or take the simulator's sleep, so the arrivals it
            # rounds per report make a little less or more than 12/s.
            assert values["requestrate"] == pytest.approx((12.0, 1.0), rel=0.1)
        await other.stop_reporting()  # proxy-b dies: gone within 3 intervals + margin, on both replicas
        for scaler in (a, b):
            await until(lambda s=scaler: s.state.aggregator.metrics(APP, time.time()).held == 0, 5,
                        "the silent proxy expires")
            assert scaler.state.aggregator.metrics(APP, time.time()).in_flight == 3
        await proxy.stop_reporting()
        await a.caught_up(proxy, other)
        await b.caught_up(proxy, other)
        now = time.time()
        assert a.state.aggregator.metrics(APP, now, 5) == b.state.aggregator.metrics(APP, now, 5)
        await asyncio.sleep(1.05 - time.time() % 1)  # both polls inside one second: windows end alike
        assert await ka.poll(so) == await kb.poll(so)  # nothing new arrives: any replica, same answer
        await ka.close()
        await kb.close()
    await other.close()


async def test_a_scaler_started_later_replays_the_bus(bus_server: BusServer, proxy: FakeProxy) -> None:
    await proxy.history(8, steady(APP, in_flight=5))
    await proxy.wake("default/woken")
    proxy.keep_reporting(steady(APP, in_flight=5))
    async with running_scaler(bus_server.url) as scaler:
        keda = KedaClient(scaler.target)
        assert await keda.is_active(ref("woken"))
        assert await keda.metric(ref(), "concurrency") == (5, 5.0)
        await keda.close()


async def test_bad_metadata_over_a_real_bus(bus_server: BusServer) -> None:
    async with running_scaler(bus_server.url) as scaler:
        keda = KedaClient(scaler.target)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await keda.stub.IsActive(ref(backend="x"))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "backend" in (info.value.details() or "")
        await keda.close()


def test_the_cli_runs_the_scaler(bus_server: BusServer) -> None:
    """`kedahttp scaler` starts, serves, and exits 0 on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    from tests.harness.servers import free_port, wait_port

    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "KEDAHTTP_BUS": bus_server.url, "KEDAHTTP_SHUTDOWN_DELAY_SECONDS": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kedahttp", "scaler", "--scaler-addr", f"127.0.0.1:{port}",
         "--metrics-addr", f"127.0.0.1:{metrics_port}", "--log-format", "text"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, 15)
        wait_port(metrics_port, 5)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:  # served on uvloop in the real process
            stub = ExternalScalerStub(channel)
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert stub.IsActive(ref("nothing"), timeout=2).result is False
                    break
                except grpc.RpcError as exc:  # UNAVAILABLE until the feed has replayed the bus
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
                    time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
