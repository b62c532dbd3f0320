"""Activity reports computed exactly from a list of requests: what a proxy instance would publish.

The aggregation tests (example-based and property-based) fold these and compare the windows with the
exact integral over the requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kedahttp.activity.model import BackendActivity, Report

INTERVAL = 0.25


@dataclass(frozen=True)
class Request:
    backend: str
    start: float
    end: float


def reports_for(
    instance: str,
    requests: Iterable[Request],
    boundaries: Sequence[float],
    interval: float = INTERVAL,
    seq0: int = 0,
) -> list[Report]:
    """What a proxy instance would publish for these requests, one report per (boundaries[i-1], boundaries[i]].

    busy_seconds is the exact integral of in-flight over the interval; started counts arrivals in it;
    in_flight is the point value at sent_at.
    """
    requests = list(requests)
    out = []
    for i in range(1, len(boundaries)):
        a, b = boundaries[i - 1], boundaries[i]
        entries = []
        for backend in sorted({r.backend for r in requests}):
            mine = [r for r in requests if r.backend == backend]
            busy = sum(max(0.0, min(r.end, b) - max(r.start, a)) for r in mine)
            started = [r for r in mine if a <= r.start < b]
            completed = sum(1 for r in mine if a < r.end <= b)
            in_flight = sum(1 for r in mine if r.start < b < r.end)
            if busy or started or completed or in_flight:
                entries.append(
                    BackendActivity(
                        backend=backend,
                        in_flight=in_flight,
                        started=len(started),
                        completed=completed,
                        busy_seconds=busy,
                        last_request_at=max((r.start for r in started), default=0.0),
                    )
                )
        out.append(Report(instance, seq0 + i, b, a, interval, tuple(entries)))
    return out


def quarter_seconds(start: float, end: float) -> list[float]:
    return [start + 0.25 * k for k in range(int((end - start) / 0.25) + 1)]
