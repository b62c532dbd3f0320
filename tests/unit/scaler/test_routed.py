"""A backend no proxy routes is NOT_FOUND, naming it, once every live proxy has said what it routes; never
before (start-up, a proxy that has not listed its routes, an older proxy) and never while the view is not
fresh (a bus outage stays UNAVAILABLE). A routed, idle backend is still inactive and 0."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from kedahttp.activity import memory_bus
from kedahttp.protos import externalscaler_pb2 as pb
from kedahttp.scaler.routed import RoutedBackends
from tests.harness.scaler import FakeProxy, KedaClient, Scaler, ref
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(30)


async def outcome(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def codes(keda: KedaClient, so: pb.ScaledObjectRef) -> dict[str, tuple[grpc.StatusCode, str]]:
    request = pb.GetMetricsRequest(scaledObjectRef=so, metricName="concurrency")
    stream = keda.stub.StreamIsActive(so)
    try:
        first = await outcome(asyncio.wait_for(stream.read(), 1.0))
    except TimeoutError:
        first = (grpc.StatusCode.OK, "open and silent")
    finally:
        stream.cancel()
    return {
        "GetMetricSpec": await outcome(keda.stub.GetMetricSpec(so)),
        "GetMetrics": await outcome(keda.stub.GetMetrics(request)),
        "IsActive": await outcome(keda.stub.IsActive(so)),
        "StreamIsActive": first,
    }


async def proxy_on(bus: str, instance: str, routed: set[str] | None, listed: bool = True) -> FakeProxy:
    proxy = FakeProxy.on(bus, instance)
    proxy.routed = None if routed is None else frozenset(routed)
    proxy.list_routes = listed
    await proxy.start()
    await proxy.report()
    proxy.keep_reporting()
    return proxy


async def test_an_unrouted_backend_is_not_found_and_a_routed_idle_one_is_zero(
    bus: str, scaler: Scaler, keda: KedaClient,
) -> None:
    proxy = await proxy_on(bus, "proxy-1", {"default/app"})
    try:
        await scaler.caught_up(proxy)
        for method, (code, details) in (await codes(keda, ref("typo"))).items():
            assert code == grpc.StatusCode.NOT_FOUND, (method, code, details)
            assert "'default/typo' is not routed by any of the 1 live proxy" in details, method
        assert await keda.is_active(ref("app")) is False  # known and idle: inactive and 0, as before
        assert await keda.metric(ref("app"), "concurrency") == (0, 0.0)
        other = ref("x", backend="default/app")  # the trigger's backend key is what counts
        assert await keda.is_active(other) is False
    finally:
        await proxy.close()


async def test_nothing_is_not_found_until_every_live_proxy_has_listed_its_routes(
    bus: str, scaler: Scaler, keda: KedaClient,
) -> None:
    silent = await proxy_on(bus, "old-proxy", None)  # an older proxy: reports without routes
    listing = await proxy_on(bus, "proxy-2", {"default/app"}, listed=False)  # a fingerprint only, so far
    try:
        await scaler.caught_up(silent, listing)
        assert await keda.is_active(ref("typo")) is False  # nobody has said what it routes: as before
        listing.list_routes = True
        await until(lambda: scaler.state.routed.verdict("default/typo", ["proxy-2"]) is False, 10, "proxy-2 listed")
        assert await keda.is_active(ref("typo")) is False  # the old proxy might route it
        silent.routed = frozenset({"default/other"})  # upgraded: now it lists its routes too
        await until(lambda: scaler.state.routed.verdict("default/typo", ["old-proxy", "proxy-2"]) is False, 10,
                    "both listed")
        code, details = await outcome(keda.stub.IsActive(ref("typo")))
        assert code == grpc.StatusCode.NOT_FOUND and "of the 2 live proxy" in details
        assert await keda.is_active(ref("other")) is False  # routed by one of them: idle, not missing
    finally:
        await listing.close()
        await silent.close()


async def test_an_outage_stays_unavailable_not_not_found(bus: str, scaler: Scaler, keda: KedaClient) -> None:
    proxy = await proxy_on(bus, "proxy-1", {"default/app"})
    try:
        await scaler.caught_up(proxy)
        assert (await outcome(keda.stub.IsActive(ref("typo"))))[0] == grpc.StatusCode.NOT_FOUND
        memory_bus._log_for(bus).down = True
        try:
            await until(lambda: not scaler.state.fresh(time.time()), 5, "not fresh")
            for method, (code, _) in (await codes(keda, ref("typo"))).items():
                if method in ("GetMetrics", "IsActive"):
                    assert code == grpc.StatusCode.UNAVAILABLE, method
                else:  # these need no data: they answer as if all were well, never NOT_FOUND
                    assert code != grpc.StatusCode.NOT_FOUND, method
        finally:
            memory_bus._log_for(bus).down = False
    finally:
        await proxy.close()


def test_the_verdict_is_pure_and_conservative() -> None:
    routed = RoutedBackends()

    class R:
        def __init__(self, instance: str, version: int, listed: bool, routed: tuple[str, ...] = ()) -> None:
            self.instance, self.routes_version, self.routes_listed, self.routed = instance, version, listed, routed

    assert routed.verdict("ns/a", []) is None  # no proxy: nothing is known
    routed.fold(R("p1", 7, True, ("ns/a",)))
    assert routed.verdict("ns/a", ["p1"]) is True
    assert routed.verdict("ns/b", ["p1"]) is False
    routed.fold(R("p1", 8, False))  # the set changed, the new one has not come yet
    assert routed.verdict("ns/b", ["p1"]) is None
    routed.fold(R("p1", 8, True, ("ns/a", "ns/b")))
    assert routed.verdict("ns/b", ["p1"]) is True
    routed.fold(R("p1", 8, False))  # the same fingerprint: still known
    assert routed.verdict("ns/c", ["p1"]) is False
    assert routed.verdict("ns/c", ["p1", "p2"]) is None  # p2 has said nothing
    routed.fold(R("p2", 0, False))
    assert routed.verdict("ns/c", ["p1", "p2"]) is None
    routed.forget(["p2"])
    assert routed.verdict("ns/c", ["p1"]) is False
