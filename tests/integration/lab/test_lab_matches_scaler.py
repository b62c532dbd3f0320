"""The lab decides what the real scaler decides: a scripted app is replayed in the lab, and every report and
wake the lab's scaler folded is published to a real scaler process component (gRPC on a real port, the
in-memory bus) on a clock set to the same instants; at every KEDA poll and HPA sync of the replay, the
answers over gRPC must equal the lab's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from kedahttp.activity import codec
from kedahttp.activity.model import Report, WakeEvent
from kedahttp.lab.config import LabConfig
from kedahttp.lab.policies import POLICIES, KedaScaler
from kedahttp.lab.replay import AppReplay
from kedahttp.lab.workload import AppLoad
from tests.harness.waiting import until
from tests.unit.scaler.harness import FakeProxy, KedaClient, ref, running_scaler

pytestmark = pytest.mark.timeout(120)


@dataclass
class Event:
    wall: float
    kind: str  # "fold", "active", "metric"
    payload: Any = None
    answer: Any = None


def scripted_app() -> AppLoad:
    """Bursts every 15 minutes (so the adaptive keep-alive learns), a busy stretch, and quiet tails."""
    rng = np.random.default_rng(7)
    arrivals = [b * 900 + 30 + k * 2.5 for b in range(9) for k in range(4)]
    arrivals += list(9 * 900 + 60 + np.sort(rng.uniform(0, 120, 400)))  # concurrency enough for the HPA
    arrivals += [9 * 900 + 1500.0, 9 * 900 + 1530.0]
    durations = [0.05] * 36 + list(rng.uniform(2, 6, 400)) + [0.2, 0.2]
    return AppLoad("app-000", "scripted", np.array(arrivals), np.array(durations))


def recorded(policy: str) -> tuple[KedaScaler, list[Event]]:
    """Replays the scripted app and records, in order, every fold and every answer of the lab's scaler."""
    config = LabConfig(target_concurrency=5)
    controller = POLICIES[policy].build(config, 7.0)
    assert isinstance(controller, KedaScaler)
    events: list[Event] = []
    app = scripted_app()
    replay = AppReplay(app, config, controller, float(app.arrivals[-1] + 1200), (1, 0))
    original_start = controller.start

    def start(sim: AppReplay) -> None:
        original_start(sim)
        state = controller.state
        assert state is not None
        fold, active, metric = state.fold, state.answer_active, state.answer_metric

        def record_fold(message: Any, now: float) -> None:
            events.append(Event(now, "fold", message))
            fold(message, now)

        def record_active(trigger: Any, now: float) -> bool:
            answer = active(trigger, now)
            events.append(Event(now, "active", None, answer))
            return answer

        def record_metric(trigger: Any, name: str, now: float) -> float:
            answer = metric(trigger, name, now)
            events.append(Event(now, "metric", name, answer))
            return answer

        state.fold, state.answer_active, state.answer_metric = record_fold, record_active, record_metric  # type: ignore[method-assign]

    controller.start = start  # type: ignore[method-assign]
    result = replay.run()
    assert result.cold > 0 and len(result.scale_events) > 4  # the scenario exercises activation and scale-down
    assert any(n > 1 for _, n in result.scale_events)  # ... and the HPA
    return controller, events


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def batches(events: list[Event]) -> Iterator[tuple[list[Event], list[Event]]]:
    """Consecutive folds, then the decisions that follow them."""
    folds: list[Event] = []
    decisions: list[Event] = []
    for event in events:
        if event.kind == "fold":
            if decisions:
                yield folds, decisions
                folds, decisions = [], []
            folds.append(event)
        else:
            decisions.append(event)
    if folds or decisions:
        yield folds, decisions


@pytest.mark.parametrize("policy", ["kedahttp", "fixed-10m", "adaptive"])
async def test_every_lab_decision_equals_the_scalers_answer_over_grpc(policy: str) -> None:
    controller, events = recorded(policy)
    decisions = [e for e in events if e.kind != "fold"]
    assert len(decisions) > 100
    if policy == "adaptive":
        assert controller.state is not None and controller.state.keepalive.window(controller.trigger.backend)
    bus = f"memory://lab-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()
    clock.now = events[0].wall - 1.0
    proxy = FakeProxy.on(bus, "lab-proxy-app-000")
    heartbeat = FakeProxy(proxy.transport, "heartbeat")  # keeps the view fresh without touching the app
    await proxy.start()
    so = ref("app-000", "lab", **controller.trigger_metadata)
    async with running_scaler(bus, clock=clock) as scaler:
        keda = KedaClient(scaler.target)
        agg = scaler.state.aggregator
        folded = 0
        mismatches = []
        for folds, asked in batches(events):
            for event in folds:
                clock.now = event.wall
                message = event.payload
                if isinstance(message, WakeEvent):
                    await proxy.transport.publish([codec.encode_wake(message)])
                else:
                    assert isinstance(message, Report)
                    await proxy.transport.publish([codec.encode_report(message)])
                folded += 1
                await until(lambda n=folded: agg.reports + agg.wakes + agg.duplicates >= n + heartbeat.seq, 5.0,
                            "scaler folded the lab's message")
            for event in asked:
                clock.now = event.wall
                report = Report("heartbeat", heartbeat.seq + 1, event.wall, event.wall - 0.25, 0.25, ())
                heartbeat.seq += 1
                await proxy.transport.publish([codec.encode_report(report)])
                await until(lambda n=folded: agg.reports + agg.wakes + agg.duplicates >= n + heartbeat.seq, 5.0,
                            "scaler folded the heartbeat")
                if event.kind == "active":
                    answer: Any = await keda.is_active(so)
                else:
                    _, answer = await keda.metric(so, event.payload)
                if answer != event.answer:
                    mismatches.append((event.wall - events[0].wall, event.kind, event.answer, answer))
        await keda.close()
    await proxy.close()
    assert mismatches == []
    assert {e.answer for e in decisions if e.kind == "active"} == {True, False}
