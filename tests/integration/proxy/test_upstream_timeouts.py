"""Upstream timeouts on real sockets: a hung app gets 504, a stalled body is cut, a slow steady stream is
not, per-app values from the routes file win over the proxy-wide ones, and an idle WebSocket is closed.

Timeouts are checked by the server's sweep (deadlines.py), so each fires between its value and its value
plus two sweep periods; the sweep period is a tenth of the shortest timeout configured, so the bounds
below are the timeout plus a margin for a loaded machine, never a loosened assertion.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kedahttp.proxy.app_settings import AppSettings
from kedahttp.proxy.file_source import FileSource
from kedahttp.proxy.sources import Backend
from tests.harness.clients import curl
from tests.harness.proxy import RunningProxy, make_settings, metric
from tests.harness.slow_upstream import SlowUpstream
from tests.harness.static_source import StaticSource
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)


async def proxy_for(proxy_factory: Any, slow: SlowUpstream, app: AppSettings | None = None,
                    **settings: Any) -> RunningProxy:
    backend = Backend("default/app", ("app.test",), settings=app or AppSettings())
    running: RunningProxy = await proxy_factory(StaticSource([backend], {"default/app": [slow.endpoint]}),
                                                make_settings(**settings))
    return running


async def timed_curl(*args: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    code, out, err = await curl(*args)
    return code, out, err, time.monotonic() - started


async def test_a_hung_upstream_gets_504_after_the_response_header_timeout(proxy_factory: Any,
                                                                         slow: SlowUpstream) -> None:
    running = await proxy_for(proxy_factory, slow, upstream_response_header_timeout_seconds=1.0)
    code, out, err, took = await timed_curl("-i", "-H", "Host: app.test", f"{running.url}/hang")
    assert code == 0, err
    assert out.startswith("HTTP/1.1 504 ")
    assert "the backend did not answer in time" in out
    assert 1.0 <= took < 1.0 + 0.8, took
    await until(lambda: "/hang" in slow.cut, 5, "the hung upstream connection closed")
    page = await running.metrics()
    assert metric(page, "kedahttp_proxy_upstream_timeouts_total") == 1
    assert metric(page, "kedahttp_proxy_upstream_errors_total") == 1
    assert metric(page, "kedahttp_proxy_requests_total", namespace="default", app="app", code="5xx") == 1
    # the proxy still serves the app
    code, out, _ = await curl("-H", "Host: app.test", f"{running.url}/fine")
    assert out == "hello from /fine"


async def test_a_body_that_stalls_is_cut_after_the_idle_timeout(proxy_factory: Any, slow: SlowUpstream) -> None:
    running = await proxy_for(proxy_factory, slow, upstream_idle_timeout_seconds=0.8)
    code, out, err, took = await timed_curl("-sS", "-H", "Host: app.test", f"{running.url}/stall?n=4000")
    assert code == 18, (code, err)  # curl: transfer closed with outstanding read data remaining
    assert len(out) == 2000  # the half the upstream sent, and not a byte passed off as the rest
    assert 0.8 <= took < 0.8 + 0.8, took
    page = await running.metrics()
    assert metric(page, "kedahttp_proxy_upstream_errors_total") == 1
    assert metric(page, "kedahttp_proxy_upstream_timeouts_total") == 1
    assert metric(page, "kedahttp_proxy_requests_total", namespace="default", app="app", code="2xx") == 0


async def test_a_slow_steady_stream_is_never_cut(proxy_factory: Any, slow: SlowUpstream) -> None:
    # every gap (0.5 s) is under the idle timeout (0.8 s); the whole stream (3 s) is far past it and past
    # the total cap, which does not apply to streams (chunked responses)
    running = await proxy_for(proxy_factory, slow, upstream_idle_timeout_seconds=0.8,
                              upstream_total_timeout_seconds=1.0)
    code, out, err, took = await timed_curl("-sS", "-H", "Host: app.test", f"{running.url}/drip?pieces=6&every=0.5")
    assert code == 0, err
    assert out == "".join(f"piece {i}\n" for i in range(6))
    assert took >= 3.0
    page = await running.metrics()
    assert metric(page, "kedahttp_proxy_upstream_errors_total") == 0


async def test_the_total_cap_cuts_a_length_framed_response(proxy_factory: Any, slow: SlowUpstream) -> None:
    running = await proxy_for(proxy_factory, slow, upstream_total_timeout_seconds=1.0)
    code, out, err, took = await timed_curl("-sS", "-H", "Host: app.test", f"{running.url}/stall?n=4000")
    assert code == 18, (code, err)
    assert len(out) == 2000
    assert 1.0 <= took < 1.0 + 0.8, took


async def test_per_app_values_from_the_routes_file_win_over_the_settings(
        tmp_path: Path, proxy_factory: Any, slow: SlowUpstream) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(f"""
backends:
  - name: quick
    hosts: ["quick.test"]
    upstream: "http://{slow.endpoint}"
    timeouts: {{responseHeaderSeconds: 0.5}}
  - name: patient
    hosts: ["patient.test"]
    upstream: "http://{slow.endpoint}"
    timeouts: {{responseHeaderSeconds: 4}}
  - name: plain
    hosts: ["plain.test"]
    upstream: "http://{slow.endpoint}"
""")
    running: RunningProxy = await proxy_factory(FileSource(str(routes)),
                                                make_settings(upstream_response_header_timeout_seconds=1.5))
    await until(lambda: all(running.proxy.routes.get(f"default/{n}").endpoints  # type: ignore[union-attr]
                            for n in ("quick", "patient", "plain")), 5, "routes ready")
    quick, patient, plain = await asyncio.gather(
        timed_curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: quick.test", f"{running.url}/hang"),
        timed_curl("-s", "-H", "Host: patient.test", f"{running.url}/sleep?s=2.5"),
        timed_curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: plain.test", f"{running.url}/hang"),
    )
    assert quick[1] == "504" and 0.5 <= quick[3] < 0.5 + 0.6, quick
    assert patient[1] == "slept" and patient[3] >= 2.5, patient  # past the proxy-wide 1.5 s: its own 4 s won
    assert plain[1] == "504" and 1.5 <= plain[3] < 1.5 + 0.8, plain  # no override: the setting


async def test_an_idle_websocket_is_closed_and_counted_and_a_busy_one_is_not(proxy_factory: Any,
                                                                            slow: SlowUpstream) -> None:
    running = await proxy_for(proxy_factory, slow, app=AppSettings(tunnel_idle_timeout_seconds=1.0))
    async with aiohttp.ClientSession() as session:
        busy = await session.ws_connect(f"{running.url}/ws", headers={"Host": "app.test"})
        idle = await session.ws_connect(f"{running.url}/ws", headers={"Host": "app.test"})
        await idle.send_str("hi")
        assert (await idle.receive(timeout=5)).data == "echo:hi"
        started = time.monotonic()

        async def closed() -> tuple[aiohttp.WSMessage, float]:
            message = await idle.receive(timeout=10)
            return message, time.monotonic() - started

        idle_end = asyncio.ensure_future(closed())
        for i in range(8):  # 2.4 s of a message every 0.3 s: never idle for a second
            await busy.send_str(str(i))
            assert (await busy.receive(timeout=5)).data == f"echo:{i}"
            await asyncio.sleep(0.3)
        message, after = await idle_end
        assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)
        assert 1.0 <= after < 1.0 + 0.6, after
        assert not busy.closed
        await busy.send_str("still")
        assert (await busy.receive(timeout=5)).data == "echo:still"
        await busy.close()
    await until(lambda: slow.ws_closed.is_set(), 5, "the upstream side of the idle tunnel closed")
    page = await running.metrics()
    assert metric(page, "kedahttp_proxy_tunnel_idle_closes_total") == 1
