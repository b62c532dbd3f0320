"""Each report says which backends this proxy routes: a fingerprint always (once the route source has
reported), the set itself when it changes and every 30 s, through the real codec."""

from __future__ import annotations

from typing import Any

from kedahttp.activity import codec
from kedahttp.activity.model import Report, WakeEvent
from kedahttp.proxy import reporter as reporter_mod
from kedahttp.proxy.counters import CounterRegistry
from kedahttp.proxy.reporter import Reporter, routes_fingerprint


class Collecting:
    stats: Any = None

    def __init__(self) -> None:
        self.reports: list[Any] = []

    async def start(self) -> None: ...

    async def close(self, timeout: float = 2.0) -> None: ...

    def publish_report(self, report: Report) -> None:
        self.reports.append(codec.decode(codec.encode_report(report)))  # as a scaler reads it

    def publish_wake(self, wake: WakeEvent) -> None: ...


def test_the_routed_set_goes_out_when_known_and_when_it_changes(monkeypatch: Any) -> None:
    published = Collecting()
    table: dict[str, object] | None = None
    reporter = Reporter(CounterRegistry("p1"), published, 0.25, routed=lambda: table)
    reporter.report_now()
    assert published.reports[-1].routes_version == 0  # the route source has not reported: nothing said
    table = {"ns/a": object(), "ns/b": object()}
    reporter.report_now()
    first = published.reports[-1]
    assert first.routes_listed and list(first.routed) == ["ns/a", "ns/b"]
    assert first.routes_version == routes_fingerprint({"ns/b", "ns/a"}) != 0
    reporter.report_now()
    second = published.reports[-1]
    assert (second.routes_version, second.routes_listed, list(second.routed)) == (first.routes_version, False, [])
    table = {"ns/a": object()}
    reporter.report_now()
    changed = published.reports[-1]
    assert changed.routes_listed and list(changed.routed) == ["ns/a"] and changed.routes_version != first.routes_version
    monkeypatch.setattr(reporter_mod, "ROUTES_RELIST_SECONDS", 0.0)  # and again when due, unchanged
    reporter.report_now()
    assert published.reports[-1].routes_listed
