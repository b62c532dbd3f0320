"""Every call kedahttp makes to the Kubernetes API, through the official client, and nothing else.

The only module that imports ``kubernetes`` (an import-linter contract keeps it so), and only when a
``Cluster`` is made: a proxy with a routes file never loads the client. Objects go in and come out as
plain JSON dicts, camelCase as the API server speaks them, so the rest of the project never sees a
client model. Every function blocks: callers run them in threads. Client exceptions are mapped
here, once, to ``ClusterError`` subclasses that carry the HTTP status and the API server's message.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from kedahttp.process.settings import ConfigurationError

REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read: for every call but watches


@dataclass(frozen=True, slots=True)
class Kind:
    kind: str
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return self.kind


DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments")
SERVICE = Kind("Service", "", "v1", "services")
ENDPOINT_SLICE = Kind("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices")
SCALED_OBJECT = Kind("ScaledObject", "keda.sh", "v1alpha1", "scaledobjects")
HTTPAPP = Kind("HTTPApp", "kedahttp.dev", "v1alpha1", "httpapps")
LEASE = Kind("Lease", "coordination.k8s.io", "v1", "leases")
CONFIG_MAP = Kind("ConfigMap", "", "v1", "configmaps")


class ClusterError(Exception):
    """A call to the API server failed; ``status`` is its HTTP status (0: no answer at all)."""

    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        self.message = message
        self.status = status
        self.reason = reason
        super().__init__(message)


class NotFound(ClusterError):
    pass


class Conflict(ClusterError):
    """409: the object exists already, or a precondition (uid, resourceVersion) no longer holds."""


class Gone(ClusterError):
    """410: the resourceVersion a watch resumes from is too old; list again."""


class Invalid(ClusterError):
    """400 or 422: the API server (or the client's own schema check) rejected the object."""


class Forbidden(ClusterError):
    """401 or 403: kedahttp's credentials or RBAC do not allow the call."""


class Unavailable(ClusterError):
    """No answer, a dropped connection, a timeout or a 5xx/429: worth retrying."""


class ConfigError(ClusterError, ConfigurationError):
    """Neither in-cluster configuration nor a kubeconfig could be loaded."""


ERRORS_BY_STATUS: Mapping[int, type[ClusterError]] = {
    400: Invalid, 401: Forbidden, 403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone, 422: Invalid,
}


def _error_from_status(status: int, body: Mapping[str, Any] | None, fallback: str) -> ClusterError:
    body = body or {}
    message = str(body.get("message") or fallback or f"HTTP {status}")
    cls = ERRORS_BY_STATUS.get(status, Unavailable if status == 0 or status >= 429 else ClusterError)
    return cls(message, status, str(body.get("reason") or ""))


def _map_exception(exc: BaseException, what: str) -> ClusterError:
    if isinstance(exc, ClusterError):
        return exc
    from kubernetes.client import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        try:
            body = json.loads(exc.body) if exc.body else None
        except ValueError:
            body = None
        return _error_from_status(int(exc.status or 0), body if isinstance(body, dict) else None, f"{what}: {exc.reason}")
    if isinstance(exc, HTTPError | OSError):
        return Unavailable(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, ValueError):  # pydantic's schema check in the client: our object is wrong
        return Invalid(f"{what}: {exc}", 422)
    return ClusterError(f"{what}: {type(exc).__name__}: {exc}")


@dataclass(frozen=True, slots=True)
class ObjectList:
    items: list[dict[str, Any]]
    resource_version: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion") or "")


class WatchStream:
    """One watch response, iterated event by event; ``close`` may be called from another thread."""

    def __init__(self, response: Any, what: str) -> None:
        self._response = response
        self._what = what
        self._closed = threading.Event()
        self._close_lock = threading.Lock()

    def __iter__(self) -> Iterator[WatchEvent]:
        buffer = b""
        try:
            for chunk in self._response.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, _, buffer = buffer.partition(b"\n")
                    event = self._decode(line)
                    if event is not None:
                        yield event
            if buffer.strip():
                event = self._decode(buffer)
                if event is not None:
                    yield event
        except ClusterError:
            raise
        except Exception as exc:
            if self._closed.is_set():
                return
            raise _map_exception(exc, self._what) from exc
        finally:
            self.close()

    def _decode(self, line: bytes) -> WatchEvent | None:
        if not line.strip():
            return None
        try:
            data = json.loads(line)
            kind, obj = data["type"], data["object"]
        except (ValueError, KeyError, TypeError) as exc:
            raise Unavailable(f"{self._what}: undecodable watch event: {line[:200]!r}") from exc
        if kind == "ERROR":  # the object is a Status; 410 here means "list again"
            raise _error_from_status(int(obj.get("code") or 0), obj, f"{self._what}: watch error")
        return WatchEvent(kind, obj)

    def close(self) -> None:
        """Ends the watch: unblocks a read in progress in another thread, then closes the connection
        (never back to the pool: it is in the middle of a stream)."""
        with self._close_lock:
            if self._closed.is_set():
                return
            self._closed.set()
        try:
            self._response.shutdown()  # urllib3 >= 2.3: the blocked recv returns at once
        except Exception:
            pass
        try:
            self._response.close()
        except Exception:
            pass


@dataclass(frozen=True, slots=True)
class _Ops:
    create: Callable[..., Any]  # (namespace, body)
    read: Callable[..., Any]  # (namespace, name)
    delete: Callable[..., Any]  # (namespace, name, body)
    list_namespaced: Callable[..., Any]  # (namespace, **query)
    list_all: Callable[..., Any] | None = None  # (**query)
    replace: Callable[..., Any] | None = None  # (namespace, name, body): PUT, resourceVersion-checked
    replace_status: Callable[..., Any] | None = None  # (namespace, name, body): PUT .../status


def _ops_table(api_client: Any) -> dict[Kind, _Ops]:
    """Which typed client function serves each operation on each kind: the only place that knows."""
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(api_client)
    apps = k8s.AppsV1Api(api_client)
    discovery = k8s.DiscoveryV1Api(api_client)
    custom = k8s.CustomObjectsApi(api_client)
    coordination = k8s.CoordinationV1Api(api_client)
    keda = (SCALED_OBJECT.group, SCALED_OBJECT.version)
    ours = (HTTPAPP.group, HTTPAPP.version)

    def swap(func: Callable[..., Any]) -> Callable[..., Any]:
        # the typed APIs take (name, namespace); ours take (namespace, name) for every kind
        return lambda namespace, name, **kw: func(name, namespace, **kw)

    return {
        DEPLOYMENT: _Ops(
            apps.create_namespaced_deployment, swap(apps.read_namespaced_deployment),
            swap(apps.delete_namespaced_deployment), apps.list_namespaced_deployment,
            apps.list_deployment_for_all_namespaces,
        ),
        SERVICE: _Ops(
            core.create_namespaced_service, swap(core.read_namespaced_service),
            swap(core.delete_namespaced_service), core.list_namespaced_service,
            core.list_service_for_all_namespaces,
        ),
        ENDPOINT_SLICE: _Ops(
            discovery.create_namespaced_endpoint_slice, swap(discovery.read_namespaced_endpoint_slice),
            swap(discovery.delete_namespaced_endpoint_slice), discovery.list_namespaced_endpoint_slice,
            discovery.list_endpoint_slice_for_all_namespaces,
        ),
        SCALED_OBJECT: _Ops(
            lambda namespace, body, **kw: custom.create_namespaced_custom_object(
                *keda, namespace, SCALED_OBJECT.plural, body, **kw),
            lambda namespace, name, **kw: custom.get_namespaced_custom_object(
                *keda, namespace, SCALED_OBJECT.plural, name, **kw),
            lambda namespace, name, **kw: custom.delete_namespaced_custom_object(
                *keda, namespace, SCALED_OBJECT.plural, name, **kw),
            lambda namespace, **kw: custom.list_namespaced_custom_object(*keda, namespace, SCALED_OBJECT.plural, **kw),
            partial(custom.list_cluster_custom_object, *keda, SCALED_OBJECT.plural),
            replace=lambda namespace, name, body, **kw: custom.replace_namespaced_custom_object(
                *keda, namespace, SCALED_OBJECT.plural, name, body, **kw),
        ),
        HTTPAPP: _Ops(
            lambda namespace, body, **kw: custom.create_namespaced_custom_object(
                *ours, namespace, HTTPAPP.plural, body, **kw),
            lambda namespace, name, **kw: custom.get_namespaced_custom_object(
                *ours, namespace, HTTPAPP.plural, name, **kw),
            lambda namespace, name, **kw: custom.delete_namespaced_custom_object(
                *ours, namespace, HTTPAPP.plural, name, **kw),
            lambda namespace, **kw: custom.list_namespaced_custom_object(*ours, namespace, HTTPAPP.plural, **kw),
            partial(custom.list_cluster_custom_object, *ours, HTTPAPP.plural),
            replace_status=lambda namespace, name, body, **kw: custom.replace_namespaced_custom_object_status(
                *ours, namespace, HTTPAPP.plural, name, body, **kw),
        ),
        CONFIG_MAP: _Ops(
            core.create_namespaced_config_map, swap(core.read_namespaced_config_map),
            swap(core.delete_namespaced_config_map), core.list_namespaced_config_map,
            core.list_config_map_for_all_namespaces,
        ),
        LEASE: _Ops(
            coordination.create_namespaced_lease, swap(coordination.read_namespaced_lease),
            swap(coordination.delete_namespaced_lease), coordination.list_namespaced_lease,
            replace=lambda namespace, name, body, **kw: coordination.replace_namespaced_lease(
                name, namespace, body, **kw),
        ),
    }


def _needed(func: Callable[..., Any] | None, kind: Kind, operation: str) -> Callable[..., Any]:
    if func is None:
        raise ClusterError(f"{operation} is not an operation kedahttp makes on {kind.plural}")
    return func


def _json(response: Any) -> dict[str, Any]:
    try:
        data = json.loads(response.data or b"{}")
    finally:
        response.release_conn()
    return data if isinstance(data, dict) else {}


class Cluster:
    """A connection to one API server. Thread-safe: the client's urllib3 pool is."""

    def __init__(self, api_client: Any) -> None:
        self._api_client = api_client
        self._ops = _ops_table(api_client)

    @classmethod
    def from_environment(cls) -> Cluster:
        """In-cluster configuration inside a pod, else the kubeconfig named by KUBECONFIG (or ~/.kube/config)."""
        from kubernetes import client as k8s
        from kubernetes import config as k8s_config

        if os.environ.get("KUBERNETES_SERVICE_HOST") and os.environ.get("KUBERNETES_SERVICE_PORT"):
            configuration = k8s.Configuration()
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except k8s_config.ConfigException as exc:
                raise ConfigError(f"in-cluster Kubernetes configuration: {exc}") from exc
            return cls(k8s.ApiClient(configuration))
        return cls.from_kubeconfig(os.environ.get("KUBECONFIG") or "~/.kube/config")

    @classmethod
    def from_kubeconfig(cls, path: str, context: str | None = None) -> Cluster:
        from kubernetes import client as k8s
        from kubernetes import config as k8s_config

        configuration = k8s.Configuration()
        try:
            k8s_config.load_kube_config(
                config_file=path, context=context, client_configuration=configuration, persist_config=False,
            )
        except (k8s_config.ConfigException, OSError, ValueError) as exc:
            raise ConfigError(
                f"no Kubernetes configuration: not in a pod, and kubeconfig {path!r} is unusable ({exc})"
            ) from exc
        return cls(k8s.ApiClient(configuration))

    def close(self) -> None:
        self._api_client.close()

    def _call(self, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            response = func(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except Exception as exc:
            raise _map_exception(exc, what) from exc
        return _json(response)

    def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body.get("metadata", {}).get("name")
        return self._call(f"create {kind} {namespace}/{name}", self._ops[kind].create, namespace, dict(body))

    def read(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        return self._call(f"read {kind} {namespace}/{name}", self._ops[kind].read, namespace, name)

    def read_optional(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.read(kind, namespace, name)
        except NotFound:
            return None

    def replace(self, kind: Kind, body: Mapping[str, Any]) -> dict[str, Any]:
        """Writes an object whole; its ``metadata.resourceVersion`` makes it Conflict if it changed since read."""
        return self._put(kind, body, "replace", _needed(self._ops[kind].replace, kind, "replace"))

    def replace_status(self, kind: Kind, body: Mapping[str, Any]) -> dict[str, Any]:
        """Writes an object's status subresource (its spec is left as stored); resourceVersion-checked."""
        return self._put(kind, body, "replace status", _needed(self._ops[kind].replace_status, kind, "replace_status"))

    def _put(self, kind: Kind, body: Mapping[str, Any], what: str, func: Callable[..., Any]) -> dict[str, Any]:
        meta = body.get("metadata", {})
        namespace, name = meta.get("namespace"), meta.get("name")
        return self._call(f"{what} {kind} {namespace}/{name}", func, namespace, name, dict(body))

    def delete(self, kind: Kind, namespace: str, name: str, uid: str | None = None) -> None:
        """Deletes one object (its dependents in the background); with ``uid``, only that very object."""
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        self._call(f"delete {kind} {namespace}/{name}", self._ops[kind].delete, namespace, name, body=options)

    def list(self, kind: Kind, namespace: str | None, label_selector: str | None = None) -> ObjectList:
        """One namespace, or every namespace when ``namespace`` is None or empty."""
        ops = self._ops[kind]
        what = f"list {kind.plural} in {namespace or 'all namespaces'}"
        query = {"label_selector": label_selector} if label_selector else {}
        if namespace:
            data = self._call(what, ops.list_namespaced, namespace, **query)
        else:
            data = self._call(what, _needed(ops.list_all, kind, "list_all"), **query)
        items = [item for item in data.get("items") or [] if isinstance(item, dict)]
        return ObjectList(items, str(data.get("metadata", {}).get("resourceVersion") or ""))

    def watch(
        self,
        kind: Kind,
        namespace: str | None,
        label_selector: str | None,
        resource_version: str,
        timeout_seconds: int,
    ) -> WatchStream:
        """Opens a watch from ``resource_version``; the server ends it after ``timeout_seconds``.

        The read timeout is a little longer than the server's, so a connection that dies silently is
        noticed too. Raises Gone when the version is too old (here or, later, while iterating).
        """
        ops = self._ops[kind]
        what = f"watch {kind.plural} in {namespace or 'all namespaces'}"
        query: dict[str, Any] = {
            "watch": True,
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": int(timeout_seconds),
        }
        if label_selector:
            query["label_selector"] = label_selector
        func = partial(ops.list_namespaced, namespace) if namespace else _needed(ops.list_all, kind, "list_all")
        try:
            response = func(
                _preload_content=False, _request_timeout=(REQUEST_TIMEOUT[0], timeout_seconds + 15), **query,
            )
        except Exception as exc:
            raise _map_exception(exc, what) from exc
        return WatchStream(response, what)
