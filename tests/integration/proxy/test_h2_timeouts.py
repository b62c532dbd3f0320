"""The per-app upstream timeouts hold for HTTP/2 clients too, on real sockets: to an h2c app and to an
HTTP/1.1 app, a hung app gets 504 (a gRPC call: UNAVAILABLE, so its retry policy applies) after the
response-header timeout, a stalled body is cut after the idle timeout, a slow steady stream is not, and
each is counted and logged as an upstream timeout, as for HTTP/1.1 clients (test_upstream_timeouts.py);
and an app's connect timeout bounds the wait for an endpoint that never accepts.

The side's sweep checks them (no timer per stream), every tenth of the shortest timeout: each fires
between its value and its value plus two sweep periods; the bounds below add a margin for a loaded machine.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from kedahttp.proxy.app_settings import AppSettings
from kedahttp.proxy.sources import Backend
from tests.harness.clients import curl
from tests.harness.h2_upstream import H2App
from tests.harness.proxy import RunningProxy, make_settings, metric
from tests.harness.slow_upstream import SlowUpstream
from tests.harness.static_source import StaticSource
from tests.harness.upstreams import UnacceptingEndpoint
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)


async def proxy(proxy_factory: Any, h2app: H2App, slow: SlowUpstream, **settings: Any) -> RunningProxy:
    backends = [Backend("default/web", ("web.test",), protocol="h2c"), Backend("default/old", ("old.test",))]
    running: RunningProxy = await proxy_factory(
        StaticSource(backends, {"default/web": [h2app.endpoint], "default/old": [slow.endpoint]}),
        make_settings(**settings))
    return running


async def h2curl(running: RunningProxy, host: str, path: str, *extra: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    code, out, err = await curl("--http2-prior-knowledge", "-sS", "-H", f"Host: {host}", *extra,
                                f"{running.url}{path}")
    return code, out, err, time.monotonic() - started


@pytest.mark.parametrize("host", ["web.test", "old.test"])
async def test_a_hung_app_gets_504_after_the_response_header_timeout(
        proxy_factory: Any, h2app: H2App, slow: SlowUpstream, host: str) -> None:
    running = await proxy(proxy_factory, h2app, slow, upstream_response_header_timeout_seconds=1.0)
    code, out, err, took = await h2curl(running, host, "/hang", "-i")
    assert code == 0, err
    assert out.startswith("HTTP/2 504"), out
    assert 1.0 <= took < 1.0 + 0.8, took
    if host == "web.test":
        await until(lambda: h2app.resets == 1, 5, "the app's stream cancelled")
    else:
        await until(lambda: "/hang" in slow.cut, 5, "the HTTP/1.1 app's connection closed")
    page = await running.metrics()
    app = host.split(".")[0]
    assert metric(page, "kedahttp_proxy_upstream_timeouts_total") == 1
    assert metric(page, "kedahttp_proxy_upstream_errors_total") == 1
    assert metric(page, "kedahttp_proxy_requests_total", namespace="default", app=app, code="5xx") == 1
    assert metric(page, "kedahttp_proxy_in_flight_requests", namespace="default", app=app) == 0
    code, out, err, _ = await h2curl(running, host, "/fine")  # the app is still served
    assert code == 0 and "fine" in out, (code, out, err)


async def test_a_hung_grpc_call_gets_unavailable(proxy_factory: Any, h2app: H2App, slow: SlowUpstream) -> None:
    running = await proxy(proxy_factory, h2app, slow, upstream_response_header_timeout_seconds=1.0)
    code, out, err, took = await h2curl(running, "web.test", "/hang", "-i", "-H", "content-type: application/grpc",
                                        "-H", "te: trailers", "--data-binary", "")
    assert code == 0, err
    assert out.startswith("HTTP/2 200"), out
    assert "grpc-status: 14" in out, out  # UNAVAILABLE: a retryable answer, not a bare 504
    assert 1.0 <= took < 1.0 + 0.8, took


@pytest.mark.parametrize("host", ["web.test", "old.test"])
async def test_a_stalled_body_is_cut_after_the_idle_timeout(
        proxy_factory: Any, h2app: H2App, slow: SlowUpstream, host: str) -> None:
    running = await proxy(proxy_factory, h2app, slow, upstream_idle_timeout_seconds=0.8)
    code, out, err, took = await h2curl(running, host, "/stall?n=4000")
    assert code == 92, (code, err)  # curl: HTTP/2 stream not closed cleanly (our RST_STREAM)
    assert len(out) == 2000  # the half the app sent, and not a byte passed off as the rest
    assert 0.8 <= took < 0.8 + 0.8, took
    page = await running.metrics()
    app = host.split(".")[0]
    assert metric(page, "kedahttp_proxy_upstream_timeouts_total") == 1
    assert metric(page, "kedahttp_proxy_requests_total", namespace="default", app=app, code="2xx") == 0


async def test_a_slow_steady_stream_is_never_cut(proxy_factory: Any, h2app: H2App, slow: SlowUpstream) -> None:
    # every gap (0.5 s) under the idle timeout (0.8 s); the whole stream (3 s) far past it and past the total
    # cap, which does not apply to a stream (chunked from the HTTP/1.1 app)
    running = await proxy(proxy_factory, h2app, slow, upstream_idle_timeout_seconds=0.8,
                          upstream_total_timeout_seconds=1.0)
    code, out, err, took = await h2curl(running, "old.test", "/drip?pieces=6&every=0.5")
    assert code == 0, err
    assert out == "".join(f"piece {i}\n" for i in range(6))
    assert took >= 3.0
    page = await running.metrics()
    assert metric(page, "kedahttp_proxy_upstream_errors_total") == 0


async def test_an_endpoint_that_never_accepts_is_given_up_after_the_apps_connect_timeout(
        proxy_factory: Any) -> None:
    """The app's own connect timeout (0.5 s here; the proxy-wide one stays 5 s), to an h2c app and to an
    HTTP/1.1 app alike: a stream is answered 502 (a gRPC call: UNAVAILABLE) once it has passed."""
    quick = AppSettings(connect_timeout_seconds=0.5)
    with UnacceptingEndpoint() as nowhere:
        backends = [Backend("default/web", ("web.test",), protocol="h2c", settings=quick),
                    Backend("default/old", ("old.test",), settings=quick)]
        running: RunningProxy = await proxy_factory(
            StaticSource(backends, {"default/web": [nowhere.endpoint], "default/old": [nowhere.endpoint]}))
        for host in ("web.test", "old.test"):
            code, out, err, took = await h2curl(running, host, "/x", "-i")
            assert code == 0, err
            assert out.startswith("HTTP/2 502"), out
            assert 0.5 <= took < 0.5 + 1.0, (host, took)
        code, out, err, took = await h2curl(running, "web.test", "/x", "-i", "-H", "content-type: application/grpc",
                                            "-H", "te: trailers", "--data-binary", "")
        assert code == 0, err
        assert "grpc-status: 14" in out, out
        assert 0.5 <= took < 0.5 + 1.0, took
