"""Prometheus metrics of the proxy, built at scrape time from plain counters.

The hot path never touches prometheus_client: counters.py keeps ints and bucket counts, and a custom
collector turns a *snapshot* of them into metric families when /metrics is scraped. With WORKERS > 1
each worker sends its snapshot to the supervisor about once a second (workers.py) and the supervisor
serves their sum; a worker that exits leaves its last snapshot in the sum, so counters never go back.
Labels stay bounded: backend and status class, never path or endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kedahttp.process.settings import Address
from kedahttp.process.sideserver import SideServer
from kedahttp.proxy import compiled
from kedahttp.proxy.counters import (
    COLD_WAIT_BUCKETS,
    DURATION_BUCKETS,
    STATUS_CLASSES,
    sum_snapshots,
    sum_unrouted,
)

Snapshot = dict[str, Any]  # {"backends": {...}, "publisher": {...}, "routes": n, "connections": n}

PUBLISHER_FIELDS = ("published", "publish_errors", "dropped", "pending", "connected")


def publisher_stats(stats: Any) -> dict[str, int]:
    return {name: int(getattr(stats, name, 0) or 0) for name in PUBLISHER_FIELDS}


def sum_process_snapshots(snapshots: Iterable[Snapshot]) -> Snapshot:
    snaps = list(snapshots)
    publisher = dict.fromkeys(PUBLISHER_FIELDS, 0)
    for snap in snaps:
        for name, value in snap.get("publisher", {}).items():
            publisher[name] = publisher.get(name, 0) + value
    return {
        "backends": sum_snapshots(s.get("backends", {}) for s in snaps),
        "unrouted": sum_unrouted(s.get("unrouted", {}) for s in snaps),
        "publisher": publisher,
        "routes": max((s.get("routes", 0) for s in snaps), default=0),
        "connections": sum(s.get("connections", 0) for s in snaps),
    }


def _histogram(name: str, doc: str, bounds: tuple[float, ...], per_backend: dict[str, tuple[list[int], float]]
               ) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["backend"])
    for backend, (counts, total) in per_backend.items():
        cumulative = 0
        buckets = []
        for bound, count in zip((*bounds, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
        family.add_metric([backend], buckets, total)
    return family


class ProxyCollector:
    """A prometheus_client collector over a snapshot function."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        backends: dict[str, dict[str, Any]] = snap.get("backends", {})
        requests = CounterMetricFamily("kedahttp_proxy_requests", "Requests finished, by backend and status class",
                                       labels=["backend", "code"])
        in_flight = GaugeMetricFamily("kedahttp_proxy_in_flight_requests", "Requests being forwarded now",
                                      labels=["backend"])
        held = GaugeMetricFamily("kedahttp_proxy_held_requests", "Requests held for a cold backend now",
                                 labels=["backend"])
        cold = CounterMetricFamily("kedahttp_proxy_cold_starts", "Cold episodes: wake events for a backend "
                                   "without ready endpoints", labels=["backend"])
        errors = CounterMetricFamily("kedahttp_proxy_upstream_errors", "Upstream connects refused, resets and "
                                     "malformed responses", labels=["backend"])
        timeouts = CounterMetricFamily("kedahttp_proxy_held_timeouts", "Held requests answered 504",
                                       labels=["backend"])
        rejected = CounterMetricFamily("kedahttp_proxy_held_rejected", "Requests answered 503 at the held limit",
                                       labels=["backend"])
        upstream_timeouts = CounterMetricFamily(
            "kedahttp_proxy_upstream_timeouts", "504s and cut responses from the upstream timeouts", labels=["backend"])
        tunnel_idle = CounterMetricFamily("kedahttp_proxy_tunnel_idle_closes",
                                          "WebSocket/Upgrade tunnels closed for idleness", labels=["backend"])
        pages = CounterMetricFamily("kedahttp_proxy_waiting_pages", "Browsers answered with the waiting page",
                                    labels=["backend"])
        durations: dict[str, tuple[list[int], float]] = {}
        waits: dict[str, tuple[list[int], float]] = {}
        for key, b in sorted(backends.items()):
            for code, count in zip(STATUS_CLASSES, b["by_class"], strict=True):
                if count:
                    requests.add_metric([key, code], count)
            in_flight.add_metric([key], b["in_flight"])
            held.add_metric([key], b["held"])
            cold.add_metric([key], b["cold_starts"])
            errors.add_metric([key], b["upstream_errors"])
            timeouts.add_metric([key], b["held_timeouts"])
            rejected.add_metric([key], b["held_rejected"])
            upstream_timeouts.add_metric([key], b.get("upstream_timeouts", 0))
            tunnel_idle.add_metric([key], b.get("tunnel_idle_closes", 0))
            pages.add_metric([key], b.get("waiting_pages", 0))
            durations[key] = (b["duration_buckets"], b["duration_sum"])
            waits[key] = (b["cold_wait_buckets"], b["cold_wait_sum"])
        yield requests
        yield _histogram("kedahttp_proxy_request_duration_seconds", "Time from request head to response end, "
                         "holding included", DURATION_BUCKETS, durations)
        yield in_flight
        yield held
        yield cold
        yield _histogram("kedahttp_proxy_cold_start_wait_seconds", "Time held before an endpoint was ready",
                         COLD_WAIT_BUCKETS, waits)
        yield errors
        yield timeouts
        yield rejected
        yield upstream_timeouts
        yield tunnel_idle
        yield pages
        unrouted = snap.get("unrouted", {})
        yield CounterMetricFamily("kedahttp_proxy_unrouted_requests", "Requests no route matched (404)",
                                  value=unrouted.get("unrouted", 0))
        refused = CounterMetricFamily("kedahttp_proxy_refused_requests", "Malformed requests refused before "
                                      "routing, by the status answered (400, 405, 431, 501, 505)", labels=["code"])
        for code, count in sorted(unrouted.get("refused", {}).items()):
            refused.add_metric([code], count)
        yield refused
        pub = snap.get("publisher", {})
        yield CounterMetricFamily("kedahttp_proxy_reports_published", "Activity messages published",
                                  value=pub.get("published", 0))
        yield CounterMetricFamily("kedahttp_proxy_report_publish_errors", "Failed publish attempts to the bus",
                                  value=pub.get("publish_errors", 0))
        yield CounterMetricFamily("kedahttp_proxy_reports_dropped", "Reports dropped while the bus was down",
                                  value=pub.get("dropped", 0))
        yield GaugeMetricFamily("kedahttp_proxy_bus_connected", "Workers connected to the bus",
                                value=pub.get("connected", 0))
        yield GaugeMetricFamily("kedahttp_proxy_routes", "Backends in the route table", value=snap.get("routes", 0))
        yield GaugeMetricFamily("kedahttp_proxy_client_connections", "Open client connections",
                                value=snap.get("connections", 0))
        info = GaugeMetricFamily("kedahttp_proxy_build_info", "How this proxy's data path runs: compiled or python",
                                 labels=["data_path"])
        info.add_metric([compiled.data_path()], 1)
        yield info


def make_registry(snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(snapshot))  # type: ignore[arg-type]
    return registry


class MetricsServer(SideServer):
    """GET /metrics on METRICS_ADDR (aiohttp, off the data path)."""

    name = "metrics"

    def __init__(self, address: Address, snapshot: Callable[[], Snapshot]) -> None:
        super().__init__(address)
        self.registry = make_registry(snapshot)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        return app
