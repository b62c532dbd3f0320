"""The adaptive keep-alive's pure core: what it learns from folded activity and what IsActive it answers."""

from __future__ import annotations

import pytest

from kedahttp.activity.aggregate import Aggregator
from kedahttp.activity.model import BackendActivity, Report, WakeEvent
from kedahttp.scaler import keepalive
from kedahttp.scaler.keepalive import KeepAlive, Window, window_for
from kedahttp.scaler.metrics import InvalidArgument, parse_trigger

T0 = 1_700_000_000.0 - 1_700_000_000.0 % 60  # a minute boundary
APP = "ns/app"


def request_at(ka: KeepAlive, at: float, backend: str = APP) -> None:
    ka.observe(Report("p1", 1, at + 0.25, at, 0.25, (BackendActivity(backend, started=1, completed=1,
                                                                     last_request_at=at),)), at + 0.25)


def periodic(ka: KeepAlive, every_minutes: int, times: int, start: float = T0) -> float:
    at = start
    for _ in range(times):
        request_at(ka, at)
        at += every_minutes * 60
    return at - every_minutes * 60  # the last request


def test_window_needs_enough_concentrated_gaps() -> None:
    assert window_for([15] * (keepalive.MIN_GAPS - 1)) is None
    assert window_for([15] * keepalive.MIN_GAPS) == Window((15 - 1) * 60 * 0.9, (15 + 1) * 60 * 1.1)
    assert window_for(range(2, 200)) is None  # flat: the coefficient of variation of the bins is low
    assert window_for([300] * 10 + [15] * 5) is None  # mostly beyond the 4-hour range


def test_short_head_keeps_the_app_up_instead_of_releasing_it() -> None:
    window = window_for([2, 2, 3, 2, 2, 3])
    assert window is not None and window.prewarm_seconds == 0.0 and window.keep_seconds == (3 + 1) * 60 * 1.1


def test_a_15_minute_timer_is_released_then_prewarmed_before_its_next_call() -> None:
    ka = KeepAlive()
    ka.set_adaptive(APP, True)
    agg = Aggregator()
    last = periodic(ka, 15, 8)
    assert ka.window(APP) == Window(14 * 60 * 0.9, 16 * 60 * 1.1)
    assert ka.is_active(agg, APP, last + 30, 600) is True  # within the burst's minute
    assert ka.is_active(agg, APP, last + 61, 600) is False  # let go once the burst is over
    assert ka.is_active(agg, APP, last + 14 * 60 * 0.9 + 1, 600) is True  # pre-warmed before the head
    assert ka.is_active(agg, APP, last + 16 * 60 * 1.1 + 1, 600) is False  # and let go after the tail
    assert ka.next_change(APP, last + 30, 600) == last + 60
    assert ka.next_change(APP, last + 61, 600) == last + 14 * 60 * 0.9


def test_fallback_is_the_activity_window_until_the_histogram_is_representative() -> None:
    ka = KeepAlive()
    ka.set_adaptive(APP, True)
    last = periodic(ka, 15, 3)
    assert ka.window(APP) is None
    assert ka.is_active(Aggregator(), APP, last + 599, 600) is True
    assert ka.is_active(Aggregator(), APP, last + 601, 600) is False


def test_not_opted_in_answers_exactly_what_the_aggregator_answers() -> None:
    ka = KeepAlive()
    agg = Aggregator()
    report = Report("p1", 1, T0 + 0.25, T0, 0.25, (BackendActivity(APP, started=1, last_request_at=T0),))
    agg.fold(report, T0 + 0.25)
    periodic(ka, 15, 8, start=T0 - 8 * 15 * 60)
    for now in (T0 + 1, T0 + 59, T0 + 61, T0 + 900):
        assert ka.is_active(agg, APP, now, 60) == agg.is_active(APP, now, 60)


def test_in_flight_work_is_active_whatever_the_histogram_says() -> None:
    ka = KeepAlive()
    ka.set_adaptive(APP, True)
    last = periodic(ka, 15, 8)
    agg = Aggregator()
    agg.fold(Report("p1", 1, last + 60, last + 59.75, 0.25, (BackendActivity(APP, in_flight=1),)), last + 60)
    assert ka.is_active(agg, APP, last + 60, 600) is True


def test_replaying_history_over_a_restored_snapshot_counts_nothing_twice() -> None:
    first = KeepAlive()
    periodic(first, 10, 10)
    restored = KeepAlive()
    for backend, text in first.take_dirty():
        restored.restore(backend, text)
    periodic(restored, 10, 10)  # the bus replays what the snapshot already holds
    assert restored.snapshot(APP) == first.snapshot(APP)
    wake = WakeEvent(APP, "p1", T0 + 10 * 10 * 60)
    first.observe(wake, wake.at)
    restored.observe(wake, wake.at)
    assert restored.snapshot(APP) == first.snapshot(APP)
    assert restored.window(APP) == first.window(APP) is not None


def test_a_backend_idle_for_a_week_is_forgotten_and_starts_afresh() -> None:
    ka = KeepAlive()
    last = periodic(ka, 10, 10)
    request_at(ka, T0, backend="ns/other")
    ka.set_adaptive(APP, True)
    ka.take_dirty()
    week_after = last + keepalive.FORGET_AFTER_SECONDS
    request_at(ka, week_after - 60, backend="ns/other")  # the other app stayed busy
    assert ka.forget_idle(week_after - 1) == []  # not quite a week
    assert ka.forget_idle(week_after + 1) == [APP]
    assert ka.window(APP) is None and ka.last_activity(APP) == 0.0 and ka.backends == 1
    assert not ka.is_active(Aggregator(), APP, week_after + 1, 60.0)
    assert all(backend != APP for backend, _ in ka.take_dirty())  # nothing left to save for it
    request_at(ka, week_after + 120)  # back: a fresh model, no gap across the forgotten week
    assert ka.last_activity(APP) == week_after + 120 and '"gaps":[]' in ka.snapshot(APP)


def test_bad_snapshot_is_an_error_naming_the_backend() -> None:
    with pytest.raises(ValueError, match=APP):
        KeepAlive().restore(APP, '{"v": 1, "gaps": 3}')


def test_trigger_key_parses_and_rejects_unknown_values() -> None:
    assert parse_trigger("ns", "app", {}).adaptive_keep_alive is False
    assert parse_trigger("ns", "app", {"keepAlive": "adaptive"}).adaptive_keep_alive is True
    with pytest.raises(InvalidArgument, match="keepAlive"):
        parse_trigger("ns", "app", {"keepAlive": "smart"})
