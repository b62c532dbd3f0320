"""Counters and reports: exact busy_seconds with one clock read per event, deltas, idle backends left out."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kedahttp.proxy.counters import (
    COLD_WAIT_BUCKETS,
    DURATION_BUCKETS,
    CounterRegistry,
    bucket,
    sum_snapshots,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@settings(max_examples=200, deadline=None)
@given(
    requests=st.lists(st.tuples(st.floats(0, 10), st.floats(0, 5)), max_size=30),
    report_times=st.lists(st.floats(0, 20), max_size=10),
)
def test_busy_seconds_is_the_exact_integral_of_active_requests(
    requests: list[tuple[float, float]], report_times: list[float]
) -> None:
    clock = Clock()
    wall = Clock()
    reg = CounterRegistry("i", clock=clock, wall_clock=wall)  # interval starts at t=1000
    c = reg.for_backend("ns/a")
    events = []
    for start, length in requests:
        events.append((1000 + start, "start"))
        events.append((1000 + start + length, "end"))
    events += [(1000 + t, "report") for t in report_times]
    events.append((1030.0, "report"))  # after everything ended
    # at equal times: starts, then ends, then reports (any order is exact; this keeps counts simple)
    order = {"start": 0, "end": 1, "report": 2}
    total = 0.0
    for t, kind in sorted(events, key=lambda e: (e[0], order[e[1]])):
        clock.t = t
        if kind == "start":
            c.start(t)
        elif kind == "end":
            c.finish(t, t, 200)
        else:
            report = reg.build_report()
            total += sum(b.busy_seconds for b in report.backends)
    expected = sum(length for _, length in requests)
    assert abs(total - expected) < 1e-6
    assert c.in_flight == 0


def test_report_carries_deltas_point_values_and_skips_idle_backends() -> None:
    clock = Clock()
    reg = CounterRegistry("proxy-1", clock=clock, wall_clock=lambda: 5000.0 + clock.t)
    a = reg.for_backend("ns/a")
    reg.for_backend("ns/idle")
    a.start(1000.0)
    a.start(1000.5)
    clock.t = 1001.0
    a.finish(1001.0, 1000.0, 200)
    report = reg.build_report()
    assert report.instance == "proxy-1" and report.seq == 1
    assert report.interval_seconds == 1.0
    [b] = report.backends
    assert (b.backend, b.in_flight, b.held, b.started, b.completed) == ("ns/a", 1, 0, 2, 1)
    assert b.busy_seconds == 1.5
    assert b.last_request_at == 6000.5
    clock.t = 1002.0
    a.finish(1002.0, 1000.5, 503)
    report = reg.build_report()
    [b] = report.backends
    assert (b.in_flight, b.started, b.completed, b.busy_seconds) == (0, 0, 1, 1.0)
    clock.t = 1003.0
    report = reg.build_report()
    assert report.seq == 3 and report.backends == ()  # the heartbeat
    assert a.by_class[2] == 1 and a.by_class[5] == 1


def test_held_requests_count_as_active_and_removed_backends_are_dropped_once_idle() -> None:
    clock = Clock()
    reg = CounterRegistry("p", clock=clock)
    a = reg.for_backend("ns/a")
    a.start(1000.0)
    a.hold()
    reg.mark_removed("ns/a")
    clock.t = 1002.0
    [b] = reg.build_report().backends
    assert (b.held, b.in_flight, b.busy_seconds) == (1, 0, 2.0)
    a.finish(1002.0, 1000.0, 404, held=True)
    clock.t = 1003.0
    [b] = reg.build_report().backends
    assert b.completed == 1 and b.held == 0
    assert reg.build_report().backends == ()
    assert "ns/a" not in reg.backends


def test_snapshots_of_workers_add_up() -> None:
    one, two = CounterRegistry("1"), CounterRegistry("2")
    one.for_backend("ns/a").finish(1.0, 0.5, 200)
    two.for_backend("ns/a").finish(1.0, 0.0, 500)
    two.for_backend("ns/b").start(1.0)
    total = sum_snapshots([one.snapshot(), two.snapshot()])
    assert total["ns/a"]["by_class"] == [0, 0, 1, 0, 0, 1]
    assert total["ns/a"]["duration_sum"] == 1.5
    assert total["ns/b"]["started"] == 1


@given(st.floats(0, 1000))
def test_buckets_are_bisect_left_over_the_bounds(value: float) -> None:
    # the compiled loop that replaced bisect on the hot path; the bounds mix ints and floats
    from bisect import bisect_left

    for bounds in (DURATION_BUCKETS, COLD_WAIT_BUCKETS):
        assert bucket(bounds, value) == bisect_left(bounds, value)
    for bound in (*DURATION_BUCKETS, *COLD_WAIT_BUCKETS):
        assert bucket(DURATION_BUCKETS, float(bound)) == bisect_left(DURATION_BUCKETS, bound)
