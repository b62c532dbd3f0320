"""KEDA's activation, cooldown and stream backoff rules, with fake time."""

from __future__ import annotations

from kedahttp.dev.keda import ScaledObjectSpec, ScaleExecutor, stream_backoff


def test_activation_from_zero_goes_to_one() -> None:
    executor = ScaleExecutor(ScaledObjectSpec(cooldown_period_seconds=15))
    assert executor.request_scale(0.0, 0, active=False).replicas is None
    step = executor.request_scale(1.0, 0, active=True)
    assert step.replicas == 1
    assert executor.last_active_at == 1.0


def test_activation_goes_to_min_replica_count_when_set() -> None:
    executor = ScaleExecutor(ScaledObjectSpec(min_replica_count=3))
    assert executor.request_scale(0.0, 0, active=True).replicas == 3


def test_active_above_zero_only_refreshes_last_active_time() -> None:
    executor = ScaleExecutor(ScaledObjectSpec(cooldown_period_seconds=15))
    executor.request_scale(0.0, 0, active=True)
    assert executor.request_scale(10.0, 4, active=True).replicas is None
    assert executor.last_active_at == 10.0
    # cooldown now counts from t=10
    assert executor.request_scale(20.0, 4, active=False).replicas is None
    assert executor.request_scale(25.5, 4, active=False).replicas == 0


def test_scale_to_zero_only_after_the_cooldown() -> None:
    executor = ScaleExecutor(ScaledObjectSpec(cooldown_period_seconds=15))
    executor.request_scale(0.0, 0, active=True)
    for t in (2.0, 8.0, 15.0):
        assert executor.request_scale(t, 1, active=False).replicas is None
        assert executor.cooldown_left(t, 1) == 15.0 - t
    assert executor.request_scale(15.01, 1, active=False).replicas == 0


def test_never_seen_active_scales_to_zero_at_once() -> None:
    executor = ScaleExecutor(ScaledObjectSpec(cooldown_period_seconds=300))
    assert executor.request_scale(0.0, 2, active=False).replicas == 0


def test_min_replica_count_is_never_undercut() -> None:
    executor = ScaleExecutor(ScaledObjectSpec(min_replica_count=2, cooldown_period_seconds=1))
    executor.request_scale(0.0, 0, active=True)
    assert executor.request_scale(100.0, 2, active=False).replicas is None
    assert executor.request_scale(101.0, 1, active=False).replicas == 2
    assert executor.cooldown_left(100.0, 2) is None


def test_hpa_min_replicas_is_at_least_one() -> None:
    assert ScaledObjectSpec(min_replica_count=0).hpa_min_replicas == 1
    assert ScaledObjectSpec(min_replica_count=4, max_replica_count=5).hpa_min_replicas == 4


def test_stream_backoff_doubles_to_a_minute_and_resets() -> None:
    backoff = stream_backoff()
    assert [backoff.next_delay() for _ in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    backoff.reset()
    assert backoff.next_delay() == 2
