"""Event lines: a burst per app and kind, then one per interval, with the count of what was suppressed."""

from __future__ import annotations

import logging

import pytest

from kedahttp.proxy.events import EventLog, RateLimiter


def test_rate_limiter_allows_a_burst_then_one_per_interval_and_counts_the_rest() -> None:
    limiter = RateLimiter(burst=3, interval=10.0)
    assert [limiter.allow("a", 0.0) for _ in range(5)] == [0, 0, 0, None, None]
    assert limiter.allow("b", 0.0) == 0  # another key has its own bucket
    assert limiter.allow("a", 5.0) is None
    assert limiter.allow("a", 10.0) == 3  # one token back; three were suppressed meanwhile
    assert limiter.allow("a", 10.5) is None
    assert limiter.allow("a", 1000.0) == 1  # refills up to the burst, no further
    assert [limiter.allow("a", 1000.0) for _ in range(3)] == [0, 0, None]


def test_event_lines_carry_the_app_and_are_limited_per_app(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    events = EventLog(RateLimiter(burst=2, interval=10.0), clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="kedahttp.proxy.events"):
        events.cold_start("default/app", 1.23456, "ready", 3)
        for _ in range(10):
            events.held_answered("default/app", 504, 5.0)
        events.held_answered("default/other", 504, 5.0)
        now[0] = 10.0
        events.held_answered("default/app", 504, 5.0)
        events.upstream_error("default/app", "127.0.0.1:1", "response header timeout", 504)
    records = caplog.records
    cold = records[0]
    assert cold.getMessage() == "cold start ready"
    assert (cold.backend, cold.wait_seconds, cold.outcome, cold.held) == ("default/app", 1.235, "ready", 3)  # type: ignore[attr-defined]
    timeouts = [r for r in records if getattr(r, "event", "") == "held_504"]
    assert [(r.backend, getattr(r, "suppressed", 0)) for r in timeouts] == [  # type: ignore[attr-defined]
        ("default/app", 0), ("default/app", 0), ("default/other", 0), ("default/app", 8)]
    assert records[-1].event == "upstream_error" and records[-1].status == 504  # type: ignore[attr-defined]
