"""Where routes and readiness come from: one interface for the routes file, Kubernetes and ``kedahttp dev``.

A source tells a sink which backends exist (hosts, path prefixes, per-backend cold-start timeout, the
per-app timeouts and placeholder of app_settings.py) and which endpoints of each are ready to take
traffic. The proxy forwards to ready endpoints directly and releases held requests the moment a backend's
endpoint list turns non-empty, so a source pushes changes as they happen rather than being polled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kedahttp.proxy.app_settings import NO_OVERRIDES, AppSettings


@dataclass(frozen=True, slots=True)
class Backend:
    key: str  # "namespace/name", the identity used on the bus and in metrics
    hosts: tuple[str, ...]  # exact names or "*.suffix" wildcards, lower case, no port
    path_prefixes: tuple[str, ...] = ("/",)
    cold_start_timeout_seconds: float | None = None  # None: the COLD_START_TIMEOUT_SECONDS setting
    protocol: str = "http1"  # what the endpoints speak: "http1" or "h2c" (HTTP/2 cleartext, gRPC)
    settings: AppSettings = NO_OVERRIDES  # timeouts and cold-start placeholder; unset fields: the settings


PROTOCOLS = ("http1", "h2c")


class RouteSink(Protocol):
    def replace_backends(self, backends: Iterable[Backend]) -> None:
        """The full set of backends; any backend not in it is removed (its held requests answered 404)."""

    def upsert_backend(self, backend: Backend) -> None: ...

    def remove_backend(self, key: str) -> None: ...

    def set_endpoints(self, key: str, endpoints: Sequence[str]) -> None:
        """Ready endpoints of a backend as ``host:port``; empty means cold (requests are held)."""


class RouteSource(Protocol):
    name: str

    async def run(self, sink: RouteSink) -> None:
        """Feeds the sink until cancelled. Reports the initial state as soon as it is known."""
