"""Which upstream timeout has passed: the sweep's decision, as plain data."""

from __future__ import annotations

from kedahttp.proxy.app_settings import AppLimits
from kedahttp.proxy.deadlines import (
    BODY_IDLE,
    MIN_SWEEP_SECONDS,
    NOT_DUE,
    RESPONSE_HEADER,
    TOTAL,
    UPLOAD_IDLE,
    overdue,
    sweep_interval,
    tunnel_overdue,
)

LIMITS = AppLimits(connect_timeout_seconds=5, response_header_timeout_seconds=10, idle_timeout_seconds=3,
                   total_timeout_seconds=0, tunnel_idle_timeout_seconds=30)
CAPPED = AppLimits(5, 30, 3, 20, 30)  # a total cap below the response-header timeout


def due(limits: AppLimits = LIMITS, now: float = 100.0, **kw: object) -> int:
    args: dict[str, object] = {"sent_at": 90.5, "req_done": True, "resp_started": False, "streaming": False,
                               "last_read": 0.0, "reading_paused": False}
    args.update(kw)
    return overdue(limits, now, 0.1, **args)  # type: ignore[arg-type]


def test_response_header_timeout_runs_from_the_request_sent_in_full() -> None:
    assert due(sent_at=90.5) == NOT_DUE
    assert due(sent_at=90.0) == RESPONSE_HEADER
    assert due(sent_at=80.0, req_done=False) == NOT_DUE  # still sending the body: not waiting for an answer
    assert due(sent_at=0.0) == NOT_DUE  # not sent yet


def test_idle_counts_from_the_last_byte_and_never_while_the_client_is_not_reading() -> None:
    assert due(resp_started=True, last_read=97.0) == NOT_DUE  # 3 s, within the slack of a coarse stamp
    assert due(resp_started=True, last_read=96.8) == BODY_IDLE
    assert due(resp_started=True, last_read=50.0, reading_paused=True) == NOT_DUE
    assert due(resp_started=True, last_read=99.0, sent_at=1.0) == NOT_DUE  # a long response still flowing


def test_an_upload_the_upstream_stopped_taking_runs_out_the_idle_timeout_either_side_of_the_answer() -> None:
    assert due(req_done=False, sent_at=0.0, last_taken=97.0) == NOT_DUE  # within the slack
    assert due(req_done=False, sent_at=0.0, last_taken=96.8) == UPLOAD_IDLE  # no answer yet: 504
    assert due(req_done=False, resp_started=True, last_read=99.9, last_taken=96.8) == UPLOAD_IDLE  # a cut
    assert due(req_done=False, sent_at=0.0, last_taken=0.0) == NOT_DUE  # nothing waits for the upstream
    assert due(req_done=False, sent_at=0.0, last_taken=99.0) == NOT_DUE  # it took a byte a second ago


def test_total_caps_length_framed_responses_only() -> None:
    assert due(CAPPED, sent_at=79.0) == TOTAL  # before any answer, the smaller of the two applies
    assert due(CAPPED, sent_at=79.0, resp_started=True, last_read=99.9) == TOTAL
    assert due(CAPPED, sent_at=79.0, resp_started=True, last_read=99.9, streaming=True) == NOT_DUE
    assert due(sent_at=1.0, resp_started=True, last_read=99.9) == NOT_DUE  # 0: no cap


def test_tunnels_and_the_sweep_period() -> None:
    assert not tunnel_overdue(LIMITS, 100.0, 0.1, 70.0)
    assert tunnel_overdue(LIMITS, 100.0, 0.1, 69.8)
    assert sweep_interval(60.0, 1.0) == 1.0  # a tenth of 60 s, held to the server's one second
    assert sweep_interval(1.0, 1.0) == 0.1
    assert sweep_interval(0.1, 1.0) == MIN_SWEEP_SECONDS
    assert sweep_interval(60.0, 0.1) == 0.1  # a server told to sweep faster does
