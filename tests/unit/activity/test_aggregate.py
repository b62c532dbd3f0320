"""The aggregation core, without a loop: reports in, per-backend metrics out."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pytest

from kedahttp.activity import codec
from kedahttp.activity.aggregate import IDLE, Aggregator
from kedahttp.activity.bus import MAX_WINDOW_SECONDS
from kedahttp.activity.model import BackendActivity, Report, WakeEvent
from tests.harness.activity_reports import INTERVAL, Request, quarter_seconds, reports_for

T0 = 1_700_000_000.0  # wall-clock seconds, on a whole second
APP = "default/app"
LAG = 0.5  # the aggregator reads windows ending floor(now - (interval + 0.25))


def fold_all(agg: Aggregator, reports: Iterable[Report], delay: float = 0.001) -> None:
    for report in reports:
        agg.fold(report, report.sent_at + delay)


def test_unknown_backend_reads_idle() -> None:
    agg = Aggregator()
    assert agg.metrics("default/nothing", T0) == IDLE
    assert IDLE.concurrency == 0.0 and IDLE.request_rate == 0.0 and not IDLE.active


def test_steady_concurrency_reads_exactly_at_any_moment() -> None:
    # 10 requests in flight for 20 s, reported every 0.25 s from a phase that straddles seconds.
    agg = Aggregator()
    requests = [Request(APP, T0 - 5, T0 + 30) for _ in range(10)]
    boundaries = quarter_seconds(T0 + 0.1, T0 + 20.1)
    for report in reports_for("p1", requests, boundaries):
        now = report.sent_at + 0.002
        agg.fold(report, now)
        if report.sent_at > T0 + 5:
            m = agg.metrics(APP, now)
            assert math.isclose(m.concurrency, 10.0, rel_tol=1e-9), (now - T0, m)
            assert m.in_flight == 10 and m.active


def test_one_millisecond_request_counts() -> None:
    agg = Aggregator(concurrency_window_seconds=3)
    requests = [Request(APP, T0 + 1.5, T0 + 1.501)]
    fold_all(agg, reports_for("p1", requests, quarter_seconds(T0, T0 + 3)))
    m = agg.metrics(APP, T0 + 3 + LAG, rate_window_seconds=3)
    assert math.isclose(m.concurrency, (requests[0].end - requests[0].start) / 3)  # 0.001 s, give or take
    assert math.isclose(m.request_rate, 1 / 3)
    assert m.active and m.last_request_at == T0 + 1.5


def test_idle_backend_reads_exactly_zero_and_inactive() -> None:
    agg = Aggregator()
    requests = [Request(APP, T0 + 0.3, T0 + 0.9) for _ in range(7)]
    fold_all(agg, reports_for("p1", requests, quarter_seconds(T0, T0 + 200)))
    m = agg.metrics(APP, T0 + 200, rate_window_seconds=60, activity_window_seconds=60)
    assert m.concurrency == 0.0 and m.request_rate == 0.0
    assert not m.active and m.in_flight == 0 and m.held == 0


@pytest.mark.parametrize("window", [1, 60, 600])
def test_one_request_after_an_hour_idle_is_active_at_once(window: int) -> None:
    agg = Aggregator()
    fold_all(agg, reports_for("p1", [Request(APP, T0, T0 + 0.01)], quarter_seconds(T0, T0 + 1)))
    later = T0 + 3600
    assert not agg.is_active(APP, later, window)
    touched = agg.fold(WakeEvent(APP, "p1", later), later + 0.001)
    assert touched == (APP,)
    assert agg.is_active(APP, later + 0.002, window)
    assert agg.metrics(APP, later + 0.002, activity_window_seconds=window).active


def test_request_in_a_report_makes_active_without_a_wake() -> None:
    agg = Aggregator()
    report = Report("p1", 1, T0 + 0.25, T0, INTERVAL, (BackendActivity(APP, started=1, completed=1,
                                                                     busy_seconds=0.002,
                                                                     last_request_at=T0 + 0.1),))
    assert agg.fold(report, T0 + 0.26) == [APP]
    assert agg.is_active(APP, T0 + 0.3, activity_window_seconds=1)
    assert not agg.is_active(APP, T0 + 1.2, activity_window_seconds=1)


def test_held_requests_count_as_load() -> None:
    # 30 requests held for longer than the averaging window: concurrency 30, so with
    # targetConcurrency 10 the HPA (AverageValue: ceil(sum / target)) asks for 3 replicas.
    agg = Aggregator(concurrency_window_seconds=3)
    for i, b in enumerate(quarter_seconds(T0 + 0.25, T0 + 10)):
        report = Report("p1", i + 1, b, b - 0.25, INTERVAL,
                        (BackendActivity(APP, held=30, started=30 if i == 0 else 0,
                                         busy_seconds=30 * 0.25, last_request_at=T0 + 0.1 if i == 0 else 0.0),))
        agg.fold(report, b + 0.001)
    m = agg.metrics(APP, T0 + 10.01)
    assert m.held == 30 and m.in_flight == 0 and m.active
    assert m.concurrency == 30.0
    assert math.ceil(m.concurrency / 10) == 3


def test_instances_add_up() -> None:
    agg = Aggregator()
    requests = [Request(APP, T0 - 1, T0 + 100)]
    boundaries = quarter_seconds(T0, T0 + 10)
    for name in ("p1", "p2", "p3"):
        fold_all(agg, reports_for(name, requests, boundaries))
    m = agg.metrics(APP, T0 + 10.01)
    assert m.in_flight == 3
    assert math.isclose(m.concurrency, 3.0)


def test_report_is_a_snapshot_a_missing_backend_drops_to_zero() -> None:
    agg = Aggregator()
    agg.fold(Report("p1", 1, T0 + 0.25, T0, INTERVAL, (BackendActivity(APP, in_flight=2, busy_seconds=0.5),)),
             T0 + 0.25)
    assert agg.metrics(APP, T0 + 0.3).in_flight == 2
    agg.fold(Report("p1", 2, T0 + 0.5, T0 + 0.25, INTERVAL, ()), T0 + 0.5)  # heartbeat: nothing busy
    assert agg.metrics(APP, T0 + 0.55).in_flight == 0


def test_silent_instance_expires_after_three_intervals_and_a_margin() -> None:
    agg = Aggregator()
    agg.fold(Report("p1", 1, T0, T0 - 0.25, INTERVAL, (BackendActivity(APP, in_flight=5, held=2),)), T0)
    agg.fold(Report("p2", 1, T0, T0 - 0.25, INTERVAL, (BackendActivity(APP, in_flight=1),)), T0)
    assert agg.metrics(APP, T0 + 1.2).in_flight == 6  # 3 x 0.25 + 0.5 = 1.25 s not yet passed
    agg.fold(Report("p2", 2, T0 + 1.0, T0, INTERVAL, (BackendActivity(APP, in_flight=1),)), T0 + 1.0)
    m = agg.metrics(APP, T0 + 1.3)
    assert (m.in_flight, m.held) == (1, 0)  # p1 expired, p2 still live
    assert agg.live_instances == 1 and agg.expired_instances == 1


def test_expiry_follows_each_instances_own_interval() -> None:
    agg = Aggregator()
    agg.fold(Report("slow", 1, T0, T0 - 2, 2.0, (BackendActivity(APP, in_flight=1),)), T0)
    assert agg.metrics(APP, T0 + 6.4).in_flight == 1
    assert agg.metrics(APP, T0 + 6.6).in_flight == 0


def test_replayed_report_of_a_dead_instance_does_not_count() -> None:
    agg = Aggregator()
    now = T0 + 300
    agg.fold(Report("dead", 9, T0, T0 - 0.25, INTERVAL, (BackendActivity(APP, in_flight=5, busy_seconds=1.25),)),
             now)
    m = agg.metrics(APP, now + 0.001)
    assert m.in_flight == 0 and not m.active


def test_a_clock_slightly_behind_is_not_expired_early() -> None:
    agg = Aggregator()
    now = T0 + 1.5  # the proxy's clock is 1.5 s behind ours
    agg.fold(Report("p1", 1, T0, T0 - 0.25, INTERVAL, (BackendActivity(APP, in_flight=4),)), now)
    assert agg.metrics(APP, now + 1.0).in_flight == 4


def test_duplicates_are_ignored() -> None:
    agg = Aggregator()
    reports = reports_for("p1", [Request(APP, T0 + 0.1, T0 + 0.6)], quarter_seconds(T0, T0 + 2))
    fold_all(agg, reports)
    once = agg.metrics(APP, T0 + 3)
    fold_all(agg, reports)  # a publisher re-sending a batch, or replay overlapping the live feed
    assert agg.metrics(APP, T0 + 3) == once
    assert agg.duplicates == len(reports)


def test_duplicates_of_an_expired_instance_are_still_ignored() -> None:
    agg = Aggregator()
    reports = reports_for("p1", [Request(APP, T0 + 0.1, T0 + 0.6)], quarter_seconds(T0, T0 + 2))
    fold_all(agg, reports)
    before = agg.metrics(APP, T0 + 30, rate_window_seconds=60)
    assert agg.live_instances == 0
    for report in reports:
        agg.fold(report, T0 + 30)
    assert agg.metrics(APP, T0 + 30, rate_window_seconds=60) == before
    agg.fold(Report("p1", len(reports) + 5, T0 + 30, T0 + 29.75, INTERVAL, ()), T0 + 30)
    assert agg.live_instances == 1 and agg.lost_reports == 4


def test_late_reports_land_in_the_seconds_they_cover() -> None:
    # A bus outage delivers 20 s of reports at once, 30 s late: the rate window (60 s) holds them,
    # the concurrency window (the last 3 s) does not.
    agg = Aggregator()
    requests = [Request(APP, T0 + k, T0 + k + 0.5) for k in range(20)]
    for report in reports_for("p1", requests, quarter_seconds(T0, T0 + 20)):
        agg.fold(report, T0 + 50)
    m = agg.metrics(APP, T0 + 50, rate_window_seconds=60)
    assert math.isclose(m.request_rate, 20 / 60)
    assert m.concurrency == 0.0


def test_future_timestamps_are_clamped_to_now() -> None:
    agg = Aggregator(concurrency_window_seconds=1)
    ahead = Report("p1", 1, T0 + 100, T0 + 99.75, INTERVAL,
                   (BackendActivity(APP, started=4, busy_seconds=0.25, last_request_at=T0 + 99.9),))
    agg.fold(ahead, T0 + 0.1)
    m = agg.metrics(APP, T0 + 1.6, rate_window_seconds=1)
    assert m.request_rate == 4.0
    assert m.last_request_at == T0 + 0.1


def test_concurrency_window_is_respected() -> None:
    agg = Aggregator(concurrency_window_seconds=10)
    requests = [Request(APP, T0 + 1, T0 + 6) for _ in range(4)]  # 4 busy for 5 s: area 20
    fold_all(agg, reports_for("p1", requests, quarter_seconds(T0, T0 + 12)))
    assert math.isclose(agg.metrics(APP, T0 + 11.6).concurrency, 2.0)


def test_window_bounds() -> None:
    agg = Aggregator()
    with pytest.raises(ValueError):
        agg.metrics(APP, T0, rate_window_seconds=MAX_WINDOW_SECONDS + 1)
    with pytest.raises(ValueError):
        agg.metrics(APP, T0, rate_window_seconds=0)
    with pytest.raises(ValueError):
        Aggregator(concurrency_window_seconds=0)


def test_a_600_second_rate_window_holds_all_its_history() -> None:
    agg = Aggregator()
    requests = [Request(APP, T0 + 2 * k, T0 + 2 * k + 0.1) for k in range(300)]  # one every 2 s for 600 s
    fold_all(agg, reports_for("p1", requests, quarter_seconds(T0, T0 + 601)))
    assert math.isclose(agg.metrics(APP, T0 + 600.6, rate_window_seconds=600).request_rate, 0.5)


def test_idle_state_is_freed() -> None:
    agg = Aggregator()
    fold_all(agg, reports_for("p1", [Request(APP, T0, T0 + 0.1)], quarter_seconds(T0, T0 + 1)))
    assert agg.backends == 1
    agg.expire(T0 + 700)
    assert agg.backends == 0 and agg.live_instances == 0
    assert agg.known_instances == 1  # its last sequence number is kept while replays may repeat it
    assert agg.metrics(APP, T0 + 700) == IDLE
    agg.expire(T0 + 1400)
    assert agg.known_instances == 0


def test_decoded_protobuf_messages_fold_like_the_model() -> None:
    reports = reports_for("p1", [Request(APP, T0 + 0.3, T0 + 2.2)] * 3, quarter_seconds(T0, T0 + 4))
    plain, wire = Aggregator(), Aggregator()
    for report in reports:
        assert plain.fold(report, report.sent_at) == wire.fold(codec.decode(codec.encode_report(report)),
                                                               report.sent_at)
    wake = WakeEvent(APP, "p1", T0 + 5)
    assert wire.fold(codec.decode(codec.encode_wake(wake)), T0 + 5) == (APP,)
    plain.fold(wake, T0 + 5)
    assert plain.metrics(APP, T0 + 5.6, rate_window_seconds=5) == wire.metrics(APP, T0 + 5.6, rate_window_seconds=5)
