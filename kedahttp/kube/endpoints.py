"""Which addresses of a Service are ready, from Services and EndpointSlices as the API server sends them.

Pure: objects in, ``host:port`` strings out. The proxy needs this to forward and to release held
requests; the controller needs it for ``ServiceReady`` and the ready-replica count, so both fold their
watches into one ``EndpointIndex``. An HTTPApp names a Service port by number or name; the slices carry
the target port under the Service port's name (the EndpointSlice controller copies it), so a named port
is matched by name, then by numeric targetPort, then as the slice's only port.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# A Service port's appProtocol (KEP-3726) that means its endpoints speak HTTP/2 cleartext.
H2C_APP_PROTOCOLS = frozenset({"kubernetes.io/h2c", "grpc", "h2c"})


class PortError(LookupError):
    """The Service has no port the app names; the message says which ports it has."""


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str  # "" when unnamed
    target_port: int | None  # the numeric targetPort, when it has one
    app_protocol: str = ""  # spec.ports[].appProtocol, "" when unset

    @property
    def protocol(self) -> str:
        """What the proxy speaks to the endpoints: "h2c" for an HTTP/2 appProtocol, else "http1"."""
        return "h2c" if self.app_protocol in H2C_APP_PROTOCOLS else "http1"


@dataclass(frozen=True, slots=True)
class SliceEndpoints:
    service: str  # "namespace/service"
    addresses: tuple[str, ...]  # ready addresses, IPv6 in brackets
    ports: tuple[tuple[str, int], ...]  # (name, port)

    def endpoints(self, port: ServicePort) -> list[str]:
        number = _slice_port(self.ports, port)
        return [] if number is None else [f"{address}:{number}" for address in self.addresses]


def _slice_port(ports: tuple[tuple[str, int], ...], port: ServicePort) -> int | None:
    for name, number in ports:
        if name == port.name:
            return number
    if port.target_port is not None:
        for _, number in ports:
            if number == port.target_port:
                return number
    return ports[0][1] if len(ports) == 1 else None


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def object_key(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def service_port(service: Mapping[str, Any], wanted: int | str) -> ServicePort:
    """The Service port an app names (number or name); raises PortError listing the ports there are."""
    ports = [p for p in (service.get("spec") or {}).get("ports") or [] if isinstance(p, Mapping)]
    for port in ports:
        if (isinstance(wanted, int) and port.get("port") == wanted) or (
            isinstance(wanted, str) and port.get("name") == wanted
        ):
            target = port.get("targetPort", port.get("port"))
            return ServicePort(str(port.get("name") or ""), target if isinstance(target, int) else None,
                               str(port.get("appProtocol") or ""))
    have = ", ".join(f"{p.get('name') or '-'}:{p.get('port')}" for p in ports) or "none"
    raise PortError(f"Service {object_key(service)} has no port {wanted!r} (its ports: {have})")


def parse_slice(obj: Mapping[str, Any]) -> SliceEndpoints | None:
    """The ready addresses and ports of an EndpointSlice; None for a slice that names no Service."""
    meta = _meta(obj)
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service:
        return None
    ipv6 = obj.get("addressType") == "IPv6"
    addresses: list[str] = []
    for endpoint in obj.get("endpoints") or []:
        # "ready" unset means unknown, which consumers treat as ready; terminating endpoints say False.
        if (endpoint.get("conditions") or {}).get("ready") is False or not endpoint.get("addresses"):
            continue
        address = str(endpoint["addresses"][0])
        addresses.append(f"[{address}]" if ipv6 else address)
    ports = tuple(
        (str(p.get("name") or ""), int(p["port"]))
        for p in obj.get("ports") or []
        if isinstance(p.get("port"), int) and p.get("protocol", "TCP") == "TCP"
    )
    return SliceEndpoints(f"{meta.get('namespace', '')}/{service}", tuple(addresses), ports)


class EndpointIndex:
    """Services and EndpointSlices by key; each mutation returns the Service keys whose endpoints may
    have changed, so a caller recomputes only the apps behind them."""

    def __init__(self) -> None:
        self.services: dict[str, Mapping[str, Any]] = {}
        self._slices: dict[str, SliceEndpoints] = {}
        self._slices_of: dict[str, set[str]] = {}

    def services_listed(self, items: Iterable[Mapping[str, Any]]) -> set[str]:
        before = set(self.services)
        self.services = {object_key(obj): obj for obj in items}
        return before | set(self.services)

    def service_changed(self, event_type: str, obj: Mapping[str, Any]) -> set[str]:
        key = object_key(obj)
        if event_type == "DELETED":
            self.services.pop(key, None)
        else:
            self.services[key] = obj
        return {key}

    def slices_listed(self, items: Iterable[Mapping[str, Any]]) -> set[str]:
        before = set(self._slices_of)
        self._slices.clear()
        self._slices_of.clear()
        for obj in items:
            self._set_slice(object_key(obj), parse_slice(obj))
        return before | set(self._slices_of)

    def slice_changed(self, event_type: str, obj: Mapping[str, Any]) -> set[str]:
        key = object_key(obj)
        old = self._slices.get(key)
        self._set_slice(key, None if event_type == "DELETED" else parse_slice(obj))
        new = self._slices.get(key)
        return {s.service for s in (old, new) if s is not None}

    def _set_slice(self, key: str, endpoints: SliceEndpoints | None) -> None:
        old = self._slices.pop(key, None)
        if old is not None:
            keys = self._slices_of.get(old.service)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._slices_of[old.service]
        if endpoints is not None:
            self._slices[key] = endpoints
            self._slices_of.setdefault(endpoints.service, set()).add(key)

    def endpoints(self, service_key: str, wanted: int | str) -> tuple[str, ...]:
        """Ready ``address:port`` of a Service's port, sorted; raises KeyError without the Service and
        PortError without the port."""
        port = service_port(self.services[service_key], wanted)
        found: set[str] = set()
        for slice_key in self._slices_of.get(service_key, ()):
            found.update(self._slices[slice_key].endpoints(port))
        return tuple(sorted(found))

    def protocol(self, service_key: str, wanted: int | str) -> str:
        """The protocol the Service port declares (appProtocol); "http1" while the Service or port is missing."""
        try:
            return service_port(self.services[service_key], wanted).protocol
        except (KeyError, PortError):
            return "http1"

    def ready_endpoints(self, service_key: str, wanted: int | str) -> tuple[str, ...]:
        """Like ``endpoints``, but empty when the Service or its port is missing."""
        try:
            return self.endpoints(service_key, wanted)
        except (KeyError, PortError):
            return ()
