"""The wire format: what goes on the bus decodes to the same attributes the aggregator reads."""

from __future__ import annotations

import pytest

from kedahttp.activity.codec import DecodeError, decode, encode_report, encode_wake
from kedahttp.activity.model import BackendActivity, Report, WakeEvent


def test_report_round_trip() -> None:
    report = Report(
        "proxy-7", 42, 1_700_000_000.25, 1_700_000_000.0, 0.25,
        (BackendActivity("default/app", 3, 1, 10, 9, 0.125, 1_700_000_000.2), BackendActivity("shop/cart")),
    )  # fmt: skip
    decoded = decode(encode_report(report))
    assert (decoded.instance, decoded.seq, decoded.sent_at) == ("proxy-7", 42, 1_700_000_000.25)  # type: ignore[union-attr]
    assert (decoded.interval_start, decoded.interval_seconds) == (1_700_000_000.0, 0.25)  # type: ignore[union-attr]
    got = [
        (b.backend, b.in_flight, b.held, b.started, b.completed, b.busy_seconds, b.last_request_at)
        for b in decoded.backends  # type: ignore[union-attr]
    ]
    assert got == [
        ("default/app", 3, 1, 10, 9, 0.125, 1_700_000_000.2),
        ("shop/cart", 0, 0, 0, 0, 0.0, 0.0),
    ]


def test_an_empty_report_is_a_heartbeat() -> None:
    decoded = decode(encode_report(Report("p", 1, 2.0, 1.0, 0.25)))
    assert list(decoded.backends) == []  # type: ignore[union-attr]


def test_wake_round_trip() -> None:
    decoded = decode(encode_wake(WakeEvent("default/app", "proxy-7", 1_700_000_000.5)))
    assert (decoded.backend, decoded.instance, decoded.at) == ("default/app", "proxy-7", 1_700_000_000.5)  # type: ignore[union-attr]
    assert not hasattr(decoded, "backends")  # how the aggregator tells a wake from a report


@pytest.mark.parametrize("data", [b"", b"\xff\xff\xff", b"\x0a\x05abc"])
def test_anything_else_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)
