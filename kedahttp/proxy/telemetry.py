"""Prometheus metrics of the proxy, built at scrape time from plain counters.

The hot path never touches prometheus_client: counters.py keeps ints and bucket counts, and /metrics
writes them out as text when scraped (one process: read from the live counters; no copy). With WORKERS > 1
each worker sends its snapshot to the supervisor about once a second (workers.py) and the supervisor
serves their sum; a worker that exits leaves its last snapshot in the sum, so counters never go back.
Labels stay bounded: ``namespace`` and ``app`` (kube-state-metrics' convention: the object's namespace
and name as two labels, scraped with honorLabels) and status class, never path or endpoint. The series
budget per app is written down in docs/metrics.md and checked by tests/integration/proxy/test_metrics.py.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kedahttp.process.buildinfo import register_process_metrics
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


# The cold-start wait exported by default: three bounds out of the ones counters.py keeps (a cumulative
# count at a subset of bounds is exact), so the wait costs six series per app (docs/metrics.md).
COLD_WAIT_EXPORTED: tuple[float, ...] = (1.0, 5.0, 30.0)
PROXY_WIDE = (
    ("upstream_errors", "kedahttp_proxy_upstream_errors_total",
     "Upstream connects refused, resets and malformed responses"),
    ("held_timeouts", "kedahttp_proxy_held_timeouts_total", "Held requests answered 504 after the cold-start timeout"),
    ("held_rejected", "kedahttp_proxy_held_rejected_total", "Requests answered 503 because the hold queue was full"),
    # issue 15
    ("upstream_timeouts", "kedahttp_proxy_upstream_timeouts_total",
     "504s and cut responses from the upstream timeouts (response header, idle, total)"),
    ("tunnel_idle_closes", "kedahttp_proxy_tunnel_idle_closes_total", "WebSocket/Upgrade tunnels closed for idleness"),
    ("waiting_pages", "kedahttp_proxy_waiting_pages_total", "Browsers answered with the waiting page"),
)
PUBLISHER = (
    ("published", "kedahttp_proxy_reports_published_total", "counter", "Activity messages published"),
    ("publish_errors", "kedahttp_proxy_report_publish_errors_total", "counter", "Failed publish attempts to the bus"),
    ("dropped", "kedahttp_proxy_reports_dropped_total", "counter", "Reports dropped while the bus was down"),
    ("connected", "kedahttp_proxy_bus_connected", "gauge", "Workers connected to the bus"),
)


def app_labels(key: str) -> tuple[str, str]:
    """``namespace/name`` -> (namespace, app); a key without a namespace (a routes file) -> ("", key)."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else ("", key)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return f"{value}.0" if isinstance(value, int) else repr(float(value))


def _bucket_indexes(bounds: tuple[float, ...], keep: tuple[float, ...]) -> list[tuple[int, str]]:
    """(index into the bucket counts, ``le`` text) of each kept bound and +Inf: cumulative sums up to there."""
    out = [(bounds.index(bound), repr(float(bound))) for bound in keep]
    return [*out, (len(bounds), "+Inf")]


class ProxyExposition:
    """The proxy's own families in the Prometheus text format, written directly from the counters.

    prometheus_client builds an object per sample; at 10,000 apps (about 120,000 samples) that takes
    seconds, so the per-app families are written here as text. Each app's lines are kept with the values
    they were written from and rewritten only when those change, so a scrape of mostly idle apps is a
    comparison and a join per app. The text is what prometheus_client would write (labels in name order,
    floats as floats), grouped by family as the format requires.
    Per app, by default: requests by status class (one series per class seen), in flight, held, cold
    starts and the cold-start wait (le 1, 5, 30, +Inf). ``latency_histogram`` adds the request duration
    histogram per app (21 series each). Errors, timeouts and rejections are proxy-wide counters.
    """

    def __init__(self, snapshot: Callable[[], Snapshot], latency_histogram: bool = False) -> None:
        self.snapshot = snapshot
        self.latency_histogram = latency_histogram
        # key -> (what the lines were written from, the PROXY_WIDE counts, lines by family)
        self._apps: dict[str, tuple[tuple[Any, ...], tuple[int, ...], tuple[bytes, ...]]] = {}
        self._templates: dict[str, _Templates] = {}
        self._waits = _bucket_indexes(COLD_WAIT_BUCKETS, COLD_WAIT_EXPORTED)
        self._durations = _bucket_indexes(DURATION_BUCKETS, DURATION_BUCKETS)

    def render(self) -> bytes:
        snap = self.snapshot()
        backends: dict[str, Any] = snap.get("backends", {})
        cache = self._apps
        if len(cache) > len(backends) + 1000:
            self._apps = cache = {k: v for k, v in cache.items() if k in backends}  # forget gone apps
            self._templates = {k: v for k, v in self._templates.items() if k in backends}
        entries: list[tuple[tuple[Any, ...], tuple[int, ...], tuple[bytes, ...]]] = []
        add_entry = entries.append
        cached = cache.get
        first = next(iter(backends.values()), None)
        # Every change of an app's figures moves one of these: a request starts or completes (errors,
        # timeouts, rejections and waits happen to a request that then completes), or is held or released.
        # Snapshots from workers (dicts) have no ``completed``: what a completion moves stands in for it.
        values_of = (operator.itemgetter("started", "in_flight", "held", "duration_sum", "cold_starts",
                                         "cold_wait_sum") if isinstance(first, dict)
                     else operator.attrgetter("started", "completed", "in_flight", "held"))
        for key, b in backends.items():
            values = values_of(b)
            entry = cached(key)
            if entry is None or entry[0] != values:
                get = b.__getitem__ if isinstance(b, dict) else functools.partial(getattr, b)
                entry = cache[key] = (values, tuple(get(field) for field, _, _ in PROXY_WIDE),
                                      self._app_lines(key, get))
            add_entry(entry)
        out: list[bytes] = []
        columns = list(zip(*(entry[2] for entry in entries), strict=True)) or [() for _ in self._families()]
        for (name, kind, doc), column in zip(self._families(), columns, strict=True):
            out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n".encode())
            out.extend(column)  # one join at the end: 10 MB at 10,000 apps, copied once
        totals = ([sum(column) for column in zip(*(entry[1] for entry in entries), strict=True)]
                  or [0] * len(PROXY_WIDE))
        text: list[str] = []
        for (_, name, doc), total in zip(PROXY_WIDE, totals, strict=True):
            text.append(f"# HELP {name} {doc}\n# TYPE {name} counter\n{name} {total}.0\n")
        add = text.append
        unrouted = snap.get("unrouted", {})
        add("# HELP kedahttp_proxy_unrouted_requests_total Requests no route matched (404); no Host label\n"
            "# TYPE kedahttp_proxy_unrouted_requests_total counter\n"
            f"kedahttp_proxy_unrouted_requests_total {unrouted.get('unrouted', 0)}.0\n")
        add("# HELP kedahttp_proxy_refused_requests_total Malformed requests refused before routing, by the status "
            "answered\n# TYPE kedahttp_proxy_refused_requests_total counter\n")
        for code, count in sorted(unrouted.get("refused", {}).items()):
            add(f'kedahttp_proxy_refused_requests_total{{code="{int(code)}"}} {count}.0\n')
        publisher = snap.get("publisher", {})
        for field, name, kind, doc in PUBLISHER:
            add(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n{name} {_number(publisher.get(field, 0))}\n")
        for name, value, doc in (("kedahttp_proxy_routes", snap.get("routes", 0), "Backends in the route table"),
                                 ("kedahttp_proxy_client_connections", snap.get("connections", 0),
                                  "Open client connections")):
            add(f"# HELP {name} {doc}\n# TYPE {name} gauge\n{name} {_number(value)}\n")
        out.append("".join(text).encode())
        return b"".join(out)

    def _families(self) -> list[tuple[str, str, str]]:
        families = [
            ("kedahttp_proxy_requests_total", "counter",
             "Requests finished, by app and status class (499: the client closed before its answer began)"),
            ("kedahttp_proxy_in_flight_requests", "gauge", "Requests being forwarded now"),
            ("kedahttp_proxy_held_requests", "gauge", "Requests held for a cold app now"),
            ("kedahttp_proxy_cold_starts_total", "counter", "Cold episodes: wake events for an app without ready "
             "endpoints"),
            ("kedahttp_proxy_cold_start_wait_seconds", "histogram", "How long held requests waited for a ready "
             "endpoint"),
        ]
        if self.latency_histogram:
            families.append(("kedahttp_proxy_request_duration_seconds", "histogram",
                             "Time from request head to response end, holding included"))
        return families

    def _app_lines(self, key: str, get: Callable[[str], Any]) -> tuple[bytes, ...]:
        """One app's lines, one string per family of ``_families``, from its templates (made once)."""
        t = self._templates.get(key)
        if t is None:
            t = self._templates[key] = _Templates(key, self._waits, self._durations if self.latency_histogram else [])
        lines = [
            b"".join([template % count for template, count in zip(t.requests, get("by_class"), strict=True)
                      if count]),
            t.in_flight % get("in_flight"),
            t.held % get("held"),
            t.cold_starts % get("cold_starts"),
            _histogram(t.waits, self._waits, get("cold_wait_buckets"), get("cold_wait_sum")),
        ]
        if self.latency_histogram:
            lines.append(_histogram(t.durations, self._durations, get("duration_buckets"), get("duration_sum")))
        return tuple(lines)


class _Templates:
    """One app's lines with ``%d`` where the numbers go: labels are escaped and joined once per app."""

    __slots__ = ("cold_starts", "durations", "held", "in_flight", "requests", "waits")

    def __init__(self, key: str, waits: list[tuple[int, str]], durations: list[tuple[int, str]]) -> None:
        namespace, name = app_labels(key)
        app, ns = f'app="{_escape(name)}"', f'namespace="{_escape(namespace)}"'.replace("%", "%%")
        app = app.replace("%", "%%")
        self.requests = tuple(f'kedahttp_proxy_requests_total{{{app},code="{code}",{ns}}} %d.0\n'.encode()
                              for code in STATUS_CLASSES)
        self.in_flight = f"kedahttp_proxy_in_flight_requests{{{app},{ns}}} %d.0\n".encode()
        self.held = f"kedahttp_proxy_held_requests{{{app},{ns}}} %d.0\n".encode()
        self.cold_starts = f"kedahttp_proxy_cold_starts_total{{{app},{ns}}} %d.0\n".encode()
        self.waits = _histogram_template("kedahttp_proxy_cold_start_wait_seconds", app, ns, waits)
        self.durations = _histogram_template("kedahttp_proxy_request_duration_seconds", app, ns, durations)


def _histogram_template(name: str, app: str, ns: str, buckets: list[tuple[int, str]]) -> bytes:
    lines = [f'{name}_bucket{{{app},le="{le}",{ns}}} %d.0\n' for _, le in buckets]
    lines.append(f"{name}_count{{{app},{ns}}} %d.0\n{name}_sum{{{app},{ns}}} %b\n")
    return "".join(lines).encode()


def _histogram(template: bytes, buckets: list[tuple[int, str]], counts: list[int], total: float) -> bytes:
    cumulative = list(itertools.accumulate(counts))
    values = [cumulative[i] for i, _ in buckets]
    return template % (*values, values[-1], repr(float(total)).encode())


def make_registry() -> CollectorRegistry:
    """The families prometheus_client writes for the proxy: build info and process_*."""
    registry = CollectorRegistry(auto_describe=False)
    register_process_metrics(registry, "proxy", compiled.data_path())
    return registry


class MetricsServer(SideServer):
    """GET /metrics on METRICS_ADDR (aiohttp, off the data path)."""

    name = "metrics"

    def __init__(self, address: Address, snapshot: Callable[[], Snapshot], latency_histogram: bool = False) -> None:
        super().__init__(address)
        self.exposition = ProxyExposition(snapshot, latency_histogram)
        self.registry = make_registry()

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.exposition.render() + generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        return app
