"""Kubernetes objects as the API server stores them (HTTPApp, Service, EndpointSlice, ScaledObject), and a
RouteSink that records its calls: shared by the unit and integration tests of the route source and the
controller."""

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


def httpapp(name: str, hosts: Sequence[str] = (), ns: str = "default", prefixes: Sequence[str] | None = None,
            cold: float | None = None, service: str | None = None, port: int | str = 80,
            scaling: dict[str, Any] | None = None, cold_start: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "hosts": list(hosts) or [f"{name}.example.com"],
        "service": {"name": service or name, "port": port},
    }
    if prefixes is not None:
        spec["pathPrefixes"] = list(prefixes)
    if cold is not None or cold_start:
        spec["coldStart"] = ({"timeoutSeconds": cold} if cold is not None else {}) | (cold_start or {})
    if scaling is not None:
        spec["scaling"] = scaling
    return {"apiVersion": "kedahttp.dev/v1alpha1", "kind": "HTTPApp",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def config_map(name: str, data: dict[str, str], ns: str = "default", labelled: bool = True) -> dict[str, Any]:
    """A ConfigMap; ``labelled``: with the label that makes the proxy read it as a waiting-page template."""
    labels = {"kedahttp.dev/waiting-page": "true"} if labelled else {}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": labels}, "data": data}


def service(name: str, ns: str = "default", ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": ports or [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def eps(name: str, svc: str, ready: Iterable[str] = (), not_ready: Iterable[str] = (), ns: str = "default",
        ports: list[dict[str, Any]] | None = None, address_type: str = "IPv4") -> dict[str, Any]:
    endpoints = [{"addresses": [a], "conditions": {"ready": True}} for a in ready]
    endpoints += [{"addresses": [a], "conditions": {"ready": False, "terminating": True}} for a in not_ready]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
