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

import asyncio
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
from kedahttp.process.tasks import TaskOwner
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


def app_labels(keys: list[str]) -> tuple[list[str], list[str]]:
    """The ``namespace`` and ``app`` label of each key: ``namespace/name`` -> (namespace, name); a key
    without a namespace (a routes file) -> ("", key). (No list of 10,000 tuples is kept meanwhile: it
    would be enough new objects to set off a full garbage collection.)"""
    return ([key.partition("/")[0] if "/" in key else "" for key in keys],
            [key.partition("/")[2] if "/" in key else key for key in keys])


def _escape(text: str) -> str:
    """A label value as the text format writes it, ``%`` doubled (labels go into formats); not newlines."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def _labelled(name: str, values: list[str], end: str) -> list[bytes]:
    """``name="value"`` + ``end`` for each value, escaped. When no value holds a newline of its own, all
    in one pass over the values joined by newlines."""
    joined = "\n".join(values)
    if joined.count("\n") == len(values) - 1:
        escaped = _escape(joined)
    else:
        escaped = "\n".join(_escape(value).replace("\n", "\\n") for value in values)
    between = f'"{end}\n{name}="'
    return f'{name}="{escaped.replace(chr(10), between)}"{end}'.encode().split(b"\n") if values else []


def _number(value: float) -> str:
    return f"{value}.0" if isinstance(value, int) else repr(float(value))


class _Label:
    """Marks where a line shape takes each app's own label text."""


APP, CODE, NAMESPACE = _Label(), _Label(), _Label()  # 'app="...",', 'code="2xx",' and 'namespace="..."}'
Shape = tuple[bytes | _Label, ...]


def _template(shape: Shape) -> bytes:
    """``shape`` as a format taking its labels: ``%b`` for each, the rest (and its own ``%``) kept as is."""
    return b"".join(b"%b" if isinstance(piece, _Label) else piece.replace(b"%", b"%%") for piece in shape)


def _format(shape: Shape, apps: list[bytes], namespaces: list[bytes]) -> bytes:
    """``shape`` (one app's lines, ``%`` where its numbers go) written for every app: one format."""
    labels = [apps if piece is APP else namespaces for piece in shape if isinstance(piece, _Label)]
    return (_template(shape) * len(apps)) % tuple(itertools.chain.from_iterable(zip(*labels, strict=True)))


def _blocks(shape: Shape, apps: list[bytes], namespaces: list[bytes], size: int) -> list[bytes]:
    """``_format`` for each ``size`` apps in turn: pieces small enough to be written again on their own."""
    return [_format(shape, apps[start:start + size], namespaces[start:start + size])
            for start in range(0, len(apps), size)]


def _gauge_shape(name: str) -> Shape:
    return (f"{name}{{".encode(), APP, NAMESPACE, b" %d.0\n")


def _histogram_shape(name: str, les: Iterable[str]) -> Shape:
    """Buckets, _count and _sum; the sum is a float written as repr writes it (``%a``)."""
    shape: list[bytes | _Label] = []
    for le in les:
        shape += [f"{name}_bucket{{".encode(), APP, f'le="{le}",'.encode(), NAMESPACE, b" %d.0\n"]
    return (*shape, f"{name}_count{{".encode(), APP, NAMESPACE, b" %d.0\n",
            f"{name}_sum{{".encode(), APP, NAMESPACE, b" %a\n")


def _bucket_picks(bounds: tuple[float, ...], keep: tuple[float, ...]) -> tuple[list[int], list[str]]:
    """Indexes into an app's cumulative bucket counts (each kept bound, +Inf, and +Inf again for _count),
    and the ``le`` text of each bucket: a cumulative count at a subset of the bounds is exact."""
    picks = [bounds.index(bound) for bound in keep] + [len(bounds), len(bounds)]
    return picks, [repr(float(bound)) for bound in keep] + ["+Inf"]


WAIT_PICKS, WAIT_LES = _bucket_picks(COLD_WAIT_BUCKETS, COLD_WAIT_EXPORTED)
DURATION_PICKS, DURATION_LES = _bucket_picks(DURATION_BUCKETS, DURATION_BUCKETS)
GAUGES = (("in_flight", "kedahttp_proxy_in_flight_requests"), ("held", "kedahttp_proxy_held_requests"),
          ("cold_starts", "kedahttp_proxy_cold_starts_total"))
CODES = [f'code="{code}",'.encode() for code in STATUS_CLASSES]


def _histogram_values(buckets: Iterable[list[int]], sums: Iterable[float], picks: list[int]) -> tuple[Any, ...]:
    """Every app's picked cumulative counts then its sum, flat, in the order of its histogram shape."""
    picked = map(operator.itemgetter(*picks), map(tuple, map(itertools.accumulate, buckets)))
    return tuple(itertools.chain.from_iterable(map(operator.add, picked, zip(map(float, sums)))))


HISTOGRAM_BLOCK = 16  # apps per cached piece of a histogram family


class _Histogram:
    """One per-app histogram family, kept as the text of blocks of ``HISTOGRAM_BLOCK`` apps: a scrape
    compares every app's buckets and sum with what its block was written from (C-level) and rewrites only
    the blocks where one moved. Histograms are the costly families to write (a cumulative sum per app), and
    the cold-start wait moves only when a held request is released. A new layout keeps the blocks of the
    apps it shares, in the same places, with the one before (``kept`` apps from the start)."""

    def __init__(self, shape: Shape, picks: list[int], buckets: str, total: str, layout: _Layout,
                 before: _Histogram | None = None, kept: int = 0) -> None:
        self.picks = picks
        self.fields = (buckets, total)
        n = len(layout.keys)
        blocks = kept // HISTOGRAM_BLOCK if before is not None else 0
        start = blocks * HISTOGRAM_BLOCK
        formats: list[bytes] = before.formats[:blocks] if before is not None else []
        self.formats: list[bytes] = formats + _blocks(shape, layout.apps[start:], layout.namespaces[start:], HISTOGRAM_BLOCK)
        texts: list[bytes] = before.texts[:blocks] if before is not None else []
        self.texts: list[bytes] = texts + [b""] * (len(self.formats) - blocks)
        # per app, the count and sum its block was last written from
        counts: list[int] = before.counts[:start] if before is not None else []
        sums: list[float] = before.sums[:start] if before is not None else []
        self.counts: list[int] = counts + [-1] * (n - start)
        self.sums: list[float] = sums + [-1.0] * (n - start)

    def pieces(self, counters: list[Any], get: Callable[..., Callable[[Any], Any]]) -> list[bytes]:
        buckets = list(map(get(self.fields[0]), counters))
        sums = list(map(get(self.fields[1]), counters))
        # counts only grow (summed worker snapshots too), so an app's histogram moved iff its count did;
        # the sum is compared as well
        counts = list(map(sum, buckets))
        moved = map(operator.or_, map(operator.ne, counts, self.counts), map(operator.ne, sums, self.sums))
        blocks = sorted({i // HISTOGRAM_BLOCK for i in itertools.compress(itertools.count(), moved)})
        for block in blocks:
            start, end = block * HISTOGRAM_BLOCK, (block + 1) * HISTOGRAM_BLOCK
            self.texts[block] = self.formats[block] % _histogram_values(buckets[start:end], sums[start:end],
                                                                        self.picks)
        self.counts, self.sums = counts, sums
        return self.texts


class _Layout:
    """The per-app families' formats for one list of apps, made once while that list stays the same (a
    route added or removed makes a new one); the requests format also depends on which status classes
    each app has answered, and is remade when an app answers a new one."""

    def __init__(self, keys: list[str], latency_histogram: bool, before: _Layout | None = None) -> None:
        self.keys = keys
        namespaces, apps = app_labels(keys)
        self.apps = _labelled("app", apps, ",")
        self.namespaces = _labelled("namespace", namespaces, "}")
        self.gauges = [_format(_gauge_shape(name), self.apps, self.namespaces) for _, name in GAUGES]
        # the apps at the start that the layout before had in the same places (a route added at the end
        # keeps every histogram block but the last)
        kept = next(itertools.compress(itertools.count(), map(operator.ne, keys, before.keys)),
                    min(len(keys), len(before.keys))) if before is not None else 0
        self.waits: _Histogram = _Histogram(_histogram_shape("kedahttp_proxy_cold_start_wait_seconds", WAIT_LES), WAIT_PICKS,
                                "cold_wait_buckets", "cold_wait_sum", self, before.waits if before else None, kept)
        self.durations: _Histogram | None = None if not latency_histogram else _Histogram(
            _histogram_shape("kedahttp_proxy_request_duration_seconds", DURATION_LES), DURATION_PICKS,
            "duration_buckets", "duration_sum", self, before.durations if before else None, kept)
        self.answered = b""
        self.requests = b""

    def requests_format(self, answered: bytes) -> bytes:
        """``answered`` holds a flag per (app, status class), app by app: the pairs that get a line."""
        if answered != self.answered:
            apps, namespaces = (itertools.chain.from_iterable(map(itertools.repeat, column, itertools.repeat(len(CODES))))
                                for column in (self.apps, self.namespaces))  # each app once per class
            labels = itertools.compress(zip(apps, itertools.cycle(CODES), namespaces, strict=False), answered)
            line = _template((b"kedahttp_proxy_requests_total{", APP, CODE, NAMESPACE, b" %d.0\n"))
            self.requests = (line * answered.count(1)) % tuple(itertools.chain.from_iterable(labels))
            self.answered = answered
        return self.requests


class ProxyExposition:
    """The proxy's own families in the Prometheus text format, written directly from the counters.

    prometheus_client builds an object per sample; at 10,000 apps (about 120,000 samples) that takes
    seconds, and a Python loop over the apps still tens of milliseconds. Here each per-app family is a
    format made when the apps change (``_Layout``: labels escaped and joined once), and a scrape reads the
    numbers of every app with C-level iteration (map, chain, compress over the counters) and writes them
    with one ``%`` per family, so it costs about the same whether one app or all of them saw traffic; the
    histograms, which need a cumulative sum per app, are rewritten only in the blocks of apps whose
    buckets moved. The samples are those prometheus_client would write for these families (labels in name
    order, counts as ``N.0``, a sum as repr writes it), grouped by family as the format requires;
    tests/unit/proxy/test_telemetry.py compares the two.
    Per app, by default: requests by status class (one series per class seen), in flight, held, cold
    starts and the cold-start wait (le 1, 5, 30, +Inf). ``latency_histogram`` adds the request duration
    histogram per app (21 series each). Errors, timeouts and rejections are proxy-wide counters.
    """

    def __init__(self, snapshot: Callable[[], Snapshot], latency_histogram: bool = False) -> None:
        self.snapshot = snapshot
        self.latency_histogram = latency_histogram
        self._layout = _Layout([], latency_histogram)
        self._seen: list[str] = []  # the apps at the previous ``prepare``

    def prepare(self) -> bool:
        """Writes the text once (discarded) when the apps changed and have stayed the same since the
        previous call: the layout and the histograms are then ready before the next scrape needs them.
        True when it wrote."""
        keys = list(self.snapshot().get("backends", {}))
        settled, self._seen = keys == self._seen, keys
        if not settled or keys == self._layout.keys:
            return False
        self.parts()
        return True

    def render(self) -> bytes:
        return b"".join(self.parts())

    def parts(self) -> list[bytes]:
        """The text in pieces (per family, histograms in blocks), to be written out without joining 10 MB."""
        snap = self.snapshot()
        backends: dict[str, Any] = snap.get("backends", {})
        layout = self._layout
        keys = list(backends)
        if keys != layout.keys:
            layout = self._layout = _Layout(keys, self.latency_histogram, layout)
        counters = list(backends.values())
        # live BackendCounters in one process, dicts summed from the workers' snapshots with WORKERS > 1
        get = operator.itemgetter if counters and isinstance(counters[0], dict) else operator.attrgetter
        by_class = list(itertools.chain.from_iterable(map(get("by_class"), counters)))
        answered = bytes(map(operator.truth, by_class))
        out = [self._header(0), layout.requests_format(answered) % tuple(itertools.compress(by_class, answered))]
        for i, ((field, _), fmt) in enumerate(zip(GAUGES, layout.gauges, strict=True), start=1):
            out += [self._header(i), fmt % tuple(map(get(field), counters))]
        out += [self._header(4), *layout.waits.pieces(counters, get)]
        if layout.durations is not None:
            out += [self._header(5), *layout.durations.pieces(counters, get)]
        text: list[str] = []
        add = text.append
        for field, name, doc in PROXY_WIDE:
            add(f"# HELP {name} {doc}\n# TYPE {name} counter\n{name} {sum(map(get(field), counters))}.0\n")
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
        return out

    @staticmethod
    def _header(family: int) -> bytes:
        name, kind, doc = FAMILIES[family]
        return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n".encode()


FAMILIES = (
    ("kedahttp_proxy_requests_total", "counter",
     "Requests finished, by app and status class (499: the client closed before its answer began)"),
    ("kedahttp_proxy_in_flight_requests", "gauge", "Requests being forwarded now"),
    ("kedahttp_proxy_held_requests", "gauge", "Requests held for a cold app now"),
    ("kedahttp_proxy_cold_starts_total", "counter", "Cold episodes: wake events for an app without ready "
     "endpoints"),
    ("kedahttp_proxy_cold_start_wait_seconds", "histogram", "How long held requests waited for a ready "
     "endpoint"),
    ("kedahttp_proxy_request_duration_seconds", "histogram",
     "Time from request head to response end, holding included"),
)


def make_registry() -> CollectorRegistry:
    """The families prometheus_client writes for the proxy: build info and process_*."""
    registry = CollectorRegistry(auto_describe=False)
    register_process_metrics(registry, "proxy", compiled.data_path())
    return registry


WRITE_BYTES = 1 << 18
PREPARE_SECONDS = 1.0


class MetricsServer(SideServer):
    """GET /metrics on METRICS_ADDR (aiohttp, off the data path).

    ``prepare_seconds``: how often to look whether the apps changed, so that the layout of the text is
    made once they settle rather than by the next scrape (at 10,000 apps that scrape would take about
    twice as long); None where taking a snapshot costs more than that saves (the worker supervisor sums
    the workers' snapshots to take one)."""

    name = "metrics"

    def __init__(self, address: Address, snapshot: Callable[[], Snapshot], latency_histogram: bool = False,
                 prepare_seconds: float | None = None) -> None:
        super().__init__(address)
        self.exposition = ProxyExposition(snapshot, latency_histogram)
        self.registry = make_registry()
        self.prepare_seconds = prepare_seconds
        self.tasks = TaskOwner("metrics")

    async def start(self) -> None:
        await super().start()
        if self.prepare_seconds is not None:
            self.tasks.spawn(self._prepare(self.prepare_seconds), "prepare")

    async def _prepare(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.exposition.prepare()

    async def close(self) -> None:
        await self.tasks.close()
        await super().close()

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        parts = [*self.exposition.parts(), generate_latest(self.registry)]
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
        response.content_length = sum(map(len, parts))
        await response.prepare(request)
        # written in slices, waiting for the socket between them: neither the 10 MB text nor a copy of it
        # in the transport's buffer is ever made (fresh memory that size costs more than writing the text)
        for part in parts:
            view = memoryview(part)
            for start in range(0, len(view), WRITE_BYTES):
                await response.write(view[start:start + WRITE_BYTES])
        await response.write_eof()
        return response

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        return app
