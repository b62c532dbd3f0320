"""Hostile input to the scaler, over a real port: the real grpc.aio server built by ``build_scaler`` on a
memory bus, called the way KEDA calls it. Malformed metadata of every key is INVALID_ARGUMENT naming the
key on every call (never UNKNOWN, never a hang); huge metadata maps get a fast correct answer; thousands
of push streams opened and dropped by their clients leave no stream behind, and the scaler still answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.protos.externalscaler_pb2_grpc import ExternalScalerStub
from tests.harness.scaler import FakeProxy, KedaClient, Scaler, running_scaler, until

pytestmark = pytest.mark.timeout(90)

CALL_TIMEOUT = 5.0  # a hang fails as DEADLINE_EXCEEDED instead of blocking the suite


@pytest.fixture
def bus() -> str:
    return f"memory://hostile-scaler-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def proxy(bus: str) -> AsyncIterator[FakeProxy]:
    fake = FakeProxy.on(bus)
    await fake.start()
    fake.keep_reporting()  # heartbeats keep the view fresh
    yield fake
    await fake.close()


@pytest.fixture
async def scaler(bus: str, proxy: FakeProxy) -> AsyncIterator[Scaler]:
    async with running_scaler(bus) as running:
        yield running


@pytest.fixture
async def keda(scaler: Scaler) -> AsyncIterator[KedaClient]:
    client = KedaClient(scaler.target)
    yield client
    await client.close()


def so(metadata: dict[str, str], name: str = "app", namespace: str = "default") -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=metadata)


async def outcome(call: Any) -> tuple[grpc.StatusCode, str, Any]:
    try:
        response = await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or "", None
    return grpc.StatusCode.OK, "", response


async def every_call(stub: ExternalScalerStub, ref: pb.ScaledObjectRef,
                     metric: str = "concurrency") -> dict[str, tuple[grpc.StatusCode, str, Any]]:
    """The four calls KEDA makes with this ref (the stream's first message or its error). A stream for a
    ref the unary calls refused must fail too, so it is waited on as long as they are; one for a ref they
    took may stay open and quiet (nothing to push for an idle backend), so it is given 0.2 s."""

    async def first_push(wait: float) -> Any:
        call = stub.StreamIsActive(ref, timeout=CALL_TIMEOUT)
        try:
            return await asyncio.wait_for(call.read(), wait)
        except TimeoutError:  # open and quiet
            call.cancel()
            return None

    results = {
        "GetMetricSpec": await outcome(stub.GetMetricSpec(ref, timeout=CALL_TIMEOUT)),
        "GetMetrics": await outcome(stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metric),
                                                    timeout=CALL_TIMEOUT)),
        "IsActive": await outcome(stub.IsActive(ref, timeout=CALL_TIMEOUT)),
    }
    refused = results["IsActive"][0] != grpc.StatusCode.OK
    results["StreamIsActive"] = await outcome(first_push(CALL_TIMEOUT if refused else 0.2))
    return results


def assert_invalid_naming(results: dict[str, tuple[grpc.StatusCode, str, Any]], key: str, what: object = "") -> None:
    for method, (code, details, _) in results.items():
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (what, method, code, details[:200])
        assert details.startswith(key), (what, method, details[:200])


NUMBER_KEYS = ["targetConcurrency", "targetRequestRate", "rateWindowSeconds", "activityWindowSeconds"]
NOT_NUMBERS = ["", " ", "abc", "NaN", "nan", "inf", "-Infinity", "1e400", "0x10", "1,5", "5%", "5\x00",
               "1/2", "true", "5 5", "\u2212" + "5", "- 5"]
NOT_POSITIVE = ["0", "-0", "-1", "-0.0001", "-1e300"]
WINDOW_ONLY = ["0.5", "1.5", "601", "1e300", "99999999999999999999"]


@pytest.mark.parametrize("key", NUMBER_KEYS)
async def test_malformed_numbers_are_invalid_argument_naming_the_key(keda: KedaClient, key: str) -> None:
    values = NOT_NUMBERS + NOT_POSITIVE + (WINDOW_ONLY if key.endswith("Seconds") else [])
    for value in values:
        results = await every_call(keda.stub, so({key: value}))
        assert_invalid_naming(results, key, value)


BAD_BACKENDS = ["", "/", "app", "ns/", "/app", "a/b/c", "Default/App", "default/App", "ns/app_1", "ns/app.x",
                "ns/" + "a" * 64, "n" * 64 + "/app", "ns/\u00e4pp", "ns/-app", "ns/app-", "ns//app",
                "../kube-system/coredns", "ns/app/"]


async def test_malformed_backends_are_invalid_argument_naming_the_key(keda: KedaClient) -> None:
    for backend in BAD_BACKENDS:
        assert_invalid_naming(await every_call(keda.stub, so({"backend": backend})), "backend", backend)


async def test_a_scaled_object_whose_name_is_no_backend_is_invalid_argument(keda: KedaClient) -> None:
    for namespace, name in [("", ""), ("default", "App"), ("de/fault", "app"), ("default", "a" * 64),
                            ("default", "app.x")]:
        assert_invalid_naming(await every_call(keda.stub, so({}, name=name, namespace=namespace)), "backend")


async def test_unknown_metric_names_are_invalid_argument(keda: KedaClient) -> None:
    for name in ["cpu", "CONCURRENCY", "s-1-concurrency", "s0concurrency", "concurrency\x00", "concurrency/x",
                 "s0-s0-concurrency", " concurrency"]:
        code, details, _ = await outcome(keda.stub.GetMetrics(
            pb.GetMetricsRequest(scaledObjectRef=so({}), metricName=name), timeout=CALL_TIMEOUT))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (name, code)
        assert details.startswith("metricName"), details
    for name in ["concurrency", "s0-concurrency", "s12-concurrency", ""]:  # the names KEDA sends, and none
        code, _, response = await outcome(keda.stub.GetMetrics(
            pb.GetMetricsRequest(scaledObjectRef=so({}), metricName=name), timeout=CALL_TIMEOUT))
        assert code == grpc.StatusCode.OK
        assert len(response.metricValues) == 1 and response.metricValues[0].metricValueFloat == 0.0


async def test_odd_but_lawful_values_are_answered(keda: KedaClient) -> None:
    for metadata, targets in [
        ({"targetConcurrency": " 5 "}, [("concurrency", 5, 5.0)]),
        ({"targetConcurrency": "0.001"}, [("concurrency", 1, 0.001)]),
        ({"targetConcurrency": "1e-300"}, [("concurrency", 1, 1e-300)]),
        ({"targetConcurrency": "2.5", "targetRequestRate": "1E2"}, [("concurrency", 2, 2.5), ("requestrate", 100, 100.0)]),
        ({"rateWindowSeconds": "600", "activityWindowSeconds": "1"}, [("concurrency", 100, 100.0)]),
        ({"rateWindowSeconds": "60.0"}, [("concurrency", 100, 100.0)]),
        ({"backend": " default/app\n"}, [("concurrency", 100, 100.0)]),  # surrounding whitespace is dropped
    ]:
        results = await every_call(keda.stub, so(metadata))
        assert all(code == grpc.StatusCode.OK for code, _, _ in results.values()), (metadata, results)
        spec = results["GetMetricSpec"][2]
        assert [(s.metricName, s.targetSize, s.targetSizeFloat) for s in spec.metricSpecs] == targets


@pytest.mark.parametrize("key", ["targetConcurrency", "targetRequestRate"])
async def test_a_huge_target_is_invalid_argument_or_clamped(keda: KedaClient, key: str) -> None:
    for value in ["1e300", "9223372036854775808"]:
        results = await every_call(keda.stub, so({key: value}))
        code, details, spec = results["GetMetricSpec"]
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), (code, details)
        if code == grpc.StatusCode.OK:
            assert all(0 < s.targetSize <= 2**63 - 1 for s in spec.metricSpecs)
        else:
            assert details.startswith(key)


@pytest.mark.parametrize("value", ["1_000", "\uff11\uff10\uff10", "\u0663", "\u20035"])
async def test_numbers_outside_ascii_decimal_notation_are_invalid(keda: KedaClient, value: str) -> None:
    assert_invalid_naming(await every_call(keda.stub, so({"targetConcurrency": value})), "targetConcurrency")


@pytest.mark.parametrize(("key", "value"), [("targetConcurrency", "9" * 20_000 + "x"),
                                            ("backend", "default/" + "a" * 20_000)])
async def test_a_long_bad_value_is_invalid_argument_naming_the_key(keda: KedaClient, key: str, value: str) -> None:
    assert_invalid_naming(await every_call(keda.stub, so({key: value})), key)


# -- huge metadata maps ------------------------------------------------------------------------------------


async def test_thousands_of_unknown_keys_get_a_fast_bounded_refusal(keda: KedaClient) -> None:
    metadata = {f"key{i}": "v" * 100 for i in range(5000)}  # ~0.6 MB, under gRPC's 4 MiB message limit
    metadata["targetConcurrency"] = "7"
    metadata["x" * 50_000] = "1"  # one very long key
    results = await every_call(keda.stub, so(metadata))
    assert_invalid_naming(results, "key0")  # unknown keys are refused (issue 14), the first one named
    assert all(len(details) < 2000 for _, details, _ in results.values())  # the long key is not echoed whole
    long_only = {"targetConcurrency": "7", "x" * 50_000: "1"}
    assert_invalid_naming(await every_call(keda.stub, so(long_only)), "xxxxxxxx")


async def test_a_map_past_the_message_limit_is_refused_and_the_scaler_goes_on(keda: KedaClient) -> None:
    metadata = {f"key{i}": "v" * 1000 for i in range(5000)}  # ~5 MB
    code, _, _ = await outcome(keda.stub.GetMetricSpec(so(metadata), timeout=CALL_TIMEOUT))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    results = await every_call(keda.stub, so({"targetConcurrency": "3"}))
    assert all(c == grpc.StatusCode.OK for c, _, _ in results.values())


async def test_many_distinct_bad_triggers_never_break_the_good_ones(keda: KedaClient, proxy: FakeProxy,
                                                                   scaler: Scaler) -> None:
    bad = [keda.stub.IsActive(so({"targetConcurrency": f"bad{i}"}), timeout=CALL_TIMEOUT) for i in range(500)]
    codes = {(await outcome(call))[0] for call in bad}
    assert codes == {grpc.StatusCode.INVALID_ARGUMENT}
    await proxy.wake("default/app")
    await until(lambda: scaler.state.aggregator.wakes >= 1, 5, "wake folded")
    assert await keda.is_active(so({}))


# -- streams opened and dropped -------------------------------------------------------------------------------


async def test_thousands_of_streams_cancelled_by_clients_leave_none_open(scaler: Scaler, proxy: FakeProxy) -> None:
    hub = scaler.state.hub
    channel = grpc.aio.insecure_channel(scaler.target)
    stub = ExternalScalerStub(channel)
    try:
        for round_ in range(2):  # twice: a second wave after the first is cleaned up
            calls = [stub.StreamIsActive(so({}, name=f"app{i % 50}")) for i in range(2000)]
            await until(lambda: hub.open_streams == 2000, 20, f"round {round_}: streams open")
            for call in calls:
                call.cancel()
            await until(lambda: hub.open_streams == 0, 20, f"round {round_}: streams closed")
        # and it still works: a new stream gets the wake
        call = stub.StreamIsActive(so({}))
        await until(lambda: hub.open_streams == 1, 5, "new stream open")
        await proxy.wake("default/app")
        message = await asyncio.wait_for(call.read(), 5)
        assert message.result is True
        call.cancel()
    finally:
        await channel.close(None)
    await until(lambda: hub.open_streams == 0, 5, "last stream closed")


async def test_clients_that_vanish_with_open_streams_leave_none_open(scaler: Scaler) -> None:
    hub = scaler.state.hub
    for _ in range(3):  # each "client" opens streams on its own connection, then drops the connection
        channel = grpc.aio.insecure_channel(scaler.target)
        stub = ExternalScalerStub(channel)
        calls = [stub.StreamIsActive(so({}, name=f"app{i}")) for i in range(500)]
        await until(lambda: hub.open_streams == 500, 20, "streams open")
        await channel.close(grace=None)
        del calls
        await until(lambda: hub.open_streams == 0, 20, "streams closed with the connection")
    keda = KedaClient(scaler.target)
    assert await keda.spec(so({})) == [("concurrency", 100, 100.0)]
    await keda.close()


async def test_streams_with_bad_metadata_never_count_as_open(scaler: Scaler) -> None:
    channel = grpc.aio.insecure_channel(scaler.target)
    stub = ExternalScalerStub(channel)
    calls = [stub.StreamIsActive(so({"backend": f"Bad/{i}"}), timeout=CALL_TIMEOUT) for i in range(1000)]
    codes = set()
    for call in calls:
        try:
            await call.read()
        except grpc.aio.AioRpcError as exc:
            codes.add(exc.code())
    assert codes == {grpc.StatusCode.INVALID_ARGUMENT}
    assert scaler.state.hub.open_streams == 0
    await channel.close(None)
