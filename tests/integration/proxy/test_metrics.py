"""The proxy's /metrics as an operator pays for it: the series budget per app, computed from a real scrape.

docs/metrics.md writes the budget down: per app, 9 series plus one per status class the app has answered
(10 for an app that only ever answered 2xx); the request duration histogram per app only with
METRICS_APP_LATENCY. An app here goes through everything that makes series: a held request that times
out (504), a cold start released by a ready endpoint, then 2xx, 4xx and 5xx answers. A new per-app
series, or a label that multiplies them, fails the count.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator

import aiohttp
import pytest

from kedahttp import __version__
from kedahttp.proxy import compiled
from kedahttp.proxy.assembly import Proxy
from kedahttp.proxy.sources import Backend
from tests.harness.inproc import proxy_settings, running_proxy, serve_app, status_app
from tests.harness.scrape import parse, promtool, scrape, series_per_app
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)

FIXED_PER_APP = 9  # in-flight, held, cold starts, cold-start wait (le 1, 5, 30, +Inf, sum, count)
LATENCY_PER_APP = 21  # 18 bounds, +Inf, sum, count
BUDGET = 12  # an app that answered 2xx, 4xx and 5xx


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    async with serve_app(status_app()) as endpoint:
        yield endpoint


BACKENDS = [Backend("team-a/busy", ("busy.test",), cold_start_timeout_seconds=0.3), Backend("team-a/idle", ("idle.test",))]


async def exercise(proxy: Proxy, endpoint: str) -> None:
    url = f"http://127.0.0.1:{proxy.server.port}"
    async with aiohttp.ClientSession(headers={"Host": "busy.test"}) as client:
        async with client.get(f"{url}/status/200") as r:
            assert r.status == 504  # held, then the 0.3 s cold-start timeout
        held = asyncio.ensure_future(client.get(f"{url}/status/200"))
        await until(lambda: proxy.counters.backends["team-a/busy"].held, what="a held request")
        proxy.routes.set_endpoints("team-a/busy", [endpoint])
        async with await held as r:
            assert r.status == 200
        for code in (200, 404, 500):
            async with client.get(f"{url}/status/{code}") as r:
                assert r.status == code


async def exercised(endpoint: str, latency: bool) -> tuple[dict[tuple[str, str], int], str]:
    """Series per (namespace, app) and the whole text of a scrape after ``exercise``."""
    async with running_proxy(proxy_settings(metrics_app_latency=str(latency).lower()), BACKENDS) as proxy:
        await exercise(proxy, endpoint)
        assert proxy.metrics is not None
        text = await scrape(proxy.metrics.port)
    return dict(series_per_app(parse(text))), text


async def test_series_per_app_stay_within_the_budget(upstream: str) -> None:
    counts, text = await exercised(upstream, latency=False)
    classes = {s.label("code") for s in parse(text) if s.name == "kedahttp_proxy_requests_total"}
    assert classes == {"2xx", "4xx", "5xx"}
    assert counts[("team-a", "busy")] == FIXED_PER_APP + len(classes)
    assert counts[("team-a", "busy")] <= BUDGET
    assert counts[("team-a", "idle")] == FIXED_PER_APP  # an app never requested
    series = parse(text)
    timeouts = next(s for s in series if s.name == "kedahttp_proxy_held_timeouts_total")
    assert timeouts.value == 1 and timeouts.label("app") is None  # proxy-wide, not per app
    waits = {s.label("le"): s.value for s in series
             if s.name == "kedahttp_proxy_cold_start_wait_seconds_bucket" and s.label("app") == "busy"}
    assert list(waits) == ["1.0", "5.0", "30.0", "+Inf"] and waits["+Inf"] == 1
    info = next(s for s in series if s.name == "kedahttp_build_info")
    assert dict(info.labels) == {"component": "proxy", "version": __version__, "data_path": compiled.data_path()}
    assert any(s.name == "process_resident_memory_bytes" for s in series)
    check = await asyncio.to_thread(subprocess.run, [promtool(), "check", "metrics"], input=text,
                                    capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr  # promtool's lint: names, units, help


async def test_the_latency_histogram_per_app_is_opt_in(upstream: str) -> None:
    counts, text = await exercised(upstream, latency=True)
    assert counts[("team-a", "busy")] == FIXED_PER_APP + 3 + LATENCY_PER_APP
    count = next(s for s in parse(text) if s.name == "kedahttp_proxy_request_duration_seconds_count"
                 and s.label("app") == "busy")
    assert count.value == 5  # 504, the released request, 200, 404, 500
