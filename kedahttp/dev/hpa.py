"""The Kubernetes HPA's replica arithmetic for KEDA's external metrics, as plain data and explicit time.

The KEDA emulator asks this module what the HPA controller would decide on each sync; it is written
from the controller's documented rules (replica_calculator.go and horizontal.go in kubernetes/kubernetes)
so that what `kedahttp dev` shows is what a cluster would do:

* KEDA's metrics are ``External`` with an ``AverageValue`` target. The HPA sums the values it gets
  (KEDA returns one: the total), computes ``usageRatio = sum / (target * statusReplicas)`` and, only when
  ``|1 - usageRatio| > tolerance`` (10 %), proposes ``ceil(sum / target)``; otherwise it keeps the
  current count. Quantities are milli-units: KEDA truncates value and target to whole milli-units.
* Several metrics: the largest proposal wins. A metric that cannot be read blocks any scale-down (and
  all scaling when none can be read): the HPA keeps what it has rather than act on half the picture.
* Outside [min, max] the count is brought back first, without looking at metrics; at 0 replicas with
  ``minReplicas >= 1`` (KEDA's HPA) the HPA does nothing: scaling from and to 0 is KEDA's job.
* Behaviour (the autoscaling/v2 defaults unless configured): stabilization takes the lowest
  recommendation over the scale-up window and the highest over the scale-down window (300 s by
  default); rate policies cap the change per period (scale-up: max of 100 % and 4 pods per 15 s;
  scale-down: 100 % per 15 s), counted from the replica changes made within the period.

Pure: no clock, no I/O. Callers pass ``now`` (seconds, any monotonic origin), so tests drive fake time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True, slots=True)
class Policy:
    kind: str  # "Pods" or "Percent"
    value: int
    period_seconds: float

    def __post_init__(self) -> None:
        if self.kind not in ("Pods", "Percent"):
            raise ValueError(f"policy type must be Pods or Percent, not {self.kind!r}")
        if self.value <= 0 or self.period_seconds <= 0:
            raise ValueError("policy value and periodSeconds must be greater than 0")


@dataclass(frozen=True, slots=True)
class Rules:
    """One direction of an HPA ``behavior``: stabilization window, rate policies and how to pick one."""

    stabilization_window_seconds: float
    policies: tuple[Policy, ...]
    select_policy: str = "Max"  # "Max", "Min" or "Disabled"

    def __post_init__(self) -> None:
        if self.select_policy not in ("Max", "Min", "Disabled"):
            raise ValueError(f"selectPolicy must be Max, Min or Disabled, not {self.select_policy!r}")
        if self.stabilization_window_seconds < 0:
            raise ValueError("stabilizationWindowSeconds must be at least 0")

    @property
    def longest_period_seconds(self) -> float:
        return max((p.period_seconds for p in self.policies), default=0.0)


# autoscaling/v2 defaults (what `kubectl get hpa -o yaml` shows for an HPA without a behavior).
DEFAULT_SCALE_UP: Final = Rules(0.0, (Policy("Percent", 100, 15.0), Policy("Pods", 4, 15.0)))
DEFAULT_SCALE_DOWN: Final = Rules(300.0, (Policy("Percent", 100, 15.0),))
DEFAULT_TOLERANCE: Final = 0.1


@dataclass(frozen=True, slots=True)
class HpaSpec:
    min_replicas: int = 1  # KEDA writes max(minReplicaCount, 1)
    max_replicas: int = 100
    tolerance: float = DEFAULT_TOLERANCE
    scale_up: Rules = DEFAULT_SCALE_UP
    scale_down: Rules = DEFAULT_SCALE_DOWN

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < max(self.min_replicas, 1):
            raise ValueError("need 0 <= minReplicas <= maxReplicas and maxReplicas >= 1")
        if self.tolerance < 0:
            raise ValueError("tolerance must be at least 0")


@dataclass(frozen=True, slots=True)
class MetricReading:
    """One external metric as the HPA sees it: the per-replica target and KEDA's value (the total)."""

    name: str
    target: float
    value: float | None  # None: the metric could not be read this sync


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int  # the replica count after this sync; equals current when rescale is False
    rescale: bool
    reason: str
    proposal: int | None = None  # what the metrics alone asked for; None when they were not consulted
    metric: str = ""  # the metric whose proposal won


def value_milli(value: float) -> int:
    """KEDA hands the HPA ``int64(value * 1000)`` milli-units; negative values never reach a sane HPA."""
    return max(int(value * 1000), 0)


def target_milli(target: float) -> int:
    """KEDA writes the target as ``int64(target * 1000)`` milli-units too (never 0 here: the HPA would divide by it)."""
    return max(int(target * 1000), 1)


def average_value_replicas(total: float, target: float, status_replicas: int, tolerance: float) -> int:
    """The HPA's proposal for one External metric with an AverageValue target."""
    usage = value_milli(total)
    per_pod = target_milli(target)
    wanted = -(-usage // per_pod)  # ceil(usage / per_pod), exact in integers
    if status_replicas <= 0:
        return wanted  # the ratio is infinite (or NaN at 0 usage, where wanted is 0 anyway)
    usage_ratio = usage / (per_pod * status_replicas)
    if abs(1.0 - usage_ratio) > tolerance:
        return wanted
    return status_replicas


def metrics_proposal(
    readings: Sequence[MetricReading], spec_replicas: int, status_replicas: int, tolerance: float
) -> tuple[int, str] | None:
    """The largest proposal over all metrics, or None when the HPA would not scale on them this sync."""
    best, best_name, invalid = 0, "", 0
    for reading in readings:
        if reading.value is None:
            invalid += 1
            continue
        proposal = average_value_replicas(reading.value, reading.target, status_replicas, tolerance)
        if best == 0 or proposal > best:
            best, best_name = proposal, reading.name
    if invalid >= len(readings) or (invalid and best < spec_replicas):
        return None
    return best, best_name


def _change_within(events: Sequence[tuple[float, int]], period_seconds: float, now: float) -> int:
    cutoff = now - period_seconds
    return sum(change for at, change in events if at > cutoff)


def scale_up_limit(current: int, up: Sequence[tuple[float, int]], down: Sequence[tuple[float, int]],
                   rules: Rules, now: float) -> int:
    if rules.select_policy == "Disabled":
        return current
    pick = min if rules.select_policy == "Min" else max
    result: int | None = None
    for policy in rules.policies:
        start = current - _change_within(up, policy.period_seconds, now) + _change_within(down, policy.period_seconds, now)
        if policy.kind == "Pods":
            proposed = start + policy.value
        else:  # rounded up, or a small count could never grow
            proposed = math.ceil(start * (1 + policy.value / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def scale_down_limit(current: int, up: Sequence[tuple[float, int]], down: Sequence[tuple[float, int]],
                     rules: Rules, now: float) -> int:
    if rules.select_policy == "Disabled":
        return current
    pick = max if rules.select_policy == "Min" else min  # the smallest change is the highest floor
    result: int | None = None
    for policy in rules.policies:
        start = current - _change_within(up, policy.period_seconds, now) + _change_within(down, policy.period_seconds, now)
        proposed = start - policy.value if policy.kind == "Pods" else int(start * (1 - policy.value / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


@dataclass(slots=True)
class Hpa:
    """One HorizontalPodAutoscaler: its spec and the memory the controller keeps between syncs."""

    spec: HpaSpec
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)

    def sync(self, now: float, current: int, status_replicas: int, readings: Sequence[MetricReading]) -> Decision:
        """One reconcile: ``current`` is the target's spec.replicas, ``status_replicas`` the pods that exist."""
        spec = self.spec
        if not self.recommendations:
            self.recommendations.append((now, current))
        if current == 0 and spec.min_replicas != 0:
            return Decision(0, False, "ScalingDisabled: the target has 0 replicas")
        if current > spec.max_replicas:
            return self._apply(now, current, spec.max_replicas, "above maxReplicas")
        if current < spec.min_replicas:
            return self._apply(now, current, spec.min_replicas, "below minReplicas")
        found = metrics_proposal(readings, current, status_replicas, spec.tolerance)
        if found is None:
            return Decision(current, False, "FailedGetExternalMetric: keeping the current count")
        proposal, metric = found
        stabilized = self._stabilize(now, current, proposal)
        desired, limit_reason = self._limit_rate(now, current, stabilized)
        if proposal > current:
            reason = f"{metric} above target"
        elif proposal < current:
            reason = "all metrics below target"
        else:
            reason = "at target (within tolerance)"
        if stabilized != proposal:
            reason += ", held by the stabilization window"
        if desired != stabilized:
            reason += f", limited by {limit_reason}"
        decision = self._apply(now, current, desired, reason)
        return Decision(decision.desired, decision.rescale, decision.reason, proposal, metric)

    def _apply(self, now: float, current: int, desired: int, reason: str) -> Decision:
        if desired == current:
            return Decision(current, False, reason)
        if desired > current:
            self._store(self.up_events, self.spec.scale_up, now, desired - current)
        else:
            self._store(self.down_events, self.spec.scale_down, now, current - desired)
        return Decision(desired, True, reason)

    @staticmethod
    def _store(events: list[tuple[float, int]], rules: Rules, now: float, change: int) -> None:
        cutoff = now - rules.longest_period_seconds
        events[:] = [e for e in events if e[0] >= cutoff]
        events.append((now, change))

    def _stabilize(self, now: float, current: int, desired: int) -> int:
        up_cutoff = now - self.spec.scale_up.stabilization_window_seconds
        down_cutoff = now - self.spec.scale_down.stabilization_window_seconds
        up_bound = down_bound = desired
        for at, recommendation in self.recommendations:
            if at > up_cutoff:
                up_bound = min(up_bound, recommendation)
            if at > down_cutoff:
                down_bound = max(down_bound, recommendation)
        # Samples older than both windows can never matter again.
        self.recommendations[:] = [r for r in self.recommendations if r[0] >= up_cutoff or r[0] >= down_cutoff]
        self.recommendations.append((now, desired))
        return min(max(current, up_bound), down_bound)

    def _limit_rate(self, now: float, current: int, desired: int) -> tuple[int, str]:
        spec = self.spec
        if desired > current:
            limit = max(scale_up_limit(current, self.up_events, self.down_events, spec.scale_up, now), current)
            if spec.max_replicas > limit:
                return min(desired, limit), "scale-up limit"
            return min(desired, spec.max_replicas), "maxReplicas"
        if desired < current:
            limit = min(scale_down_limit(current, self.up_events, self.down_events, spec.scale_down, now), current)
            if spec.min_replicas < limit:
                return max(desired, limit), "scale-down limit"
            return max(desired, spec.min_replicas), "minReplicas"
        return desired, ""
