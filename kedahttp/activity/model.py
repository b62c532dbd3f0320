"""The activity report and the wake event: what proxy instances tell scalers, as plain data.

A report is a snapshot of point values (in_flight, held at ``sent_at``) plus deltas of everything counted
since the instance's previous report (started, completed, busy_seconds). ``busy_seconds`` is the exact
integral of in_flight + held over the covered interval, kept by the proxy from request start and end
times: a 1 ms request adds 0.001 s, so nothing is lost to sampling. Backends with nothing to say are
left out; an empty report is the instance's heartbeat.

The aggregator reads these attributes by name, so it folds decoded protobuf messages (same names)
as well as these dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class BackendActivityLike(Protocol):
    @property
    def backend(self) -> str: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def held(self) -> int: ...
    @property
    def started(self) -> int: ...
    @property
    def completed(self) -> int: ...
    @property
    def busy_seconds(self) -> float: ...
    @property
    def last_request_at(self) -> float: ...


class ReportLike(Protocol):
    @property
    def instance(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def sent_at(self) -> float: ...
    @property
    def interval_start(self) -> float: ...
    @property
    def interval_seconds(self) -> float: ...
    @property
    def backends(self) -> Sequence[BackendActivityLike]: ...


class WakeLike(Protocol):
    @property
    def backend(self) -> str: ...
    @property
    def instance(self) -> str: ...
    @property
    def at(self) -> float: ...


@dataclass(frozen=True, slots=True)
class BackendActivity:
    backend: str  # "namespace/name"
    in_flight: int = 0
    held: int = 0
    started: int = 0
    completed: int = 0
    busy_seconds: float = 0.0
    last_request_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Report:
    instance: str
    seq: int
    sent_at: float
    interval_start: float
    interval_seconds: float
    backends: tuple[BackendActivity, ...] = field(default=())
    routes_version: int = 0  # fingerprint of the routed backends; 0: not known (see activity.proto)
    routes_listed: bool = False  # whether ``routed`` carries the whole set
    routed: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class WakeEvent:
    backend: str
    instance: str
    at: float


def backend_key(namespace: str, name: str) -> str:
    """The one spelling of a backend's identity on the bus and in metrics: ``namespace/name``."""
    return f"{namespace}/{name}"
