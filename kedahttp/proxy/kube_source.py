"""Routes and readiness from the cluster (ROUTES=kubernetes): Services labelled for kedahttp, and their EndpointSlices.

Two list-then-watch loops run in threads (the official client blocks), one for the Services selected by
``app.kubernetes.io/managed-by=kedahttp`` and one for every EndpointSlice that names a Service, and hand
what they see to the event loop with ``call_soon_threadsafe``. A watch that drops resumes from the last
resourceVersion it saw; ``410 Gone`` makes it list again. ``ClusterRoutes`` folds both streams into the
sink with the fewest calls: a Service's backend is upserted when its annotations change, and its ready
endpoints are set the moment a slice reports one. A Service with a malformed annotation is logged and
left out; it never affects another app's routes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kedahttp.kube import appspec
from kedahttp.kube.cluster import ENDPOINT_SLICE, SERVICE, Cluster, ClusterError, Gone, Kind
from kedahttp.process.backoff import Backoff
from kedahttp.process.settings import Settings
from kedahttp.proxy.sources import Backend, RouteSink

log = logging.getLogger("kedahttp.kube_source")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PREFERRED_PORT_NAME = appspec.PORT_NAME


# -- the fold: pure data in, sink calls out ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceRoute:
    backend: Backend
    port_name: str  # the Service port traffic goes to ("" when unnamed)
    target_port: int | None  # its numeric targetPort, when it has one


@dataclass(frozen=True, slots=True)
class SliceEndpoints:
    service: str  # "namespace/service"
    addresses: tuple[str, ...]  # ready addresses, IPv6 in brackets
    ports: tuple[tuple[str, int], ...]  # (name, port)

    def endpoints(self, route: ServiceRoute) -> list[str]:
        port = _slice_port(self.ports, route)
        return [] if port is None else [f"{address}:{port}" for address in self.addresses]


def _slice_port(ports: tuple[tuple[str, int], ...], route: ServiceRoute) -> int | None:
    """The slice's port for the Service port: same name (the controller copies it), else the only one."""
    for name, number in ports:
        if name == route.port_name:
            return number
    if route.target_port is not None:
        for _, number in ports:
            if number == route.target_port:
                return number
    return ports[0][1] if len(ports) == 1 else None


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def object_key(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def parse_service(obj: Mapping[str, Any]) -> ServiceRoute:
    """A Service as a route; raises SpecError naming what is wrong with it."""
    routes = appspec.routes_from_annotations(_meta(obj).get("annotations"))
    ports = [p for p in (obj.get("spec") or {}).get("ports") or [] if isinstance(p, Mapping)]
    if not ports:
        raise appspec.SpecError("spec.ports", "the Service has no port")
    port = next((p for p in ports if p.get("name") == PREFERRED_PORT_NAME), ports[0])
    target = port.get("targetPort", port.get("port"))
    backend = Backend(
        key=object_key(obj),
        hosts=routes.hosts,
        path_prefixes=routes.path_prefixes,
        cold_start_timeout_seconds=routes.cold_start_timeout_seconds,
    )
    return ServiceRoute(backend, str(port.get("name") or ""), target if isinstance(target, int) else None)


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


class ClusterRoutes:
    """Folds Service and EndpointSlice lists and events into a RouteSink, calling it only on change.

    Nothing reaches the sink until both kinds have been listed once; then the first state goes out as
    one ``replace_backends`` and later changes as upserts, removals and endpoint updates.
    """

    def __init__(self, sink: RouteSink) -> None:
        self._sink = sink
        self._services: dict[str, ServiceRoute] = {}
        self._problems: dict[str, str] = {}  # service key -> what is wrong with it (logged once)
        self._slices: dict[str, SliceEndpoints] = {}  # slice key -> endpoints
        self._slices_of: dict[str, set[str]] = {}  # service key -> slice keys
        self._listed: set[str] = set()
        self._published: dict[str, Backend] = {}
        self._published_endpoints: dict[str, tuple[str, ...]] = {}
        self.synced = False

    # services

    def services_listed(self, items: Iterable[Mapping[str, Any]]) -> None:
        before = set(self._services) | set(self._problems)
        self._services.clear()
        self._problems.clear()
        for obj in items:
            self._set_service(obj)
        self._listed.add(SERVICE.plural)
        self._after_change(before | set(self._services) | set(self._problems))

    def service_changed(self, event_type: str, obj: Mapping[str, Any]) -> None:
        key = object_key(obj)
        if event_type == "DELETED":
            self._services.pop(key, None)
            self._problems.pop(key, None)
        else:
            self._set_service(obj)
        self._after_change({key})

    def _set_service(self, obj: Mapping[str, Any]) -> None:
        key = object_key(obj)
        try:
            self._services[key] = parse_service(obj)
            self._problems.pop(key, None)
        except appspec.SpecError as exc:
            self._services.pop(key, None)
            if self._problems.get(key) != str(exc):
                log.warning("service skipped: malformed kedahttp settings", extra={"service": key, "error": str(exc)})
            self._problems[key] = str(exc)

    # endpoint slices

    def slices_listed(self, items: Iterable[Mapping[str, Any]]) -> None:
        before = set(self._slices_of)
        self._slices.clear()
        self._slices_of.clear()
        for obj in items:
            self._set_slice(object_key(obj), parse_slice(obj))
        self._listed.add(ENDPOINT_SLICE.plural)
        self._after_change(before | set(self._slices_of))

    def slice_changed(self, event_type: str, obj: Mapping[str, Any]) -> None:
        key = object_key(obj)
        old = self._slices.get(key)
        self._set_slice(key, None if event_type == "DELETED" else parse_slice(obj))
        new = self._slices.get(key)
        self._after_change({s.service for s in (old, new) if s is not None})

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

    # publishing

    @property
    def backend_count(self) -> int:
        return len(self._published)

    def endpoints_of(self, key: str) -> tuple[str, ...]:
        route = self._services.get(key)
        if route is None:
            return ()
        found: set[str] = set()
        for slice_key in self._slices_of.get(key, ()):
            found.update(self._slices[slice_key].endpoints(route))
        return tuple(sorted(found))

    def _after_change(self, keys: Iterable[str]) -> None:
        if not self.synced:
            if len(self._listed) < 2:
                return
            self.synced = True
            self._sink.replace_backends([route.backend for route in self._services.values()])
            self._published = {key: route.backend for key, route in self._services.items()}
            self._published_endpoints = {}
            keys = self._services
        for key in sorted(keys):
            self._reconcile(key)

    def _reconcile(self, key: str) -> None:
        route = self._services.get(key)
        if route is None:
            if key in self._published:
                del self._published[key]
                self._published_endpoints.pop(key, None)
                self._sink.remove_backend(key)
            return
        if self._published.get(key) != route.backend:
            self._published[key] = route.backend
            self._sink.upsert_backend(route.backend)
        endpoints = self.endpoints_of(key)
        if endpoints != self._published_endpoints.get(key, ()):
            self._published_endpoints[key] = endpoints
            self._sink.set_endpoints(key, endpoints)


# -- the watch loops ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listed:
    kind: Kind
    items: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Changed:
    kind: Kind
    type: str
    object: dict[str, Any]


class Watcher:
    """Lists then watches one kind in a daemon thread, handing ``Listed``/``Changed`` to ``deliver``.

    A dropped or failed watch is opened again from the last resourceVersion seen (bookmarks included),
    after a backoff when it fails; ``Gone`` (410) lists again. ``stop`` ends the thread promptly, even in
    the middle of a blocking read.
    """

    def __init__(
        self,
        cluster: Cluster,
        kind: Kind,
        namespace: str | None,
        label_selector: str,
        deliver: Callable[[Listed | Changed], None],
        watch_timeout_seconds: int = 300,
        retry_min_seconds: float = 0.5,
        retry_max_seconds: float = 15.0,
    ) -> None:
        self.cluster = cluster
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.deliver = deliver
        self.watch_timeout_seconds = watch_timeout_seconds
        self.retry_min_seconds = retry_min_seconds
        self.retry_max_seconds = retry_max_seconds
        self.resource_version = ""
        self._stopped = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, name=f"kedahttp-watch-{kind.plural}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._stream_lock:
            if self._stream is not None:
                self._stream.close()

    def _run(self) -> None:
        backoff = Backoff(self.retry_min_seconds, self.retry_max_seconds, jitter=(0.8, 1.2))
        where = self.namespace or "all namespaces"
        while not self._stopped.is_set():
            try:
                if not self.resource_version:
                    listed = self.cluster.list(self.kind, self.namespace, self.label_selector)
                    self.resource_version = listed.resource_version
                    self.deliver(Listed(self.kind, listed.items))
                began = time.monotonic()
                if self._watch_once() or time.monotonic() - began > 1.0:
                    backoff.reset()
                else:  # ended at once with nothing: do not spin against a server that does that
                    self._stopped.wait(backoff.next_delay(jitter=False))
            except Gone:
                log.info("watch expired: listing again", extra={"kind": self.kind.plural, "namespace": where})
                self.resource_version = ""
            except ClusterError as exc:
                if self._stopped.is_set():
                    break
                log.warning(
                    "watch failed: retrying",
                    extra={"kind": self.kind.plural, "namespace": where, "error": str(exc), "retry_seconds": round(backoff.delay_seconds, 2)},
                )
                self._stopped.wait(backoff.next_delay())
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                break
            except Exception:
                if self._stopped.is_set():
                    break
                log.exception("watch loop error: retrying", extra={"kind": self.kind.plural, "namespace": where})
                self._stopped.wait(backoff.next_delay(jitter=False))

    def _watch_once(self) -> int:
        """Follows one watch until it ends; returns how many events it brought."""
        stream = self.cluster.watch(
            self.kind, self.namespace, self.label_selector, self.resource_version, self.watch_timeout_seconds,
        )
        with self._stream_lock:
            self._stream = stream
        events = 0
        try:
            if self._stopped.is_set():
                return events
            for event in stream:
                events += 1
                if event.resource_version:
                    self.resource_version = event.resource_version
                if event.type != "BOOKMARK":
                    self.deliver(Changed(self.kind, event.type, event.object))
            return events
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()


class KubernetesSource:
    """The ``RouteSource`` for ROUTES=kubernetes: namespace-scoped with WATCH_NAMESPACE, else cluster-wide."""

    name = "kubernetes"

    def __init__(
        self,
        settings: Settings,
        cluster: Cluster | None = None,
        watch_timeout_seconds: int = 300,
        retry_min_seconds: float = 0.5,
        retry_max_seconds: float = 15.0,
    ) -> None:
        self.namespace = settings.watch_namespace or None
        self._cluster = cluster
        self._watch_timeout_seconds = watch_timeout_seconds
        self._retry = (retry_min_seconds, retry_max_seconds)
        self.synced = asyncio.Event()  # set once the first full state has reached the sink

    async def run(self, sink: RouteSink) -> None:
        owned = self._cluster is None
        cluster = self._cluster if self._cluster is not None else await asyncio.to_thread(Cluster.from_environment)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Listed | Changed] = asyncio.Queue()

        def deliver(message: Listed | Changed) -> None:  # runs in a watch thread
            loop.call_soon_threadsafe(queue.put_nowait, message)

        watchers = [
            Watcher(cluster, SERVICE, self.namespace, appspec.MANAGED_SELECTOR, deliver,
                    self._watch_timeout_seconds, *self._retry),
            Watcher(cluster, ENDPOINT_SLICE, self.namespace, SERVICE_NAME_LABEL, deliver,
                    self._watch_timeout_seconds, *self._retry),
        ]
        routes = ClusterRoutes(sink)
        handlers = {
            SERVICE: (routes.services_listed, routes.service_changed),
            ENDPOINT_SLICE: (routes.slices_listed, routes.slice_changed),
        }
        for watcher in watchers:
            watcher.start()
        log.info("watching services and endpoint slices", extra={"namespace": self.namespace or "all namespaces"})
        try:
            while True:
                message = await queue.get()
                on_list, on_change = handlers[message.kind]
                if isinstance(message, Listed):
                    on_list(message.items)
                else:
                    on_change(message.type, message.object)
                if routes.synced and not self.synced.is_set():
                    self.synced.set()
                    log.info("routes synced from the cluster", extra={"backends": routes.backend_count})
        finally:
            # Daemon threads: a thread in the middle of a call ends when the call returns, and the
            # loop never waits for it.
            for watcher in watchers:
                watcher.stop()
            if owned:
                cluster.close()
