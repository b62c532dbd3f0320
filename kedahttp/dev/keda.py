"""KEDA's own scaling rules for one ScaledObject, as plain data and explicit time: activation and cooldown.

KEDA, not the HPA, owns the step between 0 and 1 (the HPA is disabled at 0 replicas). On every poll and
on every pushed ``true`` KEDA's scale executor decides, from whether any trigger is active:

* active at 0 replicas: scale to ``max(minReplicaCount, 1)`` and remember the time (``lastActiveTime``);
* active above 0: only remember the time; the HPA handles 1..N;
* inactive above 0 with ``minReplicaCount == 0``: scale to 0 once ``lastActiveTime + cooldownPeriod``
  has passed (at once if KEDA never saw it active);
* inactive below ``minReplicaCount``: bring it up to the minimum.

A scaler error counts as inactive (KEDA's behaviour without a ``fallback``), so a scaler that stays
broken for longer than the cooldown lets KEDA scale to zero, as it would in a cluster. KEDA ignores a
pushed ``false``: only polls bring a backend down.

The push stream's reconnect backoff is KEDA's: 2 s doubling to 60 s without jitter, reset only when the
server ends the stream with OK (a clean shutdown, not a failure); ``stream_backoff`` builds it.

Pure: no clock, no I/O; callers pass ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

from kedahttp.process.backoff import Backoff


@dataclass(frozen=True, slots=True)
class ScaledObjectSpec:
    min_replica_count: int = 0
    max_replica_count: int = 100
    polling_interval_seconds: float = 30.0
    cooldown_period_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.min_replica_count < 0 or self.max_replica_count < max(self.min_replica_count, 1):
            raise ValueError("need 0 <= minReplicaCount <= maxReplicaCount and maxReplicaCount >= 1")

    @property
    def hpa_min_replicas(self) -> int:
        """KEDA writes the HPA's minReplicas as the ScaledObject's minimum, but at least 1."""
        return max(self.min_replica_count, 1)


@dataclass(frozen=True, slots=True)
class Step:
    replicas: int | None  # the new replica count, or None for no change
    reason: str


@dataclass(slots=True)
class ScaleExecutor:
    """KEDA's scale executor for one ScaledObject, with the one piece of state it keeps: lastActiveTime."""

    spec: ScaledObjectSpec
    last_active_at: float | None = None

    def request_scale(self, now: float, current: int, active: bool) -> Step:
        spec = self.spec
        if active:
            self.last_active_at = now
            if current == 0:
                return Step(spec.hpa_min_replicas, "activated: a trigger is active")
            return Step(None, "active")
        if current > 0 and spec.min_replica_count == 0:
            if self.last_active_at is None or self.last_active_at + spec.cooldown_period_seconds < now:
                return Step(0, f"inactive for cooldownPeriod ({spec.cooldown_period_seconds:g} s)")
            return Step(None, "inactive, cooling down")
        if current < spec.min_replica_count:
            return Step(spec.min_replica_count, "below minReplicaCount")
        return Step(None, "inactive")

    def cooldown_left(self, now: float, current: int) -> float | None:
        """Seconds until a still-inactive target would be scaled to zero; None when that is not pending."""
        if current == 0 or self.spec.min_replica_count or self.last_active_at is None:
            return None
        return max(self.last_active_at + self.spec.cooldown_period_seconds - now, 0.0)


def stream_backoff(initial_seconds: float = 2.0, maximum_seconds: float = 60.0) -> Backoff:
    """KEDA's reconnect delay for a broken ``StreamIsActive``: doubling from 2 s to a minute, no jitter."""
    return Backoff(initial_seconds, maximum_seconds)
