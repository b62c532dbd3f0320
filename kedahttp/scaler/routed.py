"""Which backends the proxies route, from their reports: the difference between "idle" and "nobody routes it".

Pure: reports in, a verdict out. Every proxy report carries a fingerprint of the instance's routed set,
and the set itself when it changed or every 30 s (``proxy/reporter.py``). The verdict for a backend is
"routed" if any live proxy instance routes it, "not routed" only when *every* live instance has told us
its whole set and none has it, and "don't know" otherwise: with no live proxy, with a proxy that has not
listed its set yet (start-up, a scaler that just replayed), or with a proxy too old to say. Only "not
routed" turns into ``NOT_FOUND``; the service asks only while its view is fresh, so start-up and bus
outages stay ``UNAVAILABLE``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


class NotRouted(LookupError):
    """No live proxy routes the backend a trigger names (a typo, or an HTTPApp that is missing or invalid)."""

    def __init__(self, backend: str, proxies: int) -> None:
        self.backend = backend
        self.proxies = proxies
        super().__init__(
            f"backend {backend!r} is not routed by any of the {proxies} live proxy instance(s): no HTTPApp "
            f"{backend} exists or it is invalid (kubectl get httpapp -n {backend.partition('/')[0]}), or the "
            "trigger's backend key is misspelt"
        )


class RoutedReport(Protocol):
    @property
    def instance(self) -> str: ...
    @property
    def routes_version(self) -> int: ...
    @property
    def routes_listed(self) -> bool: ...
    @property
    def routed(self) -> Sequence[str]: ...


@dataclass(slots=True)
class _Known:
    version: int
    backends: frozenset[str] | None  # None: the fingerprint changed and the new set has not come yet


class RoutedBackends:
    def __init__(self) -> None:
        self._by_instance: dict[str, _Known] = {}

    def fold(self, report: RoutedReport) -> None:
        version = getattr(report, "routes_version", 0)
        if not version:
            self._by_instance.pop(report.instance, None)  # says nothing (yet): unknown
            return
        known = self._by_instance.get(report.instance)
        if report.routes_listed:
            self._by_instance[report.instance] = _Known(version, frozenset(report.routed))
        elif known is None or known.version != version:
            self._by_instance[report.instance] = _Known(version, None)

    def verdict(self, backend: str, live_instances: Iterable[str]) -> bool | None:
        """True: some live proxy routes it; False: every live proxy listed its routes and none has it;
        None: not known."""
        live = list(live_instances)
        if not live:
            return None
        complete = True
        for instance in live:
            known = self._by_instance.get(instance)
            if known is None or known.backends is None:
                complete = False
            elif backend in known.backends:
                return True
        return False if complete else None

    def forget(self, instances: Iterable[str]) -> None:
        for instance in instances:
            self._by_instance.pop(instance, None)
