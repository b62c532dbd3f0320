"""The scaler's Prometheus metrics and the ``/metrics`` endpoint on METRICS_ADDR.

gRPC calls are observed in one histogram by method and status code (its ``_count`` is the call count).
Everything else is read at scrape time from the plain counters the feed, the aggregator and the push
hub keep anyway, so the fold path pays nothing for being observable. Each scaler has its own registry,
so several can run in one process (tests, ``kedahttp dev``). No series is per app: the scaler's cost on
/metrics does not grow with the number of apps (docs/metrics.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from kedahttp.process.buildinfo import register_process_metrics
from kedahttp.process.settings import Address
from kedahttp.process.sideserver import SideServer
from kedahttp.scaler.state import ScalerState

log = logging.getLogger("kedahttp.scaler.telemetry")

CALL_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 3.0)


class Telemetry:
    def __init__(self, state: ScalerState) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._calls = Histogram(
            "kedahttp_scaler_call_seconds",
            "gRPC calls of the external scaler interface by method and status code, and how long they took",
            ["method", "code"],
            buckets=CALL_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str], Histogram] = {}
        self.registry.register(_StateCollector(state))
        register_process_metrics(self.registry, "scaler", "none")  # the scaler has no compiled data path

    def observe(self, method: str, code: str, seconds: float) -> None:
        child = self._children.get((method, code))
        if child is None:
            child = self._children[(method, code)] = self._calls.labels(method, code)
        child.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, state: ScalerState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        state = self.state
        agg = state.aggregator
        feed = state.feed.state
        hub = state.hub
        now = time.time()

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"kedahttp_scaler_{name}", doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"kedahttp_scaler_{name}", doc, value=value)

        yield gauge("feed_fresh", "1 when answers can be trusted (bus connected, history replayed, not quiet)",
                    1.0 if state.fresh(now) else 0.0)
        yield gauge("feed_connected", "1 while subscribed to the activity bus", 1.0 if feed.connected else 0.0)
        yield counter("bus_errors", "lost bus connections and failed subscriptions", feed.errors)
        yield counter("decode_errors", "bus messages skipped because they were not activity envelopes",
                      feed.decode_errors)
        yield gauge("report_lag_seconds", "now minus sent_at of the newest activity report folded",
                    now - agg.last_report_sent_at if agg.last_report_sent_at else math.nan)
        yield gauge("seconds_since_last_message", "since the last message arrived from the bus",
                    now - state.last_message_at if state.last_message_at else math.nan)
        folds = CounterMetricFamily("kedahttp_scaler_folds", "messages folded into the metrics, by kind",
                                    labels=["kind"])
        folds.add_metric(["report"], agg.reports)
        folds.add_metric(["wake"], agg.wakes)
        yield folds
        yield counter("duplicate_reports", "re-sent or replayed reports ignored", agg.duplicates)
        yield counter("lost_reports", "reports missing from proxy instances' sequence numbers", agg.lost_reports)
        yield counter("expired_instances", "proxy instances dropped after falling silent", agg.expired_instances)
        yield gauge("proxy_instances", "proxy instances reporting", agg.live_instances)
        yield gauge("backends", "backends with recent activity held in memory", agg.backends)
        lag = state.loop_lag
        buckets = []
        total = 0
        for bound, count in zip(lag.BUCKETS, lag.counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == math.inf else repr(bound), total))
        yield HistogramMetricFamily("kedahttp_scaler_loop_lag_seconds",
                                    "how late a 0.25 s timer fires: time calls wait behind other work",
                                    buckets=buckets, sum_value=lag.sum)
        yield gauge("open_streams", "open StreamIsActive calls", hub.open_streams)
        yield counter("pushes", "trues sent on StreamIsActive streams", hub.pushes)


class MetricsServer(SideServer):
    """Serves ``GET /metrics`` (and ``/healthz``) over HTTP with aiohttp."""

    name = "scaler-metrics"

    def __init__(self, telemetry: Telemetry, address: Address) -> None:
        super().__init__(address)
        self.telemetry = telemetry

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.telemetry.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")
