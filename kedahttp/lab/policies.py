"""The scaling policies the lab compares, each a controller for one app (replay.py's ``Controller``).

* ``KedaScaler``: our scaler as it runs, on the simulated clock: a real ``ScalerState`` (aggregator,
  adaptive keep-alive, push hub) folds the proxy's reports and wakes and answers IsActive, GetMetrics
  and the push stream through the same methods the gRPC service calls; KEDA's scale executor and the
  HPA are the dev emulator's pure cores (dev/keda.py, dev/hpa.py): activation on a pushed ``true``,
  polls every ``pollingInterval``, ``cooldownPeriod`` before zero, HPA syncs every 15 s. Policies
  ``kedahttp`` (trigger defaults, KEDA's default cooldown), ``fixed-Nm`` (a 1 s activity window and a
  cooldown of N minutes: the keep-alive a ``cooldownPeriod`` gives) and ``adaptive`` (``keepAlive:
  adaptive``, the 10-minute window as its fallback, cooldown 0) differ only in trigger metadata and spec.
* ``HttpAddOn``: a model of the KEDA HTTP add-on's loop: its scaler samples the interceptors' pending
  request counts every 500 ms and answers from the last sample, so a request that starts and ends
  between two samples is never seen; KEDA and the HPA as above, with KEDA's default cooldown.
* ``Knative``: a model of Knative's KPA: every 2 s, desired = ceil(average concurrency / target) over
  a 60 s stable window, or over a 6 s panic window while panicking (entered at twice the ready pods,
  held 60 s, never scaling down meanwhile); zero only after 30 s of a zero recommendation (the
  scale-to-zero grace); the activator wakes a scaled-to-zero app at its first request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from kedahttp.activity import memory_bus
from kedahttp.activity.aggregate import Aggregator
from kedahttp.activity.model import Report, WakeEvent
from kedahttp.dev.hpa import Hpa, HpaSpec, MetricReading
from kedahttp.dev.keda import ScaledObjectSpec, ScaleExecutor, Step
from kedahttp.lab.config import LabConfig
from kedahttp.lab.replay import BASE_WALL, INF, NAMESPACE, AppReplay, Controller
from kedahttp.scaler.metrics import parse_trigger
from kedahttp.scaler.state import ScalerState

POLLING_INTERVAL_SECONDS: Final = 30.0  # KEDA's default pollingInterval
HPA_SYNC_SECONDS: Final = 15.0  # kube-controller-manager's --horizontal-pod-autoscaler-sync-period
KEDA_DEFAULT_COOLDOWN_SECONDS: Final = 300.0
ADDON_SAMPLE_SECONDS: Final = 0.5
KPA_TICK_SECONDS: Final = 2.0
KPA_STABLE_WINDOW_SECONDS: Final = 60
KPA_PANIC_WINDOW_SECONDS: Final = 6
KPA_PANIC_THRESHOLD: Final = 2.0
KPA_SCALE_TO_ZERO_GRACE_SECONDS: Final = 30.0


def next_on_grid(now: float, phase: float, period: float) -> float:
    """The first time ``phase + k * period`` strictly after ``now``."""
    at = phase + (math.floor((now - phase) / period) + 1) * period
    while at <= now:  # float rounding can land on ``now`` itself
        at += period
    return at


class KedaDriven:
    """KEDA's scale executor and the HPA for one ScaledObject: polls, HPA syncs and pushed ``true``s."""

    def __init__(self, spec: ScaledObjectSpec, config: LabConfig, phase: float) -> None:
        self.spec = spec
        self.executor = ScaleExecutor(spec)
        self.hpa = Hpa(HpaSpec(min_replicas=spec.hpa_min_replicas, max_replicas=config.max_replicas))
        self.phase = phase
        self.next_poll = phase
        self.next_sync = phase
        self.sim: AppReplay | None = None

    def apply(self, step: Step) -> None:
        assert self.sim is not None
        if step.replicas is not None:
            self.sim.scale_to(step.replicas)
            self.reschedule()

    def reschedule(self) -> None:
        assert self.sim is not None
        now = self.sim.now
        if self.next_poll < now:  # the timers ran while nothing was due: their next slot after now
            self.next_poll = next_on_grid(now, self.phase, self.spec.polling_interval_seconds)
        if self.next_sync < now:
            self.next_sync = next_on_grid(now, self.phase, HPA_SYNC_SECONDS)

    def pushed_true(self) -> None:
        assert self.sim is not None
        self.apply(self.executor.request_scale(self.sim.now, self.sim.replicas, True))

    def next_decision(self) -> float:
        """Polls and syncs while the app has replicas; at zero only polls while requests are held (else a
        poll is a no-op: nothing but a pushed ``true`` makes an idle app active)."""
        sim = self.sim
        assert sim is not None
        self.reschedule()
        if sim.replicas:
            return min(self.next_poll, self.next_sync)
        return self.next_poll if sim.counters.held else INF

    def decide(self, active: Callable[[], bool], readings: Callable[[], list[MetricReading]]) -> None:
        sim = self.sim
        assert sim is not None
        now = sim.now
        if now >= self.next_poll:
            self.next_poll = next_on_grid(now, self.phase, self.spec.polling_interval_seconds)
            if sim.replicas or sim.counters.held:
                self.apply(self.executor.request_scale(now, sim.replicas, active()))
        if now >= self.next_sync:
            self.next_sync = next_on_grid(now, self.phase, HPA_SYNC_SECONDS)
            if sim.replicas:
                values = readings()
                if sim.replicas == 1 == self.hpa.spec.min_replicas and all(
                        r.value is not None and r.value <= r.target for r in values):
                    return  # exact shortcut: at minReplicas with nothing above target, the HPA keeps 1
                decision = self.hpa.sync(now, sim.replicas, sim.replicas, values)
                if decision.rescale:
                    sim.scale_to(decision.desired)


class KedaScaler:
    """Our scaler (a real ScalerState on the simulated clock) under KEDA and the HPA."""

    def __init__(self, metadata: Mapping[str, str], cooldown_seconds: float, config: LabConfig,
                 phase: float) -> None:
        self.metadata = dict(metadata)
        self.config = config
        self.keda = KedaDriven(ScaledObjectSpec(max_replica_count=config.max_replicas,
                                                polling_interval_seconds=POLLING_INTERVAL_SECONDS,
                                                cooldown_period_seconds=cooldown_seconds), config, phase)
        self.wall = BASE_WALL
        self.state: ScalerState | None = None
        self.last_reevaluated = 0
        self.next_change = INF

    @property
    def trigger_metadata(self) -> dict[str, str]:
        """The ScaledObject trigger's metadata this policy stands for."""
        return {"targetConcurrency": f"{self.config.target_concurrency:g}", **self.metadata}

    def start(self, sim: AppReplay) -> None:
        self.sim = sim
        self.keda.sim = sim
        name = sim.backend.partition("/")[2]
        self.trigger = parse_trigger(NAMESPACE, name, self.trigger_metadata)
        self.state = ScalerState(memory_bus.MemoryTransport(f"memory://lab-{name}"), clock=sim.clock.wall)
        self.state.hub.set_fresh(True, sim.clock.wall())
        self.watch = self.state.open_watch(self.trigger, sim.clock.wall())

    # -- what the proxy publishes -----------------------------------------------------------------------

    def on_report(self, report: Report) -> None:
        self._fold(report)

    def on_wake(self, wake: WakeEvent) -> None:
        self._fold(wake)

    def on_busy(self, busy: bool) -> None:
        pass

    def _fold(self, message: Report | WakeEvent) -> None:
        state = self.state
        assert state is not None
        wall = self.sim.clock.wall()
        second = math.floor(wall)
        if second > self.last_reevaluated and self.watch.active:
            # The hub's 1 s timer, due since the previous message. While the watch is inactive it could
            # only find an inactive-to-active change that no message caused: the adaptive pre-warm,
            # which ``next_change`` schedules on its own.
            self.last_reevaluated = second
            state.hub.reevaluate(second)
            self._push()
        state.fold(message, wall)
        self._push()
        self._schedule_change(wall)

    def _push(self) -> None:
        if self.watch.due:  # StreamIsActive sends true: KEDA runs its scale executor at once
            self.watch.due = 0
            self.keda.pushed_true()

    def _schedule_change(self, wall: float) -> None:
        assert self.state is not None
        change = self.state.keepalive.next_change(self.trigger.backend, wall, self.trigger.activity_window_seconds)
        # The hub's next 1 s timer strictly after the edge (the answer flips only past it).
        self.next_change = INF if change is None else math.floor(change) + 1 - BASE_WALL

    # -- scheduled decisions ----------------------------------------------------------------------------

    def next_tick(self) -> float:
        return min(self.keda.next_decision(), self.next_change)

    def tick(self) -> None:
        state = self.state
        assert state is not None
        wall = self.sim.clock.wall()
        if self.sim.now >= self.next_change:
            self.last_reevaluated = math.floor(wall)
            state.hub.reevaluate(wall)
            self._push()
            self._schedule_change(wall)
        trigger = self.trigger
        self.keda.decide(
            lambda: state.answer_active(trigger, wall),
            lambda: [MetricReading(name, target, state.answer_metric(trigger, name, wall))
                     for name, target in trigger.targets],
        )


class HttpAddOn:
    """A model of the KEDA HTTP add-on: pending requests sampled every 500 ms (see the module docstring)."""

    def __init__(self, config: LabConfig, phase: float) -> None:
        self.config = config
        self.keda = KedaDriven(ScaledObjectSpec(max_replica_count=config.max_replicas,
                                                polling_interval_seconds=POLLING_INTERVAL_SECONDS,
                                                cooldown_period_seconds=KEDA_DEFAULT_COOLDOWN_SECONDS), config, phase)
        self.busy_since: float | None = None
        self.last_seen = -INF  # the newest sample that saw a pending request
        self.activation = INF

    def start(self, sim: AppReplay) -> None:
        self.sim = sim
        self.keda.sim = sim

    def on_report(self, report: Report) -> None:
        pass

    def on_wake(self, wake: WakeEvent) -> None:
        pass

    def on_busy(self, busy: bool) -> None:
        now = self.sim.now
        if busy:
            self.busy_since = now
            if not self.sim.replicas:  # the stream sends true at the first sample that sees it
                self.activation = math.ceil(now / ADDON_SAMPLE_SECONDS) * ADDON_SAMPLE_SECONDS
        elif self.busy_since is not None:
            last_sample = (math.ceil(now / ADDON_SAMPLE_SECONDS) - 1) * ADDON_SAMPLE_SECONDS
            if last_sample >= self.busy_since:
                self.last_seen = max(self.last_seen, last_sample)
            self.busy_since = None

    def _sampled(self, now: float) -> bool:
        return self.busy_since is not None and math.floor(now / ADDON_SAMPLE_SECONDS) * ADDON_SAMPLE_SECONDS >= self.busy_since

    def next_tick(self) -> float:
        return min(self.activation, self.keda.next_decision())

    def tick(self) -> None:
        now = self.sim.now
        executor = self.keda.executor
        if now >= self.activation:
            self.activation = INF
            if self._sampled(now):
                self.keda.pushed_true()
        if self._sampled(now):
            self.last_seen = now
        if self.last_seen > (executor.last_active_at or -INF):  # every sampled true reached KEDA's executor
            executor.last_active_at = self.last_seen
        counters = self.sim.counters
        self.keda.decide(
            lambda: self._sampled(now),
            lambda: [MetricReading("concurrency", self.config.target_concurrency,
                                   float(counters.in_flight + counters.held))],
        )


class Knative:
    """A model of Knative's KPA (see the module docstring), fed with our own windowed aggregation."""

    def __init__(self, config: LabConfig, phase: float) -> None:
        self.config = config
        self.stable = Aggregator(concurrency_window_seconds=KPA_STABLE_WINDOW_SECONDS)
        self.panic = Aggregator(concurrency_window_seconds=KPA_PANIC_WINDOW_SECONDS)
        self.phase = phase
        self.next = INF
        self.panic_until = -INF
        self.zero_since: float | None = None

    def start(self, sim: AppReplay) -> None:
        self.sim = sim

    def on_report(self, report: Report) -> None:
        wall = self.sim.clock.wall()
        self.stable.fold(report, wall)
        self.panic.fold(report, wall)

    def on_wake(self, wake: WakeEvent) -> None:
        if not self.sim.replicas:  # the activator asks for a pod at once
            self.sim.scale_to(1)
            self.zero_since = None
            self.next = next_on_grid(self.sim.now, self.phase, KPA_TICK_SECONDS)

    def on_busy(self, busy: bool) -> None:
        pass

    def next_tick(self) -> float:
        return self.next if self.sim.replicas else INF

    def tick(self) -> None:
        sim = self.sim
        now = sim.now
        self.next = next_on_grid(now, self.phase, KPA_TICK_SECONDS)
        wall = sim.clock.wall()
        target = self.config.target_concurrency
        backend = sim.backend
        stable = math.ceil(self.stable.metrics(backend, wall).concurrency / target)
        panic = math.ceil(self.panic.metrics(backend, wall).concurrency / target)
        ready = max(len(sim.ready), 1)
        if panic / ready >= KPA_PANIC_THRESHOLD:
            self.panic_until = now + KPA_STABLE_WINDOW_SECONDS
        desired = max(sim.replicas, panic) if now < self.panic_until else stable
        if sim.counters.in_flight + sim.counters.held:
            desired = max(desired, 1)
        if desired == 0:
            if self.zero_since is None:
                self.zero_since = now
            if now - self.zero_since < KPA_SCALE_TO_ZERO_GRACE_SECONDS:
                return
        else:
            self.zero_since = None
        sim.scale_to(desired)


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    description: str
    build: Callable[[LabConfig, float], Controller]


def keda_policy(name: str, description: str, metadata: Mapping[str, str], cooldown_seconds: float) -> Policy:
    return Policy(name, description, lambda config, phase: KedaScaler(metadata, cooldown_seconds, config, phase))


def fixed(minutes: int) -> Policy:
    return keda_policy(f"fixed-{minutes}m", f"activityWindowSeconds 1, cooldownPeriod {minutes * 60} s",
                       {"activityWindowSeconds": "1"}, minutes * 60.0)


POLICIES: Final[dict[str, Policy]] = {p.name: p for p in (
    keda_policy("kedahttp", "trigger defaults (activityWindowSeconds 60), KEDA's default cooldownPeriod 300 s",
                {}, KEDA_DEFAULT_COOLDOWN_SECONDS),
    fixed(5), fixed(10), fixed(20),
    Policy("http-add-on", "interceptor sampled every 500 ms, cooldownPeriod 300 s",
           lambda config, phase: HttpAddOn(config, phase)),
    Policy("knative", "KPA: 60 s stable / 6 s panic windows, 30 s scale-to-zero grace",
           lambda config, phase: Knative(config, phase)),
    keda_policy("adaptive", "keepAlive adaptive, activityWindowSeconds 600 as fallback, cooldownPeriod 0",
                {"keepAlive": "adaptive", "activityWindowSeconds": "600"}, 0.0),
)}
CURVE_MINUTES: Final = (1, 2, 5, 10, 15, 20, 30, 60)  # the fixed windows of the trade-off curve
