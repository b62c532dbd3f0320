"""Nothing uncounted, and the lines an operator needs: 404 and 400 in their own series, a client that
leaves as 499, no 0xx; a line for each cold start and each 504, rate-limited per app; the access log.

Metrics are read as Prometheus would, from /metrics over HTTP; log lines from the ``logging`` records the
process's JSON handler would write.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import pytest

from kedahttp.process.logs import JsonFormatter
from kedahttp.proxy import events
from kedahttp.proxy.sources import Backend
from tests.harness.clients import curl, raw_exchange
from tests.harness.proxy import RunningProxy, make_settings, metric
from tests.harness.static_source import StaticSource
from tests.harness.upstreams import Upstream
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)


async def test_unrouted_malformed_and_client_closed_requests_are_counted(proxy_factory: Any,
                                                                        upstream: Upstream) -> None:
    backend = Backend("default/app", ("app.test",))
    running: RunningProxy = await proxy_factory(StaticSource([backend], {"default/app": [upstream.endpoint]}))
    for host in ("nope.test", "other.test", "x" * 300 + ".test"):  # any Host: one series, no Host label
        code, out, _ = await curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {host}", running.url)
        assert out == "404"
    assert (await raw_exchange(running.port, b"GET / HTTP/1.1\r\nHost: app.test\r\nBad Header\r\n\r\n")
            ).startswith(b"HTTP/1.1 400 ")
    assert (await raw_exchange(running.port, b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n"
                                             b"Host: app.test\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    # a client that leaves before its answer: the upstream is slow, curl gives up after 0.3 s
    upstream.gate.clear()
    code, _, _ = await curl("-m", "0.3", "-H", "Host: app.test", f"{running.url}/slow")
    assert code == 28  # curl's timeout
    await until(lambda: running.counters().in_flight == 0, 5, "the abandoned request ended")
    upstream.gate.set()
    page = await running.metrics()
    assert metric(page, "kedahttp_proxy_unrouted_requests_total") == 3
    assert metric(page, "kedahttp_proxy_refused_requests_total", code="400") == 2
    assert metric(page, "kedahttp_proxy_requests_total", namespace="default", app="app", code="499") == 1
    assert metric(page, "kedahttp_proxy_requests_total", namespace="default", app="app", code="4xx") == 0
    assert 'code="0xx"' not in page
    assert "nope.test" not in page and "other.test" not in page


async def test_cold_start_and_504_lines_are_logged_and_rate_limited(proxy_factory: Any, upstream: Upstream,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    backends = [Backend("default/app", ("app.test",), cold_start_timeout_seconds=0.5),
                Backend("default/late", ("late.test",), cold_start_timeout_seconds=10)]
    source = StaticSource(backends, {})
    running: RunningProxy = await proxy_factory(source, make_settings())
    with caplog.at_level(logging.INFO, logger="kedahttp.proxy.events"):
        # a storm of held requests that all time out: 504s, one line each up to the burst, then suppressed
        storm = [curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: app.test", f"{running.url}/x")
                 for _ in range(3 * events.BURST)]
        # meanwhile another app wakes and turns ready after 0.3 s
        late = asyncio.ensure_future(curl("-s", "-H", "Host: late.test", f"{running.url}/headers"))
        await until(lambda: running.counters("default/late").held == 1, 5, "the late app's request held")
        await asyncio.sleep(0.3)
        running.proxy.routes.set_endpoints("default/late", [upstream.endpoint])
        answers = await asyncio.gather(*storm)
        assert {out for _, out, _ in answers} == {"504"}
        code, _, err = await late
        assert code == 0, err
    lines = [r for r in caplog.records if r.name == "kedahttp.proxy.events"]
    timeouts = [r for r in lines if getattr(r, "event", "") == "held_504"]
    assert len(timeouts) == events.BURST  # the rest of the storm was suppressed
    assert all(r.backend == "default/app" and r.status == 504 for r in timeouts)  # type: ignore[attr-defined]
    assert all(0.5 <= r.waited_seconds < 1.5 for r in timeouts)  # type: ignore[attr-defined]
    colds = {r.backend: r for r in lines if getattr(r, "event", "") == "cold_start"}  # type: ignore[attr-defined]
    ready = colds["default/late"]
    assert (ready.outcome, ready.held) == ("ready", 1)  # type: ignore[attr-defined]
    assert 0.3 <= ready.wait_seconds < 1.0  # type: ignore[attr-defined]
    assert colds["default/app"].outcome == "timeout"  # type: ignore[attr-defined]
    # what the JSON handler writes for one of them
    line = json.loads(JsonFormatter().format(ready))
    assert line["msg"] == "cold start ready" and line["backend"] == "default/late" and line["outcome"] == "ready"


async def test_the_access_log_writes_sampled_requests_off_the_request_path(proxy_factory: Any,
                                                                          upstream: Upstream) -> None:
    backend = Backend("default/app", ("app.test",))
    running: RunningProxy = await proxy_factory(StaticSource([backend], {"default/app": [upstream.endpoint]}),
                                                make_settings(access_log_sample_rate=1.0))
    access = running.proxy.access_log
    assert access is not None
    access.stream = io.StringIO()
    for i in range(3):
        code, _, err = await curl("-H", "Host: app.test", f"{running.url}/headers?n={i}")
        assert code == 0, err
    await until(lambda: access.written == 3, 5, "three access lines written by the flush task")
    lines = [json.loads(line) for line in access.stream.getvalue().splitlines()]
    assert [(x["method"], x["path"], x["status"], x["backend"]) for x in lines] == [
        ("GET", "/headers", 200, "default/app") for i in range(3)]  # the query is never logged
    assert all(x["client"] == "127.0.0.1" and x["duration_ms"] > 0 for x in lines)
    # off by default: no component, nothing sampled
    default: RunningProxy = await proxy_factory(StaticSource([backend], {"default/app": [upstream.endpoint]}))
    assert default.proxy.access_log is None
