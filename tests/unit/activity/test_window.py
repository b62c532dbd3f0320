"""The ring of cumulative sums: window sums are exact, late values land in their seconds, idle reads 0."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from kedahttp.activity.window import CumulativeRing

T0 = 1_700_000_000  # a wall-clock second


def brute_window(points: dict[int, float], end: int, seconds: int) -> float:
    return sum(v for s, v in points.items() if end - seconds <= s < end)


def test_empty_ring_reads_exactly_zero() -> None:
    ring = CumulativeRing(10, T0)
    assert ring.window(T0 + 1, 5) == 0.0
    assert ring.window(T0 + 1000, 5) == 0.0


def test_window_covers_whole_seconds_before_end() -> None:
    ring = CumulativeRing(10, T0)
    ring.add(T0, 1.0)
    ring.add(T0 + 1, 2.0)
    ring.add(T0 + 3, 4.0)
    assert ring.window(T0 + 4, 4) == 7.0  # seconds T0..T0+3
    assert ring.window(T0 + 3, 2) == 2.0  # seconds T0+1, T0+2
    assert ring.window(T0 + 4, 1) == 4.0
    assert ring.window(T0 + 3, 1) == 0.0


def test_a_window_after_activity_stopped_reads_exactly_zero() -> None:
    ring = CumulativeRing(10, T0)
    ring.add(T0, 0.1)
    ring.add(T0 + 1, 0.2)
    assert ring.window(T0 + 8, 5) == 0.0  # seconds T0+3..T0+7: nothing there, no float residue
    assert ring.window(T0 + 500, 5) == 0.0


def test_late_value_lands_in_its_second() -> None:
    ring = CumulativeRing(10, T0)
    ring.add(T0 + 5, 1.0)
    ring.add(T0 + 2, 3.0)  # arrives after a newer second was filled
    assert ring.window(T0 + 3, 1) == 3.0
    assert ring.window(T0 + 6, 6) == 4.0
    assert ring.window(T0 + 6, 3) == 1.0


def test_value_older_than_the_ring_stays_out_of_every_window_it_holds() -> None:
    ring = CumulativeRing(4, T0)
    ring.add(T0 + 10, 1.0)
    ring.add(T0, 5.0)  # far older than the 4 seconds kept
    assert ring.window(T0 + 11, 3) == 1.0  # T0+8..T0+10
    assert ring.window(T0 + 11, 4) == 1.0  # T0+7..T0+10: starts at the value kept before the oldest slot


def test_spread_splits_by_overlap() -> None:
    ring = CumulativeRing(10, T0)
    ring.spread(T0 + 0.5, T0 + 2.5, 4.0)  # half a second, a whole one, half a second
    assert math.isclose(ring.window(T0 + 1, 1), 1.0)
    assert math.isclose(ring.window(T0 + 2, 1), 2.0)
    assert math.isclose(ring.window(T0 + 3, 1), 1.0)
    assert ring.window(T0 + 3, 3) == 4.0  # the total is exact


def test_spread_with_integral_end_belongs_to_the_second_before() -> None:
    ring = CumulativeRing(10, T0)
    ring.spread(T0 + 0.75, T0 + 1.0, 1.0)
    assert ring.window(T0 + 1, 1) == 1.0
    assert ring.window(T0 + 2, 1) == 0.0


def test_zero_length_interval_goes_to_its_second() -> None:
    ring = CumulativeRing(10, T0)
    ring.spread(T0 + 3.2, T0 + 3.2, 2.0)
    assert ring.window(T0 + 4, 1) == 2.0


def test_long_idle_gap_refills_and_expires() -> None:
    ring = CumulativeRing(5, T0)
    ring.add(T0, 1.0)
    assert not ring.expired(T0 + 4)
    assert ring.expired(T0 + 5)
    ring.add(T0 + 100, 2.0)
    assert ring.window(T0 + 101, 5) == 2.0
    assert ring.window(T0 + 100, 4) == 0.0


@given(
    adds=st.lists(
        st.tuples(st.integers(0, 40), st.floats(0.0, 100.0, allow_nan=False)),
        max_size=40,
    ),
    end=st.integers(0, 45),
    seconds=st.integers(1, 8),
)
def test_window_equals_the_sum_of_its_seconds(adds: list[tuple[int, float]], end: int, seconds: int) -> None:
    capacity = 12
    ring = CumulativeRing(capacity, T0)
    points: dict[int, float] = {}
    newest = T0
    for offset, value in adds:
        second = T0 + offset
        newest = max(newest, second)
        ring.add(second, value)
        points[second] = points.get(second, 0.0) + value
    read_end = max(T0 + end, newest - capacity + seconds + 1)  # windows the ring can answer
    got = ring.window(read_end, seconds)
    assert got >= 0.0
    assert math.isclose(got, brute_window(points, read_end, seconds), rel_tol=1e-9, abs_tol=1e-9)


def brute_spread(points: dict[int, float], start: float, end: float, amount: float) -> None:
    span = end - start
    if span <= 0:
        second = math.floor(end)
        points[second] = points.get(second, 0.0) + amount
        return
    for second in range(math.floor(start), math.ceil(end)):
        share = max(0.0, min(end, second + 1) - max(start, second)) / span
        points[second] = points.get(second, 0.0) + amount * share


@given(
    spreads=st.lists(
        st.tuples(st.floats(0.0, 40.0), st.floats(0.0, 6.0), st.floats(0.0, 50.0, allow_nan=False)),
        max_size=25,
    ),
    end=st.integers(0, 50),
    seconds=st.integers(1, 8),
)
def test_spread_matches_exact_overlap_shares(spreads: list[tuple[float, float, float]], end: int, seconds: int) -> None:
    capacity = 12
    ring = CumulativeRing(capacity, T0)
    points: dict[int, float] = {}
    for start, length, amount in spreads:
        ring.spread(T0 + start, T0 + start + length, amount)
        brute_spread(points, T0 + start, T0 + start + length, amount)
    read_end = max(T0 + end, ring.head - capacity + seconds + 1)
    got = ring.window(read_end, seconds)
    assert got >= 0.0
    assert math.isclose(got, brute_window(points, read_end, seconds), rel_tol=1e-9, abs_tol=1e-7)
    assert math.isclose(ring.total - ring.base, sum(v for s, v in points.items() if s > ring.head - capacity),
                        rel_tol=1e-9, abs_tol=1e-7)
