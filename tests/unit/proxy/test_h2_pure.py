"""The pure parts of the HTTP/2 side: grpc-timeout, trailers-only answers, and finding the preface."""

from __future__ import annotations

import pytest

from kedahttp.proxy.h2 import grpc
from kedahttp.proxy.h2.side import PREFACE, preface_offset


@pytest.mark.parametrize(("value", "seconds"), [
    (b"1S", 1.0), (b"250m", 0.25), (b"2M", 120.0), (b"1H", 3600.0), (b"100u", 1e-4), (b"99999999n", 0.099999999),
    (b"S", None), (b"1", None), (b"123456789S", None), (b"1s", None), (b"-1S", None), (b"1.5S", None),
])
def test_grpc_timeout(value: bytes, seconds: float | None) -> None:
    got = grpc.timeout_seconds(value)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


def test_trailers_only_answer_percent_encodes_the_message() -> None:
    headers = {name: value for name, value, _ in grpc.trailers_only(grpc.UNAVAILABLE, "app 'x' cold: 100% busy\n")}
    assert headers[b":status"] == b"200" and headers[b"content-type"] == b"application/grpc"
    assert headers[b"grpc-status"] == b"14"
    assert headers[b"grpc-message"] == b"app 'x' cold: 100%25 busy%0A"
    assert grpc.is_grpc(b"application/grpc+proto") and not grpc.is_grpc(b"application/json")
    assert grpc.status_for_http(404) == grpc.UNIMPLEMENTED and grpc.status_for_http(504) == grpc.UNAVAILABLE


@pytest.mark.parametrize("cut", range(1, len(PREFACE)))
def test_preface_offset_for_every_split(cut: int) -> None:
    frames = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame after the preface
    data = PREFACE[cut:] + frames
    assert preface_offset(data) == cut
    assert preface_offset(PREFACE + frames) == 0
