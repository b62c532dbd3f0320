"""Reading a Prometheus text exposition the way Prometheus does, for tests that count series."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Series:
    name: str  # the sample name (with _total, _bucket, _sum, _count)
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)


def parse(text: str) -> list[Series]:
    return [Series(s.name, tuple(sorted(s.labels.items())), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


async def scrape(port: int, path: str = "/metrics") -> str:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        assert response.status == 200, await response.text()
        return await response.text()


def series_per_app(series: list[Series]) -> Counter[tuple[str, str]]:
    """How many series carry each (namespace, app) label pair."""
    return Counter((s.label("namespace") or "", s.label("app") or "") for s in series if s.label("app") is not None)


def family_names(series: list[Series]) -> set[str]:
    """Metric family names as a PromQL expression would use them (histogram parts under their family too)."""
    names = set()
    for s in series:
        names.add(s.name)
        for suffix in ("_bucket", "_sum", "_count", "_total", "_created"):
            if s.name.endswith(suffix):
                names.add(s.name[: -len(suffix)])
    return names


def promtool() -> str:
    """Prometheus' promtool (Debian package prometheus; `make deps` installs it where missing)."""
    path = shutil.which("promtool")
    if path is None:
        raise AssertionError("promtool not found: run `make deps` (installs Debian's prometheus package)")
    return path
