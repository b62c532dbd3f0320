"""Kubernetes objects as the route source sees them (managed Services, EndpointSlices) and a route sink
that records every call, for the route-source tests with and without an API server."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from kedahttp.proxy.sources import Backend


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.backends: dict[str, Backend] = {}
        self.endpoints: dict[str, tuple[str, ...]] = {}

    def replace_backends(self, backends: Iterable[Backend]) -> None:
        backends = list(backends)
        self.calls.append(("replace", sorted(b.key for b in backends)))
        self.backends = {b.key: b for b in backends}
        self.endpoints = {k: v for k, v in self.endpoints.items() if k in self.backends}

    def upsert_backend(self, backend: Backend) -> None:
        self.calls.append(("upsert", backend.key))
        self.backends[backend.key] = backend

    def remove_backend(self, key: str) -> None:
        self.calls.append(("remove", key))
        self.backends.pop(key, None)
        self.endpoints.pop(key, None)

    def set_endpoints(self, key: str, endpoints: Sequence[str]) -> None:
        self.calls.append(("endpoints", key, tuple(endpoints)))
        assert key in self.backends, "endpoints for a backend the sink does not know"
        self.endpoints[key] = tuple(endpoints)

    def take(self) -> list[tuple[Any, ...]]:
        calls, self.calls = self.calls, []
        return calls


def service(name: str, hosts: str = "", ns: str = "default", prefixes: str | None = None,
            cold: str | None = None, ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    annotations = {"kedahttp.dev/hosts": hosts or f"{name}.example.com"}
    if prefixes is not None:
        annotations["kedahttp.dev/path-prefixes"] = prefixes
    if cold is not None:
        annotations["kedahttp.dev/cold-start-timeout-seconds"] = cold
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations,
                     "labels": {"app.kubernetes.io/managed-by": "kedahttp"}},
        "spec": {"ports": ports or [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def eps(name: str, svc: str, ready: Iterable[str] = (), not_ready: Iterable[str] = (), ns: str = "default",
        ports: list[dict[str, Any]] | None = None, address_type: str = "IPv4") -> dict[str, Any]:
    endpoints = [{"addresses": [a], "conditions": {"ready": True}} for a in ready]
    endpoints += [{"addresses": [a], "conditions": {"ready": False, "terminating": True}} for a in not_ready]
    return {
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
