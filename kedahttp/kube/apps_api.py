"""The admin API's ``/api/v1`` routes: create, list, get and delete apps, and the API's OpenAPI document.

Served by ``kedahttp controller`` (the proxy holds no write permission). An app is three objects of one
name: a Deployment, its Service, and the HTTPApp that routes to the Service and (with ``spec.scaling``)
makes the controller write the KEDA ScaledObject. Creation is all or nothing: when the second or third object fails, the ones made are
deleted again (by uid, so nothing else is touched) and the answer names what failed. Only objects
labelled ``app.kubernetes.io/managed-by: kedahttp`` are ever shown or deleted. Every Kubernetes call
is blocking and runs on a small executor, never on the event loop; client errors are mapped to HTTP
statuses in one place, ``_status_of``. Auth: a bearer token compared in constant time; with no token
configured, the API answers only when the admin address is a loopback one.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web

from kedahttp.kube import appspec, httpapp, openapi
from kedahttp.kube.appspec import SpecError
from kedahttp.kube.cluster import (
    DEPLOYMENT,
    HTTPAPP,
    SERVICE,
    Cluster,
    ClusterError,
    ConfigError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    Kind,
    NotFound,
    Unavailable,
)
from kedahttp.process.settings import SettingError, Settings

log = logging.getLogger("kedahttp.admin.apps")

T = TypeVar("T")
API_PREFIX = "/api/v1"
MAX_BODY_BYTES = appspec.MAX_BODY_BYTES
KINDS = (DEPLOYMENT, SERVICE, HTTPAPP)  # creation order; deletion runs backwards


class AdminExposureError(SettingError):
    """No ADMIN_TOKEN and a non-loopback ADMIN_ADDR: the admin API would be open to the network."""


def check_admin_exposure(settings: Settings) -> None:
    """Raises AdminExposureError when the admin API would serve without a token beyond this host."""
    if not settings.admin_token and not settings.admin_addr.is_loopback:
        raise AdminExposureError(
            "admin_addr", str(settings.admin_addr),
            "the admin API needs KEDAHTTP_ADMIN_TOKEN unless it listens on a loopback address "
            "(e.g. 127.0.0.1:8081); set a token or a loopback address",
        )


class ApiError(Exception):
    """An answer other than success, with the status and the JSON body it carries."""

    def __init__(self, status: int, message: str, field: str | None = None, **details: Any) -> None:
        self.status = status
        self.message = message
        self.field = field
        self.details = details
        super().__init__(message)

    def response(self) -> web.Response:
        body: dict[str, Any] = {"error": self.message}
        if self.field:
            body["field"] = self.field
        body.update(self.details)
        headers = {"WWW-Authenticate": 'Bearer realm="kedahttp"'} if self.status == 401 else None
        return web.json_response(body, status=self.status, headers=headers)


# The one mapping from API-server errors to our answers. Forbidden is kedahttp's own RBAC, not the
# caller's fault, so it is a bad gateway like any other refusal upstream.
_STATUS_BY_ERROR: tuple[tuple[type[ClusterError], int], ...] = (
    (NotFound, 404), (Conflict, 409), (Invalid, 422), (Forbidden, 502), (ConfigError, 503),
    (Unavailable, 503), (Gone, 503),
)


def _status_of(exc: ClusterError) -> int:
    return next((status for cls, status in _STATUS_BY_ERROR if isinstance(exc, cls)), 502)


def _create_failure(kind: Kind, exc: ClusterError, namespace: str, name: str) -> ApiError:
    """What creating one object's failure means to the caller."""
    if isinstance(exc, Conflict):
        return ApiError(409, f"{kind} {namespace}/{name} already exists")
    if isinstance(exc, NotFound):
        if kind is HTTPAPP:
            return ApiError(502, f"the cluster does not serve {httpapp.API_VERSION} HTTPApps (is the kedahttp CRD "
                            f"installed?): {exc.message}")
        return ApiError(422, f"namespace {namespace!r} does not exist: {exc.message}", field="namespace")
    if isinstance(exc, Invalid):
        return ApiError(422, f"the Kubernetes API rejected the {kind}: {exc.message}", field="body")
    return ApiError(_status_of(exc), f"creating {kind} {namespace}/{name} failed: {exc.message}")


class AppsApi:
    def __init__(
        self,
        settings: Settings,
        cluster: Cluster | None = None,
        app_status: Callable[[str], Any] | None = None,
        workers: int = 4,
    ) -> None:
        self.settings = settings
        self.namespace = settings.watch_namespace or None  # None: every namespace
        self._cluster = cluster
        self._owns_cluster = cluster is None
        self._cluster_lock = asyncio.Lock()
        self._create_lock = asyncio.Lock()
        self._app_status = app_status
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kedahttp-k8s")

    # -- plumbing ------------------------------------------------------------------------------------

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(func, *args))

    async def cluster(self) -> Cluster:
        async with self._cluster_lock:
            if self._cluster is None:
                self._cluster = await self._call(Cluster.from_environment)
            return self._cluster

    async def close(self, _app: web.Application | None = None) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_cluster and self._cluster is not None:
            self._cluster.close()

    def _authorize(self, request: web.Request) -> None:
        token = self.settings.admin_token
        if not token:
            if not self.settings.admin_addr.is_loopback:
                raise ApiError(403, "the admin API is disabled: no KEDAHTTP_ADMIN_TOKEN is set and the admin "
                               "address is not a loopback address")
            return
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer <KEDAHTTP_ADMIN_TOKEN>)")

    def endpoint(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Auth first, then the handler; every error becomes its JSON answer here, and only here."""

        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                self._authorize(request)
                return await handler(request)
            except ApiError as exc:
                return exc.response()
            except SpecError as exc:
                return ApiError(422, exc.message, field=exc.field).response()
            except ClusterError as exc:
                return ApiError(_status_of(exc), exc.message).response()
            except Exception:
                log.exception("admin API request failed", extra={"path": request.path})
                return ApiError(500, "internal error (see the proxy's log)").response()

        return wrapped

    def _check_scope(self, namespace: str, name: str) -> None:
        """An app outside the namespaces this proxy serves, or with an impossible name, is not found."""
        try:
            appspec.check_namespace("namespace", namespace)
            appspec.check_name("name", name)
        except SpecError:
            raise ApiError(404, f"no app {namespace}/{name}") from None
        if self.namespace and namespace != self.namespace:
            raise ApiError(404, f"no app {namespace}/{name}: this proxy serves only namespace {self.namespace!r}")

    async def _status(self, view: dict[str, Any]) -> dict[str, Any]:
        if self._app_status is not None:
            try:
                extra = self._app_status(f"{view['namespace']}/{view['name']}")
                if inspect.isawaitable(extra):
                    extra = await extra
                if isinstance(extra, Mapping):
                    view["status"].update(extra)
            except Exception:
                log.debug("app status unavailable", exc_info=True)
        return view

    # -- handlers ------------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        spec = appspec.parse_app(body, default_namespace=self.namespace or appspec.DEFAULT_NAMESPACE)
        if self.namespace and spec.namespace != self.namespace:
            raise SpecError("namespace", f"this proxy serves only namespace {self.namespace!r}")
        cluster = await self.cluster()
        async with self._create_lock:  # one create at a time, so two cannot claim one host
            await self._check_claims(cluster, spec)
            objects = await self._create_all(cluster, spec)
        view = await self._status(appspec.app_view(*objects))
        location = f"{API_PREFIX}/apps/{spec.namespace}/{spec.name}"
        return web.json_response(view, status=201, headers={"Location": location})

    async def _check_claims(self, cluster: Cluster, spec: appspec.AppSpec) -> None:
        try:
            apps = (await self._call(cluster.list, HTTPAPP, self.namespace)).items
        except NotFound:  # no CRD: the create says so below
            apps = []
        wanted = spec.claims()
        for obj in apps:
            owner = httpapp.object_key(obj)
            if owner == spec.key:
                continue  # the same app: creating it answers 409 below
            try:
                claims = httpapp.parse_httpapp(obj).claims()
            except SpecError:  # an HTTPApp nobody routes claims nothing
                continue
            taken = wanted & claims
            if taken:
                host, prefix = sorted(taken)[0]
                raise SpecError(
                    f"hosts[{spec.hosts.index(host)}]",
                    f"host {host!r} with path prefix {prefix!r} is already served by app {owner}",
                )

    async def _create_all(self, cluster: Cluster, spec: appspec.AppSpec) -> list[dict[str, Any]]:
        created: list[tuple[Kind, dict[str, Any]]] = []
        owner: dict[str, Any] | None = None
        for kind in KINDS:
            if kind is DEPLOYMENT:
                body = appspec.build_deployment(spec)
            elif kind is SERVICE:
                body = appspec.build_service(spec, owner)
            else:
                body = httpapp.to_object(httpapp.from_app_spec(spec))
                body["metadata"].update(labels=appspec.labels(spec), ownerReferences=[owner] if owner else [])
            try:
                obj = await self._call(cluster.create, kind, spec.namespace, body)
            except ClusterError as exc:
                failure = _create_failure(kind, exc, spec.namespace, spec.name)
                rolled_back, left_over = await self._roll_back(cluster, spec, created)
                if created:
                    failure.message += f"; rolled back: {', '.join(rolled_back) or 'nothing'}"
                    if left_over:
                        failure.message += f"; left over (delete by hand): {', '.join(left_over)}"
                failure.details.update(failed=kind.kind, rolledBack=rolled_back, leftOver=left_over)
                log.warning("app creation failed", extra={"app": spec.key, "failed": kind.kind, "error": exc.message})
                raise failure from exc
            created.append((kind, obj))
            if kind is DEPLOYMENT:
                owner = appspec.owner_reference(obj)
        log.info("app created", extra={"app": spec.key})
        return [obj for _, obj in created]

    async def _roll_back(
        self, cluster: Cluster, spec: appspec.AppSpec, created: list[tuple[Kind, dict[str, Any]]],
    ) -> tuple[list[str], list[str]]:
        rolled_back: list[str] = []
        left_over: list[str] = []
        for kind, obj in reversed(created):
            uid = (obj.get("metadata") or {}).get("uid")
            try:
                await self._call(cluster.delete, kind, spec.namespace, spec.name, uid)
                rolled_back.append(kind.kind)
            except NotFound:
                rolled_back.append(kind.kind)
            except ClusterError as exc:
                log.error("rollback failed", extra={"app": spec.key, "kind": kind.kind, "error": exc.message})
                left_over.append(kind.kind)
        return rolled_back, left_over

    async def _read_app(self, cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any] | None]:
        found = await asyncio.gather(*(self._call(cluster.read_optional, k, namespace, name) for k in KINDS))
        return [obj if appspec.is_managed(obj) else None for obj in found]

    async def get(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        self._check_scope(namespace, name)
        objects = await self._read_app(await self.cluster(), namespace, name)
        if not any(objects):
            raise ApiError(404, f"no app {namespace}/{name}")
        return web.json_response(await self._status(appspec.app_view(*objects)))

    async def list(self, request: web.Request) -> web.Response:
        namespace = request.query.get("namespace") or self.namespace
        if namespace:
            appspec.check_namespace("namespace", namespace)
            if self.namespace and namespace != self.namespace:
                raise ApiError(404, f"this proxy serves only namespace {self.namespace!r}")
        cluster = await self.cluster()

        async def list_kind(kind: Kind) -> list[dict[str, Any]]:
            try:
                return (await self._call(cluster.list, kind, namespace, appspec.MANAGED_SELECTOR)).items
            except NotFound:  # the kind is not served (no KEDA): no objects of it
                return []

        lists = await asyncio.gather(*(list_kind(kind) for kind in KINDS))
        apps: dict[tuple[str, str], list[dict[str, Any] | None]] = {}
        for index, items in enumerate(lists):
            for obj in items:
                meta = obj.get("metadata") or {}
                slot = apps.setdefault((str(meta.get("namespace")), str(meta.get("name"))), [None, None, None])
                slot[index] = obj
        views = [await self._status(appspec.app_view(*apps[key])) for key in sorted(apps)]
        return web.json_response({"apps": views})

    async def delete(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        self._check_scope(namespace, name)
        cluster = await self.cluster()
        objects = await self._read_app(cluster, namespace, name)
        if not any(objects):
            raise ApiError(404, f"no app {namespace}/{name}")
        deleted: list[str] = []
        for kind, obj in reversed(list(zip(KINDS, objects, strict=True))):
            if obj is None:
                continue
            try:
                await self._call(cluster.delete, kind, namespace, name, obj["metadata"].get("uid"))
            except NotFound:
                pass
            except ClusterError as exc:
                raise ApiError(
                    _status_of(exc), f"deleting {kind} {namespace}/{name} failed: {exc.message}",
                    deleted=deleted, failed=kind.kind,
                ) from exc
            deleted.append(kind.kind)
        log.info("app deleted", extra={"app": f"{namespace}/{name}", "deleted": deleted})
        return web.Response(status=204)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi.document())


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, refusing bodies over MAX_BODY_BYTES before reading them whole."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes")
    data = bytearray()
    while chunk := await request.content.read(16384):
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # nesting deep enough to exhaust the parser's stack, well under the size cap
        raise ApiError(400, "the body is not valid JSON: nested too deeply") from None


APPS_API = web.AppKey("kedahttp.apps_api", AppsApi)


def add_routes(app: web.Application, context: Any) -> AppsApi:
    """Adds the /api/v1 routes to the proxy's admin app.

    Takes ``context.settings``; optionally ``context.cluster`` (a Cluster; default: in-cluster config or
    KUBECONFIG, loaded on first use) and ``context.app_status(key) -> dict`` (sync or async), whose
    fields (e.g. inFlight, requestRate) are added to each app's status.
    """
    api = AppsApi(
        context.settings,
        cluster=getattr(context, "cluster", None),
        app_status=getattr(context, "app_status", None),
    )
    app[APPS_API] = api
    router = app.router
    router.add_post(f"{API_PREFIX}/apps", api.endpoint(api.create))
    router.add_get(f"{API_PREFIX}/apps", api.endpoint(api.list))
    router.add_get(f"{API_PREFIX}/apps/{{namespace}}/{{name}}", api.endpoint(api.get))
    router.add_delete(f"{API_PREFIX}/apps/{{namespace}}/{{name}}", api.endpoint(api.delete))
    router.add_get(f"{API_PREFIX}/openapi.json", api.endpoint(api.openapi))
    app.on_cleanup.append(api.close)
    return api
