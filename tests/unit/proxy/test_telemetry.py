"""The proxy's /metrics text, written without prometheus_client: parseable, exact, escaped, and rewritten
for an app as soon as its counters move (the per-app cache must never serve stale lines); whatever the
apps and their counters, the same families, series, labels and values as prometheus_client writes from
those counters, and text promtool accepts."""

import subprocess
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from kedahttp.proxy.counters import COLD_WAIT_BUCKETS, DURATION_BUCKETS, STATUS_CLASSES, BackendCounters
from kedahttp.proxy.telemetry import COLD_WAIT_EXPORTED, FAMILIES, PROXY_WIDE, PUBLISHER, ProxyExposition
from tests.harness.scrape import parse, promtool


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


# -- the same samples as prometheus_client writes, whatever the apps and their counters ---------------------

def reference(snap: dict[str, Any], latency_histogram: bool) -> str:
    """What the proxy's own families are, written by prometheus_client's metric families from the same
    counters, computed here the plain way (one app and one sample at a time)."""
    families: list[Any] = []
    by_name: dict[str, Any] = {}

    def family(cls: Any, name: str, doc: str, labels: list[str]) -> Any:
        if name not in by_name:
            by_name[name] = cls(name, doc, labels=labels)
            families.append(by_name[name])
        return by_name[name]

    def number(b: Any, field: str) -> Any:
        return b[field] if isinstance(b, dict) else getattr(b, field)

    def histogram(name: str, doc: str, labels: list[str], b: Any, field: str, bounds: tuple[float, ...],
                  keep: tuple[float, ...]) -> None:
        counts = number(b, f"{field}_buckets")
        cumulative = [(floatToGoString(bound), sum(counts[:bounds.index(bound) + 1])) for bound in keep]
        family(HistogramMetricFamily, name, doc, ["app", "namespace"]).add_metric(
            labels, [*cumulative, ("+Inf", sum(counts))], number(b, f"{field}_sum"))

    backends = snap["backends"]
    for name, kind, doc in FAMILIES[:None if latency_histogram else -1]:  # written even with no app
        cls = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "histogram": HistogramMetricFamily}[kind]
        family(cls, name.removesuffix("_total"), doc, ["app", "code", "namespace"] if "requests_total" in name
               else ["app", "namespace"])
    for key, b in backends.items():
        namespace, sep, name = key.partition("/")
        labels = [name, namespace] if sep else [key, ""]
        requests = family(CounterMetricFamily, "kedahttp_proxy_requests", FAMILY_DOCS["kedahttp_proxy_requests_total"],
                          ["app", "code", "namespace"])
        for code, count in zip(STATUS_CLASSES, number(b, "by_class"), strict=True):
            if count:
                requests.add_metric([labels[0], code, labels[1]], count)
        for field, metric, cls in (("in_flight", "kedahttp_proxy_in_flight_requests", GaugeMetricFamily),
                                   ("held", "kedahttp_proxy_held_requests", GaugeMetricFamily),
                                   ("cold_starts", "kedahttp_proxy_cold_starts", CounterMetricFamily)):
            doc = FAMILY_DOCS[metric if cls is GaugeMetricFamily else f"{metric}_total"]
            family(cls, metric, doc, ["app", "namespace"]).add_metric(labels, number(b, field))
        histogram("kedahttp_proxy_cold_start_wait_seconds", FAMILY_DOCS["kedahttp_proxy_cold_start_wait_seconds"],
                  labels, b, "cold_wait", COLD_WAIT_BUCKETS, COLD_WAIT_EXPORTED)
        if latency_histogram:
            histogram("kedahttp_proxy_request_duration_seconds",
                      FAMILY_DOCS["kedahttp_proxy_request_duration_seconds"], labels, b, "duration", DURATION_BUCKETS,
                      DURATION_BUCKETS)
    for field, metric, doc in PROXY_WIDE:
        families.append(CounterMetricFamily(metric.removesuffix("_total"), doc,
                                            value=sum(number(b, field) for b in backends.values())))
    unrouted = snap["unrouted"]
    families.append(CounterMetricFamily("kedahttp_proxy_unrouted_requests",
                                        "Requests no route matched (404); no Host label", value=unrouted["unrouted"]))
    refused = CounterMetricFamily("kedahttp_proxy_refused_requests",
                                  "Malformed requests refused before routing, by the status answered", labels=["code"])
    for code, count in unrouted["refused"].items():
        refused.add_metric([str(code)], count)
    families.append(refused)
    for field, metric, kind, doc in PUBLISHER:
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        families.append(cls(metric.removesuffix("_total"), doc, value=snap["publisher"].get(field, 0)))
    families.append(GaugeMetricFamily("kedahttp_proxy_routes", "Backends in the route table", value=snap["routes"]))
    families.append(GaugeMetricFamily("kedahttp_proxy_client_connections", "Open client connections",
                                       value=snap["connections"]))

    class Collector:
        def collect(self) -> Any:
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())  # type: ignore[arg-type]
    return generate_latest(registry).decode()


FAMILY_DOCS = {name: doc for name, _, doc in FAMILIES}


def families(text: str) -> dict[str, tuple[str, str, list[tuple[str, tuple[tuple[str, str], ...], float]]]]:
    return {f.name: (f.type, f.documentation, sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                                                     for s in f.samples))
            for f in text_string_to_metric_families(text)}


NAMES = st.text(st.sampled_from('ab/-.%"\\\né'), min_size=1, max_size=8)
COUNTS = st.integers(0, 10**7)


@st.composite
def counters(draw: st.DrawFn, key: str) -> BackendCounters:
    c = BackendCounters(key)
    c.by_class = draw(st.lists(st.sampled_from([0, 0, 1, 12345]), min_size=6, max_size=6))
    c.in_flight, c.held, c.cold_starts, c.upstream_errors, c.waiting_pages = (draw(COUNTS) for _ in range(5))
    c.cold_wait_buckets = draw(st.lists(st.sampled_from([0, 0, 3]), min_size=len(c.cold_wait_buckets),
                                        max_size=len(c.cold_wait_buckets)))
    c.cold_wait_sum = draw(st.sampled_from([0.0, 0.25, 1e-07, 1234567.125, 7.1]))
    c.duration_buckets = draw(st.lists(COUNTS, min_size=len(c.duration_buckets), max_size=len(c.duration_buckets)))
    c.duration_sum = draw(st.floats(0, 1e9))
    return c


@given(st.data(), st.lists(NAMES, unique=True, max_size=40), st.booleans(), st.booleans())
@settings(max_examples=60, deadline=None)
def test_the_text_has_the_samples_prometheus_client_writes(data: st.DataObject, keys: list[str], latency: bool,
                                                          from_workers: bool) -> None:
    """Every family, series, label and value as prometheus_client writes them from the same counters; then
    again after some apps moved (the layout and the cached histogram blocks must follow), and after the set
    of apps changed."""
    live = {key: data.draw(counters(key)) for key in keys}
    snap = {"backends": {}, "unrouted": {"unrouted": 3, "refused": {400: 2, 431: 1}},
            "publisher": {"published": 5, "connected": 1}, "routes": len(keys), "connections": 4}

    def current() -> dict[str, Any]:
        snap["backends"] = {k: c.metrics_snapshot() for k, c in live.items()} if from_workers else live
        return snap

    exposition = ProxyExposition(current, latency_histogram=latency)
    for step in range(4):
        text = exposition.render().decode()
        assert families(text) == families(reference(current(), latency))
        for key in data.draw(st.lists(st.sampled_from(sorted(live)), max_size=5)) if live else []:
            c = live[key]
            c.by_class[data.draw(st.integers(0, 5))] += 1
            c.in_flight += 1
            c.cold_wait_buckets[data.draw(st.integers(0, len(c.cold_wait_buckets) - 1))] += 1
            c.cold_wait_sum += 0.5
            c.duration_buckets[0] += 1
        if step == 1:  # an app added after the others: the layout keeps what it shares with the one before
            live["late/comer"] = data.draw(counters("late/comer"))
        elif step == 2 and live:  # one gone from anywhere: the apps after it move up
            del live[data.draw(st.sampled_from(sorted(live)))]


def test_promtool_accepts_the_text_of_odd_names() -> None:
    keys = ['ns/a"b', "ns/back\\slash", "new\nline", "per%cent", "ns/é"] + [f"ns/app-{i}" for i in range(40)]
    backends = {}
    for key in keys:
        c = backends[key] = BackendCounters(key)
        c.by_class[2] = c.cold_wait_buckets[3] = 1
        c.cold_wait_sum = 0.5
    text = ProxyExposition(lambda: snapshot(backends), latency_histogram=True).render()
    check = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert len(values(text.decode(), "kedahttp_proxy_cold_start_wait_seconds_count")) == len(keys)


def test_prepare_writes_the_layout_once_the_apps_have_settled() -> None:
    backends = {"ns/a": BackendCounters("ns/a")}
    exposition = ProxyExposition(lambda: snapshot(backends))
    assert not exposition.prepare()  # new apps: look once more before writing
    assert exposition.prepare()  # the same apps a second time: written now
    assert not exposition.prepare()  # nothing changed since
    backends["ns/b"] = BackendCounters("ns/b")
    assert not exposition.prepare()
    backends["ns/c"] = BackendCounters("ns/c")
    assert not exposition.prepare()  # still changing
    assert exposition.prepare()
    backends["ns/b"].start(1.0)
    assert values(exposition.render().decode(), "kedahttp_proxy_in_flight_requests", app="b") == [1]
