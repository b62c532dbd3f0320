"""What every kedahttp process reports about itself on /metrics: ``kedahttp_build_info`` and ``process_*``.

One family name for every component (``component`` tells them apart), so a dashboard can list versions
and data paths of the whole installation with one query. ``process_*`` come from prometheus_client's
ProcessCollector (reads /proc at scrape time, nothing on any hot path).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric

from kedahttp import __version__


class BuildInfo:
    """A collector of one constant series: ``kedahttp_build_info{component, version, data_path} 1``."""

    def __init__(self, component: str, data_path: str) -> None:
        self.component = component
        self.data_path = data_path

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("kedahttp_build_info", "Version of this kedahttp process and how its data path "
                                 "runs (compiled, python, or none for processes without one)",
                                 labels=["component", "version", "data_path"])
        info.add_metric([self.component, __version__, self.data_path], 1)
        yield info


def register_process_metrics(registry: CollectorRegistry, component: str, data_path: str) -> None:
    """Adds build info and the standard process_* metrics to ``registry``."""
    registry.register(BuildInfo(component, data_path))  # type: ignore[arg-type]
    ProcessCollector(registry=registry)
