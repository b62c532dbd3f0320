"""The HPA arithmetic the emulator imitates: tolerance, AverageValue, several metrics, min/max,
scale-up limits, scale-down stabilization and rate policies, driven with fake time."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kedahttp.dev.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Hpa,
    HpaSpec,
    MetricReading,
    Policy,
    Rules,
    average_value_replicas,
    metrics_proposal,
)

UNLIMITED = Rules(0.0, (Policy("Percent", 100000, 1.0),))


def concurrency(total: float | None, target: float = 10.0) -> list[MetricReading]:
    return [MetricReading("concurrency", target, total)]


class TestAverageValue:
    def test_desired_is_ceil_of_total_over_target(self) -> None:
        # 3 replicas, total 25 against 10 per replica: ratio 0.83, outside tolerance -> ceil(2.5)
        assert average_value_replicas(25, 10, 3, 0.1) == 3
        assert average_value_replicas(41, 10, 3, 0.1) == 5
        assert average_value_replicas(9, 10, 3, 0.1) == 1

    def test_ratio_divides_the_total_by_existing_replicas(self) -> None:
        # total 40, target 10: at 4 replicas the ratio is 1.0 (keep), at 2 replicas it is 2.0 (-> 4)
        assert average_value_replicas(40, 10, 4, 0.1) == 4
        assert average_value_replicas(40, 10, 2, 0.1) == 4

    def test_within_tolerance_keeps_the_current_count(self) -> None:
        # ratio 1.05 and 0.95 are inside 10 %: keep 4 even though ceil(42/10) == 5
        assert average_value_replicas(42, 10, 4, 0.1) == 4
        assert average_value_replicas(38, 10, 4, 0.1) == 4
        # ratio 1.15: outside, -> ceil(4.6)
        assert average_value_replicas(46, 10, 4, 0.1) == 5
        # a zero tolerance acts on any difference
        assert average_value_replicas(42, 10, 4, 0.0) == 5

    def test_no_existing_replicas(self) -> None:
        assert average_value_replicas(25, 10, 0, 0.1) == 3
        assert average_value_replicas(0, 10, 0, 0.1) == 0

    def test_milli_units(self) -> None:
        # KEDA truncates the value to milli-units: 0.0009 is 0, 0.001 is one milli-unit
        assert average_value_replicas(0.0009, 1, 2, 0.1) == 0
        assert average_value_replicas(0.001, 1, 2, 0.1) == 1
        # fractional targets: 0.3 per replica, 0.9 total -> exactly 3, no float ceil surprise
        assert average_value_replicas(0.9, 0.3, 1, 0.1) == 3


class TestSeveralMetrics:
    def test_largest_proposal_wins(self) -> None:
        readings = [MetricReading("concurrency", 10, 35), MetricReading("rate", 5, 12)]
        assert metrics_proposal(readings, 2, 2, 0.1) == (4, "concurrency")
        readings = [MetricReading("concurrency", 10, 5), MetricReading("rate", 5, 30)]
        assert metrics_proposal(readings, 2, 2, 0.1) == (6, "rate")

    def test_a_failed_metric_blocks_scale_down_but_not_scale_up(self) -> None:
        down = [MetricReading("concurrency", 10, 5), MetricReading("rate", 5, None)]
        assert metrics_proposal(down, 3, 3, 0.1) is None
        up = [MetricReading("concurrency", 10, 50), MetricReading("rate", 5, None)]
        assert metrics_proposal(up, 3, 3, 0.1) == (5, "concurrency")

    def test_all_failed_means_no_proposal(self) -> None:
        assert metrics_proposal(concurrency(None), 3, 3, 0.1) is None
        assert metrics_proposal([], 3, 3, 0.1) is None


class TestSync:
    def test_zero_replicas_is_left_to_keda(self) -> None:
        hpa = Hpa(HpaSpec(min_replicas=1, max_replicas=10))
        decision = hpa.sync(0.0, 0, 0, concurrency(500))
        assert (decision.desired, decision.rescale) == (0, False)
        assert "ScalingDisabled" in decision.reason

    def test_out_of_range_counts_are_corrected_without_metrics(self) -> None:
        hpa = Hpa(HpaSpec(min_replicas=2, max_replicas=5))
        assert hpa.sync(0.0, 8, 8, concurrency(None)).desired == 5
        assert hpa.sync(1.0, 1, 1, concurrency(None)).desired == 2

    def test_max_replicas_caps_the_proposal(self) -> None:
        hpa = Hpa(HpaSpec(min_replicas=1, max_replicas=3, scale_up=UNLIMITED))
        decision = hpa.sync(0.0, 1, 1, concurrency(100))
        assert (decision.desired, decision.proposal) == (3, 10)
        assert "maxReplicas" in decision.reason

    def test_min_replicas_floors_the_proposal(self) -> None:
        hpa = Hpa(HpaSpec(min_replicas=2, max_replicas=10, scale_down=UNLIMITED))
        assert hpa.sync(0.0, 6, 6, concurrency(0)).desired == 2

    def test_within_tolerance_no_rescale(self) -> None:
        hpa = Hpa(HpaSpec(max_replicas=10))
        decision = hpa.sync(0.0, 4, 4, concurrency(42))
        assert (decision.desired, decision.rescale) == (4, False)

    def test_failed_metric_keeps_replicas(self) -> None:
        hpa = Hpa(HpaSpec(max_replicas=10, scale_down=UNLIMITED))
        decision = hpa.sync(0.0, 4, 4, concurrency(None))
        assert (decision.desired, decision.rescale) == (4, False)

    def test_default_scale_up_limit_is_4_pods_or_100_percent_per_15s(self) -> None:
        hpa = Hpa(HpaSpec(max_replicas=100))  # default behavior
        assert hpa.sync(0.0, 1, 1, concurrency(1000)).desired == 5  # max(1+4, 2*1)
        # within the same 15 s period the 4 pods already added count against the limit
        assert hpa.sync(3.0, 5, 5, concurrency(1000)).desired == 5
        assert hpa.sync(14.9, 5, 5, concurrency(1000)).desired == 5
        # a new period: from 5, max(5+4, 2*5) = 10
        assert hpa.sync(15.1, 5, 5, concurrency(1000)).desired == 10
        # and from 10: 100 % wins over 4 pods
        assert hpa.sync(30.2, 10, 10, concurrency(1000)).desired == 20

    def test_select_policy_min_takes_the_smaller_step(self) -> None:
        rules = Rules(0.0, DEFAULT_SCALE_UP.policies, select_policy="Min")
        hpa = Hpa(HpaSpec(max_replicas=100, scale_up=rules))
        assert hpa.sync(0.0, 10, 10, concurrency(1000)).desired == 14  # min(10+4, 20)

    def test_disabled_direction_never_moves(self) -> None:
        hpa = Hpa(HpaSpec(max_replicas=100, scale_up=Rules(0.0, (), select_policy="Disabled")))
        assert hpa.sync(0.0, 3, 3, concurrency(1000)).desired == 3

    def test_scale_down_waits_for_the_stabilization_window(self) -> None:
        down = Rules(10.0, DEFAULT_SCALE_DOWN.policies)
        hpa = Hpa(HpaSpec(max_replicas=10, scale_down=down))
        assert hpa.sync(0.0, 5, 5, concurrency(50)).desired == 5
        for t in (3.0, 6.0, 9.0):  # the 5 recommended at t=0 is still in the window
            decision = hpa.sync(t, 5, 5, concurrency(5))
            assert (decision.desired, decision.proposal) == (5, 1)
            assert "stabilization" in decision.reason
        decision = hpa.sync(12.0, 5, 5, concurrency(5))  # t=0 is now out of the window
        assert (decision.desired, decision.rescale) == (1, True)

    def test_stabilization_takes_the_highest_recent_recommendation(self) -> None:
        hpa = Hpa(HpaSpec(max_replicas=10, scale_down=Rules(10.0, DEFAULT_SCALE_DOWN.policies)))
        hpa.sync(0.0, 6, 6, concurrency(60))  # 6
        hpa.sync(4.0, 6, 6, concurrency(40))  # 4
        hpa.sync(8.0, 6, 6, concurrency(20))  # 2
        assert hpa.sync(10.5, 6, 6, concurrency(10)).desired == 4  # max(4, 2, 1) of (0.5, 10.5]
        assert hpa.sync(14.5, 4, 4, concurrency(10)).desired == 2

    def test_scale_down_rate_policy(self) -> None:
        down = Rules(0.0, (Policy("Pods", 1, 10.0),))
        hpa = Hpa(HpaSpec(max_replicas=10, scale_down=down))
        assert hpa.sync(0.0, 5, 5, concurrency(0)).desired == 4
        assert hpa.sync(3.0, 4, 4, concurrency(0)).desired == 4  # one pod per 10 s already used
        assert hpa.sync(10.5, 4, 4, concurrency(0)).desired == 3

    def test_percent_scale_down_truncates(self) -> None:
        down = Rules(0.0, (Policy("Percent", 50, 15.0),))
        hpa = Hpa(HpaSpec(max_replicas=10, scale_down=down))
        assert hpa.sync(0.0, 5, 5, concurrency(0)).desired == 2  # int(5 * 0.5)


@given(
    current=st.integers(1, 30),
    total=st.floats(0, 5000, allow_nan=False),
    target=st.floats(0.5, 200, allow_nan=False),
    max_replicas=st.integers(1, 50),
)
def test_without_windows_or_limits_the_hpa_lands_on_ceil_total_over_target(
    current: int, total: float, target: float, max_replicas: int
) -> None:
    current = min(current, max_replicas)
    hpa = Hpa(HpaSpec(min_replicas=1, max_replicas=max_replicas, scale_up=UNLIMITED, scale_down=UNLIMITED))
    decision = hpa.sync(0.0, current, current, concurrency(total, target))
    wanted = math.ceil(int(total * 1000) / int(target * 1000))
    ratio = int(total * 1000) / (int(target * 1000) * current)
    expected = current if abs(1 - ratio) <= 0.1 else wanted
    assert decision.desired == min(max(expected, 1), max_replicas)
    assert 1 <= decision.desired <= max_replicas


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValueError):
        HpaSpec(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError):
        Policy("Replicas", 1, 15)
    with pytest.raises(ValueError):
        Rules(0, (), select_policy="Sometimes")
