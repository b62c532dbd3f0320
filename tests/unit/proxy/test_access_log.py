"""The access log: sampled at the rate set, bounded, and written as JSON lines off the request path."""

from __future__ import annotations

import io
import json
import random

from kedahttp.proxy import access_log
from kedahttp.proxy.access_log import AccessLog

HEAD = b"GET /cart?id=7&token=s3cret HTTP/1.1\r\nHost: shop.test\r\nAuthorization: Bearer s3cret\r\n\r\n"


async def test_sampled_entries_become_json_lines() -> None:
    out = io.StringIO()
    log = AccessLog(1.0, out)
    log.record("shop/cart", b"10.0.0.7", HEAD, 200, 0.0123, False)
    log.record("shop/cart", b"10.0.0.7", b"", 499, 1.5, True)
    await log.flush()
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert {k: first[k] for k in ("backend", "client", "method", "path", "status", "duration_ms", "cold")} == {
        "backend": "shop/cart", "client": "10.0.0.7", "method": "GET", "path": "/cart", "status": 200,
        "duration_ms": 12.3, "cold": False}
    assert first["ts"].endswith("Z") and second["status"] == 499 and second["method"] == ""
    assert log.written == 2 and log.pending == []
    assert "s3cret" not in out.getvalue()  # neither the query nor a header is logged


async def test_the_rate_is_the_fraction_kept_and_zero_keeps_none() -> None:
    draws = random.Random(7).random
    log = AccessLog(0.1, io.StringIO(), draw=draws)
    for _ in range(10_000):
        log.record("a/b", b"ip", HEAD, 200, 0.001, False)
    assert 900 <= len(log.pending) <= 1100
    off = AccessLog(0.0, io.StringIO())
    off.record("a/b", b"ip", HEAD, 200, 0.001, False)
    assert off.pending == []


def test_the_buffer_is_bounded_and_drops_are_counted() -> None:
    log = AccessLog(1.0, io.StringIO())
    for _ in range(access_log.MAX_PENDING + 5):
        log.record("a/b", b"ip", HEAD, 200, 0.001, False)
    assert len(log.pending) == access_log.MAX_PENDING and log.dropped == 5
