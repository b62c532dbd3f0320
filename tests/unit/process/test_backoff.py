"""The one backoff rule: doubling to a cap, reset after a success, jitter within its range."""

from __future__ import annotations

import pytest

from kedahttp.process.backoff import Backoff


def test_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 15.0)
    assert [backoff.next_delay() for _ in range(8)] == [0.5, 1, 2, 4, 8, 15, 15, 15]
    backoff.reset()
    assert backoff.delay_seconds == 0.5
    assert backoff.next_delay() == 0.5
    assert backoff.delay_seconds == 1.0


def test_jitter_scales_each_delay_by_a_factor_drawn_from_its_range() -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return high if len(drawn) % 2 else low

    backoff = Backoff(0.1, 1.0, jitter=(0.5, 1.0), uniform=uniform)
    assert [round(backoff.next_delay(), 6) for _ in range(5)] == [0.1, 0.1, 0.4, 0.4, 1.0]
    assert drawn == [(0.5, 1.0)] * 5
    assert backoff.next_delay(jitter=False) == 1.0  # the base delay, no draw
    assert len(drawn) == 5


def test_real_jitter_stays_in_range() -> None:
    backoff = Backoff(1.0, 1.0, jitter=(0.8, 1.2))
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert len(set(delays)) > 1


def test_without_jitter_no_random_draw_is_made() -> None:
    def uniform(low: float, high: float) -> float:
        raise AssertionError("drew a random number without jitter")

    assert Backoff(2.0, 60.0, uniform=uniform).next_delay() == 2.0


@pytest.mark.parametrize(("initial", "maximum", "jitter"), [
    (0.0, 1.0, (1.0, 1.0)),
    (2.0, 1.0, (1.0, 1.0)),
    (0.1, 1.0, (1.0, 0.5)),
    (0.1, 1.0, (-0.1, 1.0)),
])
def test_bad_numbers_are_named(initial: float, maximum: float, jitter: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial, maximum, jitter=jitter)
