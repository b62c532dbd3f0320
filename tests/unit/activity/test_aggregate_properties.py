"""Property tests of the window math: for random requests cut into random reports, the windows read what an
exact integral over the requests says, whatever the folding order across instances and whatever is re-sent."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from kedahttp.activity.aggregate import Aggregator
from kedahttp.activity.model import Report
from tests.harness.activity_reports import Request, quarter_seconds, reports_for

T0 = 1024.0  # a small wall clock keeps float error far below the tolerances
SPAN = 25.0
BACKENDS = ("ns/a", "ns/b")
TOL = 1e-9

requests_st = st.lists(
    st.builds(
        lambda b, start, duration: Request(BACKENDS[b], T0 + start, T0 + start + duration),
        st.integers(0, len(BACKENDS) - 1),
        st.floats(0.0, SPAN - 0.01),
        st.sampled_from([0.001, 0.01, 0.2, 0.7, 1.0, 2.5, 7.0, 30.0]),
    ),
    max_size=30,
)


def overlap(r: Request, a: float, b: float) -> float:
    return max(0.0, min(r.end, b) - max(r.start, a))


def folded(reports: list[Report], concurrency_window_seconds: float = 20) -> Aggregator:
    agg = Aggregator(concurrency_window_seconds=concurrency_window_seconds)
    for report in reports:
        agg.fold(report, report.sent_at + 0.001)
    return agg


@settings(max_examples=150, deadline=None)
@given(requests=requests_st, end=st.integers(4, int(SPAN)), window=st.integers(1, 8),
       rate_window=st.integers(1, 30))
def test_windows_equal_the_exact_integral_when_reports_align_with_seconds(
    requests: list[Request], end: int, window: int, rate_window: int
) -> None:
    # Reports every 0.25 s from a whole second never straddle a second: every window is exact.
    e = T0 + end
    now = e + 0.5  # lag 0.5: windows end at e
    reports = reports_for("p1", requests, quarter_seconds(T0, T0 + SPAN))
    agg = folded([r for r in reports if r.sent_at < now], concurrency_window_seconds=window)
    for backend in BACKENDS:
        mine = [r for r in requests if r.backend == backend]
        m = agg.metrics(backend, now, rate_window_seconds=rate_window)
        area = sum(overlap(r, e - window, e) for r in mine)
        count = sum(1 for r in mine if e - rate_window <= r.start < e)
        assert math.isclose(m.concurrency, area / window, rel_tol=1e-9, abs_tol=TOL)
        assert math.isclose(m.request_rate, count / rate_window, rel_tol=1e-9, abs_tol=TOL)
        assert m.concurrency >= 0.0 and m.request_rate >= 0.0


@settings(max_examples=150, deadline=None)
@given(requests=requests_st, cuts=st.lists(st.floats(0.001, SPAN), min_size=1, max_size=40))
def test_nothing_is_lost_or_invented_with_reports_at_random_times(
    requests: list[Request], cuts: list[float]
) -> None:
    boundaries = sorted({T0, T0 + SPAN + 0.5, *(T0 + c for c in cuts)})
    agg = folded(reports_for("p1", requests, boundaries), concurrency_window_seconds=60)
    now = T0 + 59.5  # windows: the 60 whole seconds [T0 - 1, T0 + 59)
    for backend in BACKENDS:
        mine = [r for r in requests if r.backend == backend]
        m = agg.metrics(backend, now, rate_window_seconds=60)
        area = sum(overlap(r, T0, boundaries[-1]) for r in mine)
        assert math.isclose(m.concurrency * 60, area, rel_tol=1e-9, abs_tol=1e-7)
        assert math.isclose(m.request_rate * 60, len(mine), rel_tol=1e-9, abs_tol=1e-7)


def per_instance_reports(requests: list[Request], instances: int) -> list[list[Report]]:
    out = []
    for i in range(instances):
        mine = [r for k, r in enumerate(requests) if k % instances == i]
        out.append(reports_for(f"p{i}", mine, quarter_seconds(T0 + 0.1 * i, T0 + SPAN)))
    return out


def read_all(agg: Aggregator) -> list[tuple[float, ...]]:
    out = []
    for backend in BACKENDS:
        for window in (1, 10, 30):
            m = agg.metrics(backend, T0 + SPAN + 0.01, rate_window_seconds=window)
            out.append((m.concurrency, m.request_rate, m.in_flight, m.held, m.last_request_at))
    return out


def assert_same(a: list[tuple[float, ...]], b: list[tuple[float, ...]]) -> None:
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            assert math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-9), (x, y)


@settings(max_examples=60, deadline=None)
@given(requests=requests_st, seed=st.integers(0, 2**32 - 1))
def test_folding_order_across_instances_does_not_matter(requests: list[Request], seed: int) -> None:
    streams = per_instance_reports(requests, 3)
    now = T0 + SPAN + 0.01  # every fold sees the same clock; only the interleaving differs
    one_by_one = Aggregator(concurrency_window_seconds=20)
    for stream in streams:
        for report in stream:
            one_by_one.fold(report, now)
    interleaved = Aggregator(concurrency_window_seconds=20)
    rng = random.Random(seed)
    cursors = [0] * len(streams)
    while any(c < len(s) for c, s in zip(cursors, streams, strict=True)):
        i = rng.choice([k for k, s in enumerate(streams) if cursors[k] < len(s)])
        interleaved.fold(streams[i][cursors[i]], now)  # each instance's own order is kept, as on the bus
        cursors[i] += 1
    assert_same(read_all(one_by_one), read_all(interleaved))


@settings(max_examples=60, deadline=None)
@given(requests=requests_st, resend=st.lists(st.integers(0, 10_000), max_size=30), seed=st.integers(0, 99))
def test_resent_and_replayed_reports_are_ignored(requests: list[Request], resend: list[int], seed: int) -> None:
    stream = [r for s in per_instance_reports(requests, 2) for r in s]
    once = folded(stream)
    noisy = list(stream)
    rng = random.Random(seed)
    for k in resend:
        original = k % len(stream)
        at = rng.randint(noisy.index(stream[original]) + 1, len(noisy))  # a copy, after the original
        noisy.insert(at, stream[original])
    twice = folded(noisy)
    assert_same(read_all(once), read_all(twice))
    assert twice.duplicates == len(resend)
