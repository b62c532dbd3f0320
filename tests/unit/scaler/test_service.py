"""The scaler over a real port, called like KEDA calls it, with activity injected through the in-memory bus."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from kedahttp.activity import memory_bus
from kedahttp.activity.model import BackendActivity
from tests.harness.scaler import FakeProxy, KedaClient, Scaler, ref, running_scaler, steady, until

pytestmark = pytest.mark.timeout(30)

APP = "default/app"


@pytest.fixture
def bus() -> str:
    return f"memory://scaler-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def proxy(bus: str) -> AsyncIterator[FakeProxy]:
    fake = FakeProxy.on(bus)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def scaler(bus: str) -> AsyncIterator[Scaler]:
    async with running_scaler(bus) as running:
        yield running


@pytest.fixture
async def keda(scaler: Scaler) -> AsyncIterator[KedaClient]:
    client = KedaClient(scaler.target)
    yield client
    await client.close()


async def status_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


# -- GetMetricSpec ------------------------------------------------------------------------------------------


async def test_spec_default_is_concurrency_100(keda: KedaClient) -> None:
    assert await keda.spec(ref()) == [("concurrency", 100, 100.0)]


async def test_spec_is_parsed_once_per_trigger(scaler: Scaler, keda: KedaClient) -> None:
    for _ in range(20):
        await keda.spec(ref(targetConcurrency="10"))
    assert len(scaler.grpc.service.triggers) == 1


async def test_spec_with_both_targets_fills_int_and_float(keda: KedaClient) -> None:
    so = ref(targetConcurrency="2.5", targetRequestRate="50")
    assert await keda.spec(so) == [("concurrency", 2, 2.5), ("requestrate", 50, 50.0)]
    assert await keda.spec(ref(targetRequestRate="7")) == [("requestrate", 7, 7.0)]


# -- GetMetrics and IsActive ---------------------------------------------------------------------------------


async def test_known_concurrency_and_rate(proxy: FakeProxy, scaler: Scaler, keda: KedaClient) -> None:
    # 4 requests always in flight and 8 arrivals a second, for the last 10 s.
    await proxy.history(10, steady(APP, in_flight=4, rate=8))
    await scaler.caught_up(proxy)
    so = ref(targetConcurrency="2", targetRequestRate="4", rateWindowSeconds="5")
    values, active = await keda.poll(so)
    assert values["concurrency"] == pytest.approx((4.0, 2.0), rel=1e-9)
    assert values["requestrate"] == pytest.approx((8.0, 4.0), rel=1e-9)
    assert active
    assert await keda.metric(so, "concurrency") == (4, 4.0)
    assert await keda.desired_replicas(so) == 2


async def test_held_requests_wake_the_app_to_three_replicas_not_one(
    proxy: FakeProxy, scaler: Scaler, keda: KedaClient
) -> None:
    # 30 requests held for longer than the 3 s averaging window, the app at zero, targetConcurrency 10.
    await proxy.history(5, steady(APP, held=30))
    await scaler.caught_up(proxy)
    so = ref(targetConcurrency="10")
    assert await keda.is_active(so)
    assert await keda.metric(so, "concurrency") == (30, 30.0)
    assert await keda.desired_replicas(so) == 3


async def test_unknown_backend_is_zero_and_inactive_without_error(keda: KedaClient) -> None:
    so = ref("nobody", "nowhere", targetRequestRate="1", targetConcurrency="1")
    assert await keda.metric(so, "concurrency") == (0, 0.0)
    assert await keda.metric(so, "requestrate") == (0, 0.0)
    assert not await keda.is_active(so)


async def test_a_small_load_never_reads_as_an_int_zero(proxy: FakeProxy, scaler: Scaler, keda: KedaClient) -> None:
    await proxy.history(5, lambda a, b: [BackendActivity(APP, started=1, completed=1, busy_seconds=0.001,
                                                         last_request_at=b)])
    await scaler.caught_up(proxy)
    value, value_float = await keda.metric(ref(), "concurrency")
    assert 0.0 < value_float < 0.01 and value == 1


async def test_a_wake_makes_an_hour_idle_backend_active_at_once(
    proxy: FakeProxy, scaler: Scaler, keda: KedaClient
) -> None:
    await proxy.report(BackendActivity(APP, started=1, completed=1, busy_seconds=0.01,
                                       last_request_at=time.time() - 3600))
    await scaler.caught_up(proxy)
    so = ref(activityWindowSeconds="1")
    assert not await keda.is_active(so)
    await proxy.wake(APP)
    deadline = time.monotonic() + 2
    while not await keda.is_active(so):
        assert time.monotonic() < deadline, "the wake did not make the backend active"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ({"targetConcurrency": "many"}, "targetConcurrency"),
        ({"targetConcurrency": "0"}, "targetConcurrency"),
        ({"targetRequestRate": "-1"}, "targetRequestRate"),
        ({"backend": "not a name"}, "backend"),
        ({"rateWindowSeconds": "9999"}, "rateWindowSeconds"),
        ({"activityWindowSeconds": "x"}, "activityWindowSeconds"),
    ],
)
async def test_bad_metadata_is_invalid_argument_naming_the_key(
    keda: KedaClient, metadata: dict[str, str], key: str
) -> None:
    so = ref(**metadata)
    calls = {
        "GetMetricSpec": keda.stub.GetMetricSpec(so),
        "GetMetrics": keda.stub.GetMetrics(keda_request(so)),
        "IsActive": keda.stub.IsActive(so),
    }
    for method, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert key in (info.value.details() or ""), method
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keda.stream(so).read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and key in (info.value.details() or "")


def keda_request(so: object, name: str = "concurrency") -> object:
    from kedahttp.protos import externalscaler_pb2 as pb

    return pb.GetMetricsRequest(scaledObjectRef=so, metricName=name)


async def test_unknown_metric_name_is_invalid_argument(keda: KedaClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keda.stub.GetMetrics(keda_request(ref(), "cpu"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "metricName" in (info.value.details() or "")


# -- StreamIsActive --------------------------------------------------------------------------------------------


async def test_stream_pushes_true_on_wake_and_never_periodically(proxy: FakeProxy, keda: KedaClient) -> None:
    proxy.keep_reporting()  # an idle proxy: heartbeats only
    stream = keda.watch(ref(activityWindowSeconds="1"))
    assert await stream.nothing_for(0.3)  # inactive: nothing at open
    await proxy.wake(APP)
    assert (await stream.next(2.0)).result is True
    await proxy.wake(APP)  # still active: no second true
    assert await stream.nothing_for(2.5)  # the activity window passes: inactive again, and nothing is sent
    await proxy.wake(APP)  # inactive to active: a new true
    assert (await stream.next(2.0)).result is True
    await stream.close()


async def test_stream_sends_true_at_open_when_active_then_stays_quiet(
    proxy: FakeProxy, scaler: Scaler, keda: KedaClient
) -> None:
    await proxy.history(2, steady(APP, in_flight=1))
    proxy.keep_reporting(steady(APP, in_flight=1))
    await scaler.caught_up(proxy)
    stream = keda.watch(ref())
    assert (await stream.next(2.0)).result is True
    assert await stream.nothing_for(2.2)  # steadily active: one true, no periodic ones
    await stream.close()


async def test_thousands_of_streams_cost_no_thread_and_end_with_ok_on_shutdown(bus: str, proxy: FakeProxy) -> None:
    async with running_scaler(bus) as scaler:
        client = KedaClient(scaler.target)
        await client.spec(ref())  # the connection is up and the server's own threads exist
        threads = threading.active_count()
        streams = [client.watch(ref(f"app{i}")) for i in range(2000)]
        await until(lambda: scaler.state.hub.open_streams == 2000, 10, "streams open")
        assert threading.active_count() <= threads + 2
        scaler.lifecycle.request_stop()
        for stream in streams:
            assert await stream.next(5) is None
            assert await stream.code() == grpc.StatusCode.OK
        await client.close()


# -- outage, restart, replicas -----------------------------------------------------------------------------------


async def test_outage_is_unavailable_never_zero_and_recovers(bus: str, proxy: FakeProxy, scaler: Scaler,
                                                             keda: KedaClient) -> None:
    await proxy.history(5, steady(APP, in_flight=2))
    await scaler.caught_up(proxy)
    so = ref()
    assert await keda.metric(so, "concurrency") == (2, 2.0)
    stream = keda.watch(ref("idle"))
    memory_bus._log_for(bus).down = True
    try:
        await until(lambda: not scaler.state.fresh(time.time()), 5, "not fresh")
        assert await status_of(keda.stub.GetMetrics(keda_request(so))) == grpc.StatusCode.UNAVAILABLE
        assert await status_of(keda.stub.IsActive(so)) == grpc.StatusCode.UNAVAILABLE
        assert await keda.spec(so) == [("concurrency", 100, 100.0)]  # the spec does not depend on data
    finally:
        memory_bus._log_for(bus).down = False
    await until(lambda: scaler.state.feed.fresh, 5, "feed back")
    # Back on the bus, but the proxy that was reporting has not caught up yet: still no answer.
    assert not scaler.state.fresh(time.time())
    assert await status_of(keda.stub.GetMetrics(keda_request(so))) == grpc.StatusCode.UNAVAILABLE
    await proxy.report(BackendActivity(APP, in_flight=2, busy_seconds=0.5))
    await scaler.wait_fresh(timeout=2.0)
    await scaler.caught_up(proxy)
    assert await keda.metric(so, "concurrency") == (2, 2.0)
    assert not stream.call.done() and stream.messages.empty()  # open through the outage, and silent
    await stream.close()


async def test_a_restarted_scaler_replays_and_still_sees_the_app_active(bus: str, proxy: FakeProxy) -> None:
    # Traffic published before the scaler starts (as across a scaler restart) is replayed from the bus.
    await proxy.history(15, steady(APP, in_flight=3, rate=4))
    async with running_scaler(bus) as scaler:
        await scaler.caught_up(proxy)
        client = KedaClient(scaler.target)
        values, active = await client.poll(ref(targetConcurrency="10", targetRequestRate="1",
                                               rateWindowSeconds="10"))
        await client.close()
    assert active
    assert values["concurrency"] == pytest.approx((3.0, 10.0), rel=1e-9)
    assert values["requestrate"] == pytest.approx((4.0, 1.0), rel=1e-9)


async def test_two_replicas_agree(bus: str, proxy: FakeProxy) -> None:
    other = FakeProxy.on(bus, "proxy-2")
    await other.start()
    await proxy.history(8, steady(APP, in_flight=2, held=1, rate=12))
    await other.history(8, steady(APP, in_flight=1, rate=4))
    await proxy.wake("default/cold")
    so_list = [ref(targetConcurrency="100", targetRequestRate="3", rateWindowSeconds="5"), ref("cold"), ref("none")]
    async with running_scaler(bus) as a, running_scaler(bus) as b:
        await a.caught_up(proxy, other)
        await b.caught_up(proxy, other)
        ka, kb = KedaClient(a.target), KedaClient(b.target)
        for so in so_list:
            assert await ka.poll(so) == await kb.poll(so)
        values, active = await ka.poll(so_list[0])
        assert active and values["concurrency"] == (4.0, 100.0) and values["requestrate"] == (16.0, 3.0)
        await ka.close()
        await kb.close()
    await other.close()


# -- health, reflection, telemetry -------------------------------------------------------------------------------


async def health_of(target: str, service: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return (await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=3)).status


async def test_health_follows_freshness_and_draining(bus: str, scaler: Scaler) -> None:
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", "liveness", "readiness"):
        assert await health_of(scaler.target, service) == serving
    memory_bus._log_for(bus).down = True
    try:
        await until(lambda: not scaler.state.fresh(time.time()), 5, "not fresh")
        await asyncio.sleep(0.05)
        assert await health_of(scaler.target, "readiness") == not_serving
        assert await health_of(scaler.target, "liveness") == serving
        assert await health_of(scaler.target, "") == serving
    finally:
        memory_bus._log_for(bus).down = False
    await scaler.wait_fresh()
    await asyncio.sleep(0.05)
    assert await health_of(scaler.target, "readiness") == serving
    scaler.grpc.mark_not_ready()
    await asyncio.sleep(0.05)
    assert await health_of(scaler.target, "readiness") == not_serving
    assert await health_of(scaler.target, "") == not_serving
    assert await health_of(scaler.target, "liveness") == serving


async def test_reflection_lists_the_services(scaler: Scaler) -> None:
    async with grpc.aio.insecure_channel(scaler.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        response = await call.read()
        names = {s.name for s in response.list_services_response.service}
        call.cancel()
    assert {"externalscaler.ExternalScaler", "grpc.health.v1.Health"} <= names


async def test_prometheus_metrics(proxy: FakeProxy, scaler: Scaler, keda: KedaClient) -> None:
    await proxy.report(BackendActivity(APP, in_flight=1, busy_seconds=0.25))
    await scaler.caught_up(proxy)
    await keda.poll(ref())
    await status_of(keda.stub.IsActive(ref(targetConcurrency="x")))
    stream = keda.watch(ref())
    await until(lambda: scaler.state.hub.open_streams == 1, 5, "stream open")
    async with aiohttp.ClientSession() as session, session.get(
        f"http://127.0.0.1:{scaler.metrics.port}/metrics"
    ) as response:
        assert response.status == 200
        text = await response.text()
    await stream.close()
    lines = text.splitlines()
    assert 'kedahttp_scaler_call_seconds_count{code="OK",method="GetMetrics"} 1.0' in lines
    assert 'kedahttp_scaler_call_seconds_count{code="INVALID_ARGUMENT",method="IsActive"} 1.0' in lines
    assert "kedahttp_scaler_open_streams 1.0" in lines
    assert "kedahttp_scaler_feed_fresh 1.0" in lines
    assert 'kedahttp_scaler_folds_total{kind="report"} 1.0' in lines
    for name in ("kedahttp_scaler_report_lag_seconds", "kedahttp_scaler_bus_errors_total",
                 "kedahttp_scaler_pushes_total"):
        assert any(line.startswith(name) for line in lines), name


async def test_a_port_in_use_fails_start(bus: str, scaler: Scaler) -> None:
    with pytest.raises(OSError):
        async with running_scaler(bus, scaler_addr=scaler.target, fresh=False):
            pass
