"""Prometheus metrics of the proxy, built at scrape time from plain counters.

The hot path never touches prometheus_client: counters.py keeps ints and bucket counts, and a custom
collector turns a *snapshot* of them into metric families when /metrics is scraped. With WORKERS > 1
each worker sends its snapshot to the supervisor about once a second (workers.py) and the supervisor
serves their sum; a worker that exits leaves its last snapshot in the sum, so counters never go back.
Labels stay bounded: ``namespace`` and ``app`` (kube-state-metrics' convention: the object's namespace
and name as two labels, scraped with honorLabels) and status class, never path or endpoint. The series
budget per app is written down in docs/metrics.md and checked by tests/integration/proxy/test_metrics.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kedahttp.process.buildinfo import register_process_metrics
from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.settings import Address
from kedahttp.proxy import compiled
from kedahttp.proxy.counters import COLD_WAIT_BUCKETS, DURATION_BUCKETS, STATUS_CLASSES, sum_snapshots

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
        "publisher": publisher,
        "routes": max((s.get("routes", 0) for s in snaps), default=0),
        "connections": sum(s.get("connections", 0) for s in snaps),
    }


# The cold-start wait exported by default: three bounds out of the ones counters.py keeps (a cumulative
# count at a subset of bounds is exact), so the wait costs six series per app (docs/metrics.md).
COLD_WAIT_EXPORTED: tuple[float, ...] = (1.0, 5.0, 30.0)
PROXY_WIDE_FIELDS = (
    ("upstream_errors", "kedahttp_proxy_upstream_errors", "Upstream connects refused, resets and malformed responses"),
    ("held_timeouts", "kedahttp_proxy_held_timeouts", "Held requests answered 504 after the cold-start timeout"),
    ("held_rejected", "kedahttp_proxy_held_rejected", "Requests answered 503 because the hold queue was full"),
)


def app_labels(key: str) -> list[str]:
    """``namespace/name`` -> [namespace, app]; a key without a namespace (a routes file) -> ["", key]."""
    namespace, sep, name = key.partition("/")
    return [namespace, name] if sep else ["", key]


def _buckets(bounds: tuple[float, ...], counts: list[int], keep: tuple[float, ...]) -> list[tuple[str, float]]:
    """Cumulative buckets at the bounds in ``keep`` (each one of ``bounds``) and +Inf."""
    out: list[tuple[str, float]] = []
    cumulative = 0
    wanted = iter((*keep, float("inf")))
    want: float | None = next(wanted)
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += count
        if bound == want:
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
            want = next(wanted, None)
    return out


class ProxyCollector:
    """A prometheus_client collector over a snapshot function.

    Per app, by default: requests by status class (one series per class seen), in-flight, held, cold
    starts and the cold-start wait histogram (le 1, 5, 30, +Inf). ``latency_histogram`` adds the request
    duration histogram per app (21 series each). Errors, timeouts and rejections are proxy-wide counters.
    """

    def __init__(self, snapshot: Callable[[], Snapshot], latency_histogram: bool = False) -> None:
        self.snapshot = snapshot
        self.latency_histogram = latency_histogram

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        backends: dict[str, dict[str, Any]] = snap.get("backends", {})
        labels = ["namespace", "app"]
        requests = CounterMetricFamily("kedahttp_proxy_requests", "Requests finished, by app and status class "
                                       "(0xx: failed before a status was sent)", labels=[*labels, "code"])
        in_flight = GaugeMetricFamily("kedahttp_proxy_in_flight_requests", "Requests being forwarded now",
                                      labels=labels)
        held = GaugeMetricFamily("kedahttp_proxy_held_requests", "Requests held for a cold app now", labels=labels)
        cold = CounterMetricFamily("kedahttp_proxy_cold_starts", "Cold episodes: wake events for an app "
                                   "without ready endpoints", labels=labels)
        waits = HistogramMetricFamily("kedahttp_proxy_cold_start_wait_seconds", "How long held requests waited "
                                      "for a ready endpoint", labels=labels)
        durations = HistogramMetricFamily("kedahttp_proxy_request_duration_seconds", "Time from request head to "
                                          "response end, holding included", labels=labels)
        totals = dict.fromkeys((f for f, _, _ in PROXY_WIDE_FIELDS), 0)
        for key, b in sorted(backends.items()):
            names = app_labels(key)
            for code, count in zip(STATUS_CLASSES, b["by_class"], strict=True):
                if count:
                    requests.add_metric([*names, code], count)
            in_flight.add_metric(names, b["in_flight"])
            held.add_metric(names, b["held"])
            cold.add_metric(names, b["cold_starts"])
            waits.add_metric(names, _buckets(COLD_WAIT_BUCKETS, b["cold_wait_buckets"], COLD_WAIT_EXPORTED),
                             b["cold_wait_sum"])
            if self.latency_histogram:
                durations.add_metric(names, _buckets(DURATION_BUCKETS, b["duration_buckets"], DURATION_BUCKETS),
                                     b["duration_sum"])
            for field in totals:
                totals[field] += b[field]
        yield requests
        yield in_flight
        yield held
        yield cold
        yield waits
        if self.latency_histogram:
            yield durations
        for field, name, doc in PROXY_WIDE_FIELDS:
            yield CounterMetricFamily(name, doc, value=totals[field])
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


def make_registry(snapshot: Callable[[], Snapshot], latency_histogram: bool = False) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(snapshot, latency_histogram))  # type: ignore[arg-type]
    register_process_metrics(registry, "proxy", compiled.data_path())
    return registry


class MetricsServer(BaseComponent):
    """GET /metrics on METRICS_ADDR (aiohttp, off the data path)."""

    name = "metrics"

    def __init__(self, address: Address, snapshot: Callable[[], Snapshot], latency_histogram: bool = False) -> None:
        self.address = address
        self.registry = make_registry(snapshot, latency_histogram)
        self._runner: web.AppRunner | None = None
        self.port = address.port

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address.host, self.address.port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
