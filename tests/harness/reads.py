"""A byte stream cut into reads at given points, for tests that a parser fed in pieces agrees with itself."""

from __future__ import annotations

from itertools import pairwise


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` as consecutive reads split at ``points`` (taken modulo its length); none is lost or repeated."""
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in pairwise(edges)]
