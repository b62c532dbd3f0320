"""The HTTPApp controller: statuses, and the ScaledObject an HTTPApp with ``spec.scaling`` owns.

Built on the ``kubernetes`` client's list-and-watch that the proxy already uses (``kube.watching``),
not on kopf. kopf would bring its own event loop policy, its own logging, its own settings table and a
second way of talking to the API server (aiohttp), for a controller whose whole job is one level-driven
loop over four watched kinds; its handler-per-field model and its finalizer/annotation bookkeeping
(``kopf.zalando.org/last-handled-configuration``) would also write to every HTTPApp it sees. With the
client we already have, the controller's requests go through ``kube/cluster.py`` like the proxy's, so
the RBAC test derives the controller's grants from its code exactly as it does the proxy's.

Level-driven: every watch event only marks the HTTPApps it may affect as dirty; one worker reconciles
dirty apps against the cached state, so a burst of events costs one pass per app. Every replica
watches (caches stay warm); only the Lease holder (``kube.leader``) writes, and on gaining the Lease it
reconciles everything. Writes carry the resourceVersion read, so a stale cache meets a 409 and the next
event brings the fresh object. What the ScaledObject owns is found by its ``ownerReferences``; in a real
cluster the garbage collector deletes an HTTPApp's ScaledObject with it, and the controller deletes any
owned ScaledObject whose HTTPApp is gone too (the fake API server of the tests has no garbage collector,
and a cluster with a slow one loses nothing by it).

``status.inFlight`` and ``status.active`` come from the scaler (``kube.live``): while leading, the
controller asks it about every app once per ``status_interval_seconds`` and marks dirty only the apps
whose answer changed, so an app's status is written at most once per interval on that account and never
when nothing changed (idle apps: never). 10,000 apps that all change every round cost 10,000 writes per
interval (167/s at the default 60 s). A scaler that cannot answer is logged once, and the statuses keep
what they had.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kedahttp.kube import conditions, httpapp, live
from kedahttp.kube.appspec import SpecError
from kedahttp.kube.cluster import (
    ENDPOINT_SLICE,
    HTTPAPP,
    SCALED_OBJECT,
    SERVICE,
    Cluster,
    ClusterError,
    Conflict,
    NotFound,
)
from kedahttp.kube.endpoints import SERVICE_NAME_LABEL, EndpointIndex, PortError, object_key, service_port
from kedahttp.kube.watching import DEFAULT_TIMING, Changed, Listed, WatchSpec, WatchTiming, follow

log = logging.getLogger("kedahttp.kube.controller")


def _hosts(obj: Mapping[str, Any] | None) -> set[str]:
    hosts = ((obj or {}).get("spec") or {}).get("hosts")
    return {str(h).strip().lower() for h in hosts} if isinstance(hosts, list) else set()


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    namespace: str | None  # None: every namespace
    scaler_address: str
    trigger_authentication: str  # ClusterTriggerAuthentication for TLS to the scaler, or ""
    status_interval_seconds: float = 0.0  # how often the scaler is asked for in-flight and active; 0: never
    scaler_tls: live.ScalerTls | None = None  # how the controller dials the scaler; None: plaintext


class Controller:
    """Caches HTTPApps, Services, EndpointSlices and ScaledObjects; reconciles dirty apps while leading."""

    def __init__(self, cluster: Cluster, config: ControllerConfig, is_leader: Callable[[], bool],
                 timing: WatchTiming = DEFAULT_TIMING) -> None:
        self.cluster = cluster
        self.config = config
        self.is_leader = is_leader
        self.timing = timing
        self.apps: dict[str, dict[str, Any]] = {}
        self.scaled_objects: dict[str, dict[str, Any]] = {}
        self.index = EndpointIndex()
        self.listed: set[str] = set()
        self.dirty: set[str] = set()
        self.wake = asyncio.Event()
        self.passes = 0  # reconcile passes done (tests wait on it)
        self._conflict_view: dict[str, httpapp.Conflict] = {}
        self._specs_changed = True  # an HTTPApp's spec moved since the conflicts were last computed
        self._by_service: dict[str, set[str]] | None = None  # "namespace/service" -> apps naming it; None: stale
        self._loop: asyncio.AbstractEventLoop | None = None  # set by run(); reconcile threads report to it
        self.live: dict[str, live.Live] = {}  # the scaler's last answer per app
        self.live_rounds = 0  # rounds the scaler answered (tests wait on it)
        self._scaler_reachable = True

    # -- caches ------------------------------------------------------------------------------------------

    def handle(self, message: Listed | Changed) -> None:
        kind = message.kind
        if isinstance(message, Listed):
            self.listed.add(kind.plural)
            if kind is HTTPAPP:
                self.dirty |= set(self.apps)
                self.apps = {object_key(o): o for o in message.items}
                self.dirty |= set(self.apps)
                self._specs_changed = True
                self._by_service = None
            elif kind is SCALED_OBJECT:
                self.dirty |= self._apps_of_scaled_objects(self.scaled_objects.values())
                self.scaled_objects = {object_key(o): o for o in message.items}
                self.dirty |= self._apps_of_scaled_objects(self.scaled_objects.values())
            elif kind is SERVICE:
                self.dirty |= self._apps_of_services(self.index.services_listed(message.items))
            else:
                self.dirty |= self._apps_of_services(self.index.slices_listed(message.items))
        else:
            obj, key = message.object, object_key(message.object)
            deleted = message.type == "DELETED"
            if kind is HTTPAPP:
                old = self.apps.pop(key, None)
                if not deleted:
                    self.apps[key] = obj
                self.dirty.add(key)
                if old is None or deleted or old.get("spec") != obj.get("spec"):
                    self._specs_changed = True  # a status write (ours, in-flight counts) does not count
                    self._by_service = None
                    # a host freed or taken may change the Routed of the apps that share it
                    hosts = _hosts(old) | _hosts(obj)
                    self.dirty |= {k for k, other in self.apps.items() if hosts & _hosts(other)}
            elif kind is SCALED_OBJECT:
                old = self.scaled_objects.pop(key, None)
                if not deleted:
                    self.scaled_objects[key] = obj
                self.dirty |= self._apps_of_scaled_objects([o for o in (old, obj) if o is not None])
            elif kind is SERVICE:
                self.dirty |= self._apps_of_services(self.index.service_changed(message.type, obj))
            else:
                self.dirty |= self._apps_of_services(self.index.slice_changed(message.type, obj))
        self.wake.set()

    def _apps_of_services(self, services: set[str]) -> set[str]:
        """The apps behind these Services: a look-up per Service, since every Service and EndpointSlice
        of the cluster comes by (the index is rebuilt after an HTTPApp's spec changed)."""
        if self._by_service is None:
            self._by_service = {}
            for key, obj in self.apps.items():
                name = ((obj.get("spec") or {}).get("service") or {}).get("name")
                self._by_service.setdefault(f"{key.partition('/')[0]}/{name}", set()).add(key)
        return {key for service in services for key in self._by_service.get(service, ())}

    def _apps_of_scaled_objects(self, objs: Any) -> set[str]:
        """Apps a ScaledObject may concern: the one that owns it, and any its trigger names."""
        out = set()
        for so in objs:
            namespace = (so.get("metadata") or {}).get("namespace", "")
            for ref in (so.get("metadata") or {}).get("ownerReferences") or []:
                if ref.get("kind") == httpapp.KIND:
                    out.add(f"{namespace}/{ref.get('name')}")
            for trigger in (so.get("spec") or {}).get("triggers") or []:
                backend = (trigger.get("metadata") or {}).get("backend")
                out.add(str(backend) if backend else object_key(so))
        return out

    @property
    def synced(self) -> bool:
        return len(self.listed) == 4

    # -- the loop ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        watches = [WatchSpec(HTTPAPP), WatchSpec(SERVICE), WatchSpec(ENDPOINT_SLICE, SERVICE_NAME_LABEL),
                   WatchSpec(SCALED_OBJECT)]
        async with asyncio.TaskGroup() as group:
            group.create_task(follow(self.cluster, self.config.namespace, watches, self.handle, self.timing),
                              name="kedahttp-controller-watch")
            group.create_task(self._work(), name="kedahttp-controller-reconcile")
            if self.config.status_interval_seconds > 0:
                group.create_task(self._ask_scaler(), name="kedahttp-controller-live")

    def leadership_changed(self, leading: bool) -> None:
        if leading:
            self.dirty |= set(self.apps)
            self.wake.set()

    async def _work(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if not self.synced or not self.is_leader():
                continue
            while self.dirty and self.is_leader():
                if self._specs_changed:  # an app's hosts may have moved, before this pass or during it
                    self._specs_changed = False
                    self._conflict_view = self._conflicts()
                key = min(self.dirty)
                self.dirty.discard(key)
                try:
                    await asyncio.to_thread(self.reconcile, key)
                except ClusterError as exc:
                    log.warning("reconcile failed: retrying on the next change",
                                extra={"httpapp": key, "error": exc.message, "status": exc.status})
                    if not isinstance(exc, Conflict | NotFound):
                        asyncio.get_running_loop().call_later(1.0, self._retry, key)
            self.passes += 1

    async def _ask_scaler(self) -> None:
        """Once per interval, while leading: what the scaler says about every app; the apps whose answer
        changed are reconciled (and their status written)."""
        client = live.ScalerClient(self.config.scaler_address, self.config.scaler_tls)
        while True:
            if self.synced and self.is_leader() and self.apps:
                try:
                    await self.ask_scaler_once(client)
                except Exception:  # never the end of the controller: the statuses keep what they had
                    log.exception("asking the scaler failed", extra={"scaler_address": client.address})
            await asyncio.sleep(self.config.status_interval_seconds)

    async def ask_scaler_once(self, client: live.ScalerClient) -> None:
        owned = {key: so for key, so in self.scaled_objects.items()
                 if httpapp.is_owned_by(so, key.partition("/")[2])}
        asked = live.queries(list(self.apps), list(self.scaled_objects.values()), owned)
        try:
            answers = await client.ask(asked)
        except live.ScalerUnreachable as exc:
            if self._scaler_reachable:
                log.warning("scaler unreachable: status.inFlight and active left as they are",
                            extra={"scaler_address": client.address, "error": str(exc)})
            self._scaler_reachable = False
            return
        if not self._scaler_reachable:
            log.info("scaler reachable again", extra={"scaler_address": client.address})
        self._scaler_reachable = True
        self.live_rounds += 1
        for key in set(self.live) - set(self.apps):  # apps deleted since (only this loop writes self.live)
            del self.live[key]
        changed = {key for key, answer in answers.items() if key in self.apps and self.live.get(key) != answer}
        for key in changed:
            self.live[key] = answers[key]
        if changed:
            self.dirty |= changed
            self.wake.set()

    def _retry(self, key: str) -> None:
        self.dirty.add(key)
        self.wake.set()

    # -- one app (blocking: runs in a thread) -------------------------------------------------------------

    def _cache(self, cache: dict[str, dict[str, Any]], key: str, read: Mapping[str, Any] | None,
               stored: dict[str, Any] | None) -> None:
        """Records what we just wrote, on the event loop, unless a watch event changed the entry since we
        read it (a DELETED event must never be undone by a write that raced it)."""

        def apply() -> None:
            if cache.get(key) is read:
                if stored is None:
                    cache.pop(key, None)
                else:
                    cache[key] = stored

        if self._loop is None:  # reconciled without run(): no other thread to race
            apply()
        else:
            self._loop.call_soon_threadsafe(apply)

    def reconcile(self, key: str) -> None:
        obj = self.apps.get(key)
        namespace, _, name = key.partition("/")
        owned = self.scaled_objects.get(key)
        if obj is None:
            if owned is not None and httpapp.is_owned_by(owned, name):
                self._delete_scaled_object(owned, "its HTTPApp is gone")
            return
        try:
            app: httpapp.HTTPApp | None = httpapp.parse_httpapp(obj)
            spec_error = None
        except SpecError as exc:
            app, spec_error = None, str(exc)
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        service_name = str(((obj.get("spec") or {}).get("service") or {}).get("name") or "")
        scaled_object, problem = self._scaled_object_for(app, key, name, owned)
        service_error, endpoints = self._service_state(app, namespace, service_name)
        conflict = self._conflict_view.get(key) if app is not None else None
        now_live = self.live.get(key)
        seen = conditions.Observed(key, generation, spec_error, service_name, service_error, endpoints,
                                   scaled_object, problem, str(conflict) if conflict else None,
                                   now_live.in_flight if now_live else None, now_live.active if now_live else None)
        old_status = obj.get("status") or {}
        new_status = conditions.status(seen, old_status, now_rfc3339())
        if new_status != old_status:
            stored = self.cluster.replace_status(HTTPAPP, {**obj, "status": new_status})
            self._cache(self.apps, key, obj, stored)
            log.info("httpapp status", extra={"httpapp": key, "ready": new_status["conditions"][-1]["status"],
                                              "reason": new_status["conditions"][-1]["reason"]})

    def _conflicts(self) -> dict[str, httpapp.Conflict]:
        parsed = []
        for obj in list(self.apps.values()):
            try:
                parsed.append(httpapp.parse_httpapp(obj))
            except SpecError:
                continue
        return httpapp.conflicts(parsed)

    def _service_state(self, app: httpapp.HTTPApp | None, namespace: str, service_name: str) -> tuple[str | None, int]:
        service = self.index.services.get(f"{namespace}/{service_name}")
        if service is None:
            return f"Service {namespace}/{service_name} not found", 0
        if app is None:
            return None, 0
        try:
            service_port(service, app.service.port)
        except PortError as exc:
            return str(exc), 0
        return None, len(self.index.ready_endpoints(f"{namespace}/{service_name}", app.service.port))

    def _scaled_object_for(self, app: httpapp.HTTPApp | None, key: str, name: str,
                           existing: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
        """Writes, updates or deletes the owned ScaledObject; returns the one that scales the app."""
        mine = existing is not None and httpapp.is_owned_by(existing, name)
        if app is None or app.scaling is None:
            if mine and app is not None:
                assert existing is not None
                self._delete_scaled_object(existing, "spec.scaling was removed")
                existing, mine = None, False
            # the user's own ScaledObject, found by the backend its trigger names
            for so in list(self.scaled_objects.values()):
                if so is not existing and httpapp.names_backend(so, key):
                    return so, None
            return (existing, None) if existing is not None and httpapp.names_backend(existing, key) else (None, None)
        desired = httpapp.build_scaled_object(app, self.config.scaler_address, self.config.trigger_authentication)
        if existing is None:
            stored = self.cluster.create(SCALED_OBJECT, app.namespace, desired)
            self._cache(self.scaled_objects, key, None, stored)
            log.info("scaledobject created", extra={"httpapp": key})
            return stored, None
        if not mine:
            return None, (f"ScaledObject {key} exists and is not owned by this HTTPApp: delete it, or remove "
                          "spec.scaling and let that ScaledObject name the app")
        meta = existing.get("metadata") or {}
        if existing.get("spec") == desired["spec"] and all(
            (meta.get(field) or {}) | desired["metadata"][field] == (meta.get(field) or {}) for field in ("labels",)
        ) and meta.get("ownerReferences") == desired["metadata"]["ownerReferences"]:
            return existing, None
        updated = {
            **existing,
            "metadata": {**meta, "labels": {**(meta.get("labels") or {}), **desired["metadata"]["labels"]},
                         "ownerReferences": desired["metadata"]["ownerReferences"]},
            "spec": desired["spec"],
        }
        stored = self.cluster.replace(SCALED_OBJECT, updated)
        self._cache(self.scaled_objects, key, existing, stored)
        log.info("scaledobject updated", extra={"httpapp": key})
        return stored, None

    def _delete_scaled_object(self, so: Mapping[str, Any], why: str) -> None:
        meta = so.get("metadata") or {}
        try:
            self.cluster.delete(SCALED_OBJECT, str(meta.get("namespace")), str(meta.get("name")), meta.get("uid"))
        except NotFound:
            pass
        self._cache(self.scaled_objects, object_key(so), so, None)
        log.info("scaledobject deleted", extra={"scaledobject": object_key(so), "why": why})
