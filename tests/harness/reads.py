"""A byte stream cut into reads at given points, for tests that a parser fed in pieces agrees with itself;
and the bodies those tests draw for the messages they cut."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hypothesis import strategies as st


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` as consecutive reads split at ``points`` (taken modulo its length); none is lost or repeated."""
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in pairwise(edges)]


def framed_body(draw: Any, kind: str, trailer: bytes) -> tuple[list[bytes], bytes]:
    """For a Hypothesis-drawn message: the framing header line and the body for ``kind`` "length" (a short
    body with Content-Length) or "chunked" (one chunk, then maybe a trailer section that names ``trailer``,
    a field that must never join the next message's head); nothing for any other kind."""
    if kind == "length":
        payload = draw(st.binary(max_size=20))
        return [b"Content-Length: %d" % len(payload)], payload
    if kind == "chunked":
        trailers = draw(st.sampled_from([b"", b"X-Trailer: 1\r\n" + trailer + b": evil\r\n"]))
        return [b"Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n" + trailers + b"\r\n"
    return [], b""
