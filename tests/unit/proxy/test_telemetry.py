"""The proxy's /metrics text, written without prometheus_client: parseable, exact, escaped, and rewritten
for an app as soon as its counters move (the per-app cache must never serve stale lines)."""

from typing import Any

from kedahttp.proxy.counters import COLD_WAIT_BUCKETS, DURATION_BUCKETS, BackendCounters
from kedahttp.proxy.telemetry import ProxyExposition
from tests.harness.scrape import parse


def snapshot(backends: dict[str, Any]) -> dict[str, Any]:
    return {"backends": backends, "publisher": {"published": 3, "connected": 1}, "routes": len(backends),
            "connections": 2}


def values(text: str, name: str, **labels: str) -> list[float]:
    return [s.value for s in parse(text) if s.name == name and all(s.label(k) == v for k, v in labels.items())]


def test_live_counters_are_written_exactly_and_rewritten_when_they_move() -> None:
    c = BackendCounters("shop/cart")
    c.start(1.0)
    c.finish(1.2, 1.0, 200)
    c.cold_wait_buckets[COLD_WAIT_BUCKETS.index(5)] += 2  # two waits in (2, 5]
    c.cold_wait_sum = 7.5
    c.held_timeouts = 4
    backends = {"shop/cart": c}
    exposition = ProxyExposition(lambda: snapshot(backends), latency_histogram=True)
    text = exposition.render().decode()
    assert values(text, "kedahttp_proxy_requests_total", app="cart", namespace="shop", code="2xx") == [1]
    buckets = {s.label("le"): s.value for s in parse(text) if s.name == "kedahttp_proxy_cold_start_wait_seconds_bucket"}
    assert buckets == {"1.0": 0, "5.0": 2, "30.0": 2, "+Inf": 2}
    assert values(text, "kedahttp_proxy_cold_start_wait_seconds_sum") == [7.5]
    assert len(values(text, "kedahttp_proxy_request_duration_seconds_bucket")) == len(DURATION_BUCKETS) + 1
    assert values(text, "kedahttp_proxy_held_timeouts_total") == [4]
    assert values(text, "kedahttp_proxy_reports_published_total") == [3]
    c.start(2.0)  # in flight now: the cached lines of this app must not be served again
    text = exposition.render().decode()
    assert values(text, "kedahttp_proxy_in_flight_requests", app="cart") == [1]
    c.finish(2.5, 2.0, 503)
    text = exposition.render().decode()
    assert values(text, "kedahttp_proxy_requests_total", app="cart", code="5xx") == [1]
    assert values(text, "kedahttp_proxy_in_flight_requests", app="cart") == [0]


def test_worker_snapshots_and_odd_names_are_written_escaped() -> None:
    odd = 'we"ird\\app%d'
    counters = BackendCounters(odd)
    counters.by_class[4] = 2
    backends = {odd: counters.metrics_snapshot(), "ns/plain": BackendCounters("ns/plain").metrics_snapshot()}
    text = ProxyExposition(lambda: snapshot(backends)).render().decode()
    assert values(text, "kedahttp_proxy_requests_total", app=odd, namespace="", code="4xx") == [2]
    assert values(text, "kedahttp_proxy_held_requests", app="plain", namespace="ns") == [0]
    assert not any(s.name == "kedahttp_proxy_request_duration_seconds_bucket" for s in parse(text))
