"""Routes and readiness from the cluster (ROUTES=kubernetes): HTTPApps, the Services they name, their EndpointSlices,
and the ConfigMaps that hold waiting-page templates.

A thin adapter: ``kedahttp.kube.watching.follow`` lists and watches the three kinds; ``ClusterRoutes``
folds what they say into the sink with the fewest calls. An HTTPApp is a backend from the watch event
that creates it (its requests are held until its Service has a ready endpoint) and is gone with the
event that deletes it; its endpoints are set the moment a slice reports one. An HTTPApp the proxy cannot
read is logged once and left out; it never affects another app's routes. Of two HTTPApps claiming one
(host, path prefix) the older keeps it (``kube.httpapp.conflicts``, the controller's rule too). The proxy only reads: the
controller owns every write (statuses, ScaledObjects).

An app's ``spec.coldStart.templateConfigMap`` names a key of a ConfigMap in its namespace; only ConfigMaps
labelled ``kedahttp.dev/waiting-page`` are watched (one watch, whatever the number of apps, and the proxy
never holds the cluster's other ConfigMaps). The template is checked as the routes file's are and travels
in the app's Backend, so a change to the ConfigMap reaches the route like any other change of the app.
A template that is missing or unusable leaves the app on the built-in page, with one warning naming the
app and the problem (and one line when it is usable again); it never makes the app unroutable.

The Service-annotation routes of earlier versions are gone: one source of truth per app.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kedahttp.kube.appspec import SpecError
from kedahttp.kube.cluster import CONFIG_MAP, ENDPOINT_SLICE, HTTPAPP, SERVICE, Cluster
from kedahttp.kube.endpoints import SERVICE_NAME_LABEL, EndpointIndex, object_key
from kedahttp.kube.httpapp import WAITING_PAGE_LABEL, Conflict, HTTPApp, conflicts, parse_httpapp
from kedahttp.kube.watching import Changed, Listed, WatchSpec, WatchTiming, follow
from kedahttp.process.settings import Settings
from kedahttp.proxy.app_settings import AppSettings, AppSettingsError, parse_app_settings
from kedahttp.proxy.sources import Backend, RouteSink
from kedahttp.proxy.waiting_page import PageTemplate, TemplateError

KINDS = 4  # HTTPApps, Services, EndpointSlices, ConfigMaps: all listed once before the first state goes out

log = logging.getLogger("kedahttp.kube_source")


def app_settings_of(app: HTTPApp) -> AppSettings:
    """The app's timeouts and placeholder, checked as the routes file's are; raises SpecError naming the
    field. The template comes from a ConfigMap (``template_text``), set by ClusterRoutes."""
    try:
        return parse_app_settings(dict(app.timeouts) if app.timeouts else None,
                                  {"placeholder": app.placeholder} if app.placeholder else None)
    except AppSettingsError as exc:
        raise SpecError(f"spec.{exc.field}", exc.reason) from exc


def backend_of(app: HTTPApp, service_protocol: str = "http1", page_template: str | None = None) -> Backend:
    """The route of an app; its protocol is the HTTPApp's own, else what its Service port declares;
    ``page_template`` is its waiting page's template text, already checked (None: the built-in page)."""
    settings = app_settings_of(app)
    if page_template is not None:
        settings = dataclasses.replace(settings, page_template=page_template)
    return Backend(app.key, app.hosts, app.path_prefixes, app.cold_start_timeout_seconds,
                   protocol=app.protocol or service_protocol, settings=settings)


def template_from(config_map: Mapping[str, Any] | None, where: str, key: str) -> str:
    """The waiting-page template in ``key`` of a ConfigMap (its ``data`` and ``binaryData`` as stored), checked;
    raises TemplateError saying what is wrong, naming ``where`` (the ConfigMap) and the key."""
    if config_map is None:
        raise TemplateError(f"ConfigMap {where} not found, or it lacks the label {WAITING_PAGE_LABEL}")
    data = config_map.get("data") or {}
    if key not in data:
        if key in (config_map.get("binaryData") or {}):
            raise TemplateError(f"ConfigMap {where} key {key!r} is binaryData; a template must be text (data)")
        raise TemplateError(f"ConfigMap {where} has no key {key!r} (keys: {', '.join(sorted(data)) or 'none'})")
    text = data[key]
    if not isinstance(text, str):
        raise TemplateError(f"ConfigMap {where} key {key!r} is not text")
    try:
        PageTemplate(text)
    except TemplateError as exc:
        raise TemplateError(f"ConfigMap {where} key {key!r}: {exc}") from exc
    return text


class ClusterRoutes:
    """Folds HTTPApp, Service and EndpointSlice lists and events into a RouteSink, calling it only on change.

    Nothing reaches the sink until all three kinds have been listed once; then the first state goes out
    as one ``replace_backends`` and later changes as upserts, removals and endpoint updates.
    """

    def __init__(self, sink: RouteSink) -> None:
        self._sink = sink
        self._apps: dict[str, HTTPApp] = {}
        self._apps_of_service: dict[str, set[str]] = {}  # "namespace/service" -> keys of the apps naming it
        self._problems: dict[str, str] = {}  # app key -> what is wrong with it (logged once)
        self._index = EndpointIndex()
        self._listed: set[str] = set()
        self._published: dict[str, Backend] = {}
        self._published_endpoints: dict[str, tuple[str, ...]] = {}
        self._conflicts: dict[str, Conflict] = {}  # app key -> the older app that keeps its host
        # "namespace/name" -> the data and binaryData of a ConfigMap labelled WAITING_PAGE_LABEL
        self._config_maps: dict[str, Mapping[str, Any]] = {}
        self._page_problems: dict[str, str] = {}  # app key -> why its template is not used (logged once)
        self.synced = False
        self.changes = 0  # folds that recomputed routes (each checks every app for conflicts)

    # HTTPApps

    def apps_listed(self, items: Iterable[Mapping[str, Any]]) -> None:
        before = set(self._apps) | set(self._problems)
        self._apps.clear()
        self._apps_of_service.clear()
        self._problems.clear()
        for obj in items:
            self._set_app(obj)
        self._listed.add(HTTPAPP.plural)
        self._after_change(before | set(self._apps) | set(self._problems))

    def app_changed(self, event_type: str, obj: Mapping[str, Any]) -> None:
        key = object_key(obj)
        if event_type == "DELETED":
            self._drop_app(key)
            self._problems.pop(key, None)
            self._page_problems.pop(key, None)
        else:
            before = (self._apps.get(key), self._problems.get(key))
            self._set_app(obj)
            if before != (None, None) and (self._apps.get(key), self._problems.get(key)) == before:
                # only the status moved (the controller writes statuses, in-flight counts included):
                # the route is as it was, and the conflict check over every app is not run again
                return
        self._after_change({key})

    def _set_app(self, obj: Mapping[str, Any]) -> None:
        key = object_key(obj)
        try:
            app = parse_httpapp(obj)
            app_settings_of(app)  # a bad timeout or placeholder makes the app malformed, named
            self._drop_app(key)
            self._apps[key] = app
            self._apps_of_service.setdefault(_service_key(app), set()).add(key)
            self._problems.pop(key, None)
        except SpecError as exc:
            self._drop_app(key)
            if self._problems.get(key) != str(exc):
                log.warning("httpapp skipped: malformed", extra={"httpapp": key, "error": str(exc)})
            self._problems[key] = str(exc)

    def _drop_app(self, key: str) -> None:
        app = self._apps.pop(key, None)
        if app is not None:
            keys = self._apps_of_service.get(_service_key(app))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._apps_of_service[_service_key(app)]

    # ConfigMaps with waiting-page templates: only the apps that name a changed one are recomputed

    def config_maps_listed(self, items: Iterable[Mapping[str, Any]]) -> None:
        before = set(self._config_maps)
        self._config_maps = {object_key(obj): _template_data(obj) for obj in items}
        self._listed.add(CONFIG_MAP.plural)
        self._config_maps_changed(before | set(self._config_maps))

    def config_map_changed(self, event_type: str, obj: Mapping[str, Any]) -> None:
        key = object_key(obj)
        if event_type == "DELETED":
            self._config_maps.pop(key, None)
        else:
            self._config_maps[key] = _template_data(obj)
        self._config_maps_changed({key})

    def _config_maps_changed(self, keys: set[str]) -> None:
        self._after_change(key for key, app in self._apps.items()
                           if app.template_config_map is not None
                           and f"{app.namespace}/{app.template_config_map.name}" in keys)

    def _page_template(self, app: HTTPApp) -> str | None:
        """The app's template text from its ConfigMap, or None (the built-in page); a problem is logged once."""
        ref = app.template_config_map
        if ref is None:
            self._page_problems.pop(app.key, None)
            return None
        where = f"{app.namespace}/{ref.name}"
        try:
            text: str | None = template_from(self._config_maps.get(where), where, ref.key)
            problem = ""
        except TemplateError as exc:
            text, problem = None, str(exc)
        before = self._page_problems.get(app.key, "")
        if problem != before:
            if problem:
                self._page_problems[app.key] = problem
                log.warning("waiting page template unusable: the app gets the built-in page",
                            extra={"httpapp": app.key, "configmap": where, "key": ref.key, "error": problem})
            else:
                del self._page_problems[app.key]
                log.info("waiting page template usable again", extra={"httpapp": app.key, "configmap": where,
                                                                       "key": ref.key})
        return text

    # Services and their slices: only the apps behind a changed Service are recomputed, found by the
    # index, so the cluster's other Services and slices (watched too: see KubernetesSource) cost a dict
    # look-up per event

    def services_listed(self, items: Iterable[Mapping[str, Any]]) -> None:
        self._services_changed(self._index.services_listed(items), SERVICE.plural)

    def service_changed(self, event_type: str, obj: Mapping[str, Any]) -> None:
        self._services_changed(self._index.service_changed(event_type, obj))

    def slices_listed(self, items: Iterable[Mapping[str, Any]]) -> None:
        self._services_changed(self._index.slices_listed(items), ENDPOINT_SLICE.plural)

    def slice_changed(self, event_type: str, obj: Mapping[str, Any]) -> None:
        self._services_changed(self._index.slice_changed(event_type, obj))

    def _services_changed(self, services: set[str], listed: str = "") -> None:
        if listed:
            self._listed.add(listed)
        keys = {key for service in services for key in self._apps_of_service.get(service, ())}
        if keys or listed:
            self._after_change(keys)

    # publishing

    @property
    def backend_count(self) -> int:
        return len(self._published)

    def endpoints_of(self, key: str) -> tuple[str, ...]:
        app = self._apps.get(key)
        return () if app is None else self._index.ready_endpoints(_service_key(app), app.service.port)

    def _after_change(self, keys: Iterable[str]) -> None:
        self.changes += 1
        keys = set(keys)
        before = self._conflicts
        self._conflicts = conflicts(self._apps.values())
        if self._conflicts != before:
            keys |= set(before) | set(self._conflicts)
            for key in set(self._conflicts) - set(before):
                log.warning("httpapp skipped: its host is taken", extra={"httpapp": key, "error": str(self._conflicts[key])})
        if not self.synced:
            if len(self._listed) < KINDS:
                return
            self.synced = True
            routed = {key: self._backend(app) for key, app in self._apps.items() if key not in self._conflicts}
            self._sink.replace_backends(list(routed.values()))
            self._published = routed
            self._published_endpoints = {}
            keys = set(routed)
        # removals first, so a host handed from one app to another is never claimed by both at once
        for key in sorted(keys, key=lambda k: (k in self._apps and k not in self._conflicts, k)):
            self._reconcile(key)

    def _backend(self, app: HTTPApp) -> Backend:
        return backend_of(app, self._index.protocol(_service_key(app), app.service.port), self._page_template(app))

    def _reconcile(self, key: str) -> None:
        app = self._apps.get(key) if key not in self._conflicts else None
        if app is None:
            if key in self._published:
                del self._published[key]
                self._published_endpoints.pop(key, None)
                self._sink.remove_backend(key)
            return
        backend = self._backend(app)
        if self._published.get(key) != backend:
            self._published[key] = backend
            self._sink.upsert_backend(backend)
        endpoints = self.endpoints_of(key)
        if endpoints != self._published_endpoints.get(key, ()):
            self._published_endpoints[key] = endpoints
            self._sink.set_endpoints(key, endpoints)


def _service_key(app: HTTPApp) -> str:
    return f"{app.namespace}/{app.service.name}"


def _template_data(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """What the proxy keeps of a ConfigMap: its data, and the names of its binary keys (for the error)."""
    data = obj.get("data")
    binary = obj.get("binaryData")
    return {"data": dict(data) if isinstance(data, Mapping) else {},
            "binaryData": dict.fromkeys(binary) if isinstance(binary, Mapping) else {}}


class KubernetesSource:
    """The ``RouteSource`` for ROUTES=kubernetes: namespace-scoped with WATCH_NAMESPACE, else cluster-wide.

    Every Service and EndpointSlice in scope is watched, though only those HTTPApps name are used: the
    API server cannot select them more narrowly (they are the user's, unlabelled by us; field selectors
    match one name, not a set), a watch per namespace that has HTTPApps would mean a thread and a
    connection per namespace and a re-list whenever the set changes, and an HTTPApp that names a Service
    must find it at once, not after a new watch has listed it. The others cost a dict look-up per event
    (``ClusterRoutes``' index).
    """

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
        self._timing = WatchTiming(watch_timeout_seconds, retry_min_seconds, retry_max_seconds)
        self.synced = asyncio.Event()  # set once the first full state has reached the sink

    async def run(self, sink: RouteSink) -> None:
        owned = self._cluster is None
        cluster = self._cluster if self._cluster is not None else await asyncio.to_thread(Cluster.from_environment)
        routes = ClusterRoutes(sink)
        handlers = {
            HTTPAPP: (routes.apps_listed, routes.app_changed),
            SERVICE: (routes.services_listed, routes.service_changed),
            ENDPOINT_SLICE: (routes.slices_listed, routes.slice_changed),
            CONFIG_MAP: (routes.config_maps_listed, routes.config_map_changed),
        }

        def handle(message: Listed | Changed) -> None:
            on_list, on_change = handlers[message.kind]
            if isinstance(message, Listed):
                on_list(message.items)
            else:
                on_change(message.type, message.object)
            if routes.synced and not self.synced.is_set():
                self.synced.set()
                log.info("routes synced from the cluster", extra={"backends": routes.backend_count})

        watches = [WatchSpec(HTTPAPP), WatchSpec(SERVICE), WatchSpec(ENDPOINT_SLICE, SERVICE_NAME_LABEL),
                   WatchSpec(CONFIG_MAP, WAITING_PAGE_LABEL)]
        log.info("watching httpapps, services, endpoint slices and waiting-page configmaps",
                 extra={"namespace": self.namespace or "all namespaces"})
        try:
            await follow(cluster, self.namespace, watches, handle, self._timing)
        finally:
            if owned:
                cluster.close()
