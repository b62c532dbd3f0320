"""The KEDA emulator against a scripted scaler on a real gRPC port: activation by push, the HPA path,
cooldown to zero, ignored pushed false, and the stream's reconnect backoff."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest

from kedahttp.dev.config import AppConfig, EmulatorConfig
from kedahttp.dev.emulator import KedaEmulator
from kedahttp.dev.hpa import Policy, Rules
from kedahttp.dev.runtime import AppStatus
from tests.harness.fake_scaler import FakeScaler
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(30)

APP = AppConfig(name="hello", hosts=("hello.localhost",), max_replicas=8, target_concurrency=10)
FAST = EmulatorConfig(
    polling_interval_seconds=0.2,
    cooldown_period_seconds=0.6,
    hpa_sync_period_seconds=0.2,
    scale_down=Rules(0.0, (Policy("Percent", 100, 15.0),)),
    stream_backoff_initial_seconds=0.05,
    stream_backoff_max_seconds=0.4,
    call_timeout_seconds=2.0,
)


class FakeTarget:
    def __init__(self) -> None:
        self.desired = 0
        self.history = [0]
        self.changed = asyncio.Event()

    def status(self, key: str) -> AppStatus:
        return AppStatus(self.desired, self.desired, self.desired, 0)

    async def scale(self, key: str, replicas: int) -> None:
        self.desired = replicas
        self.history.append(replicas)
        self.changed.set()

    async def wait_for(self, replicas: int, timeout: float = 10.0) -> None:
        async def changed_to() -> None:
            while self.desired != replicas:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(changed_to(), timeout)


@pytest.fixture
async def scaler() -> AsyncIterator[FakeScaler]:
    fake = FakeScaler()
    await fake.start()
    yield fake
    await fake.stop()


async def run_emulator(scaler: FakeScaler, target: FakeTarget, config: EmulatorConfig = FAST) -> KedaEmulator:
    emulator = KedaEmulator([APP], config, f"127.0.0.1:{scaler.port}", target)
    await emulator.start()
    return emulator


async def test_push_activates_hpa_scales_out_and_cooldown_scales_to_zero(scaler: FakeScaler) -> None:
    target = FakeTarget()
    emulator = await run_emulator(scaler, target)
    try:
        await until(lambda: len(scaler.streams) == 1)
        obj = emulator.objects["default/hello"]
        assert obj.ref.scalerMetadata["targetConcurrency"] == "10"
        assert obj.ref.scalerMetadata["backend"] == "default/hello"

        # a pushed true activates at once
        scaler.script.active = True
        await scaler.pushes.put(True)
        await target.wait_for(1)
        assert obj.view.events[-1].by == "keda" and "push" in obj.view.events[-1].reason

        # the HPA: a total of 35 against 10 per replica -> ceil(3.5) = 4
        scaler.script.values["concurrency"] = 35.0
        await target.wait_for(4)
        hpa_event = obj.view.events[-1]
        assert (hpa_event.by, hpa_event.old, hpa_event.new) == ("hpa", 1, 4)
        # the HPA path asks the way KEDA's metrics adapter does
        names = scaler.names()
        i = names.index("GetMetrics")
        assert names[i - 1 : i + 2] == ["GetMetricSpec", "GetMetrics", "IsActive"]

        # within tolerance: 42 at 4 replicas (ratio 1.05) changes nothing
        scaler.script.values["concurrency"] = 42.0
        await asyncio.sleep(0.7)
        assert target.desired == 4

        # idle: the HPA takes it down to its minimum (1), KEDA to 0 after the cooldown
        scaler.script.values["concurrency"] = 0.0
        scaler.script.active = False
        await target.wait_for(0)
        assert target.history[-2:] == [1, 0]
        last = obj.view.events[-1]
        assert last.by == "keda" and "cooldown" in last.reason
    finally:
        await emulator.close()


async def test_a_pushed_false_is_ignored(scaler: FakeScaler) -> None:
    config = dataclasses.replace(FAST, polling_interval_seconds=60.0, hpa_sync_period_seconds=60.0)
    target = FakeTarget()
    emulator = await run_emulator(scaler, target, config)
    try:
        await until(lambda: len(scaler.streams) == 1)
        await until(lambda: "IsActive" in scaler.names() or "GetMetrics" in scaler.names())  # first poll done
        await scaler.pushes.put(True)
        await target.wait_for(1)
        for _ in range(5):
            await scaler.pushes.put(False)
        await asyncio.sleep(1.0)  # well past the 0.6 s cooldown; no poll in this window
        assert target.desired == 1
    finally:
        await emulator.close()


async def test_stream_reconnects_with_backoff_reset_by_an_ok_end(scaler: FakeScaler) -> None:
    target = FakeTarget()
    emulator = await run_emulator(scaler, target)
    obj = emulator.objects["default/hello"]
    try:
        for n in range(1, 5):
            await until(lambda n=n: len(scaler.streams) == n)  # type: ignore[misc]
            await scaler.pushes.put(grpc.StatusCode.UNAVAILABLE)
        await until(lambda: len(scaler.streams) == 5)
        assert obj.view.reconnect_delay == 0.4  # 0.05, 0.1, 0.2, 0.4 (the maximum)
        gaps = [b - a for a, b in zip(scaler.streams, scaler.streams[1:], strict=False)]
        for gap, delay in zip(gaps, (0.05, 0.1, 0.2, 0.4), strict=True):
            assert gap >= delay * 0.95  # never sooner than the backoff
        await scaler.pushes.put(None)  # the scaler ends the stream with OK
        await until(lambda: len(scaler.streams) == 6)
        assert obj.view.reconnect_delay == 0.05
        assert obj.view.stream == "open"
    finally:
        await emulator.close()


async def test_failed_metrics_keep_replicas_on_the_hpa_path(scaler: FakeScaler) -> None:
    config = dataclasses.replace(FAST, polling_interval_seconds=60.0, cooldown_period_seconds=60.0)
    target = FakeTarget()
    emulator = await run_emulator(scaler, target, config)
    obj = emulator.objects["default/hello"]
    try:
        scaler.script.active = True
        await scaler.pushes.put(True)
        await target.wait_for(1)
        scaler.script.values["concurrency"] = 30.0
        await target.wait_for(3)
        scaler.script.fail = grpc.StatusCode.UNAVAILABLE
        await until(lambda: obj.view.error is not None and "UNAVAILABLE" in obj.view.error)
        await asyncio.sleep(0.6)
        assert target.desired == 3
        assert "FailedGetExternalMetric" in obj.view.hpa_reason
    finally:
        await emulator.close()
