"""A small HTTP server that plays the Kubernetes API for the real ``kubernetes`` client, over a real socket.

It stores objects in memory and speaks what kedahttp uses: create (409 if the object exists), read and
delete (404, uid preconditions), replace (PUT, 409 on a stale resourceVersion; the generation moves
when the spec changes; ``/status`` subresources), list and watch with label selectors and resourceVersions, chunked watch
streams that replay history from a resourceVersion, ``410 Gone`` for versions older than the last
``compact()``. Tests change objects directly (``put``, ``remove``) the way controllers would, inject
failures (``fail``), cut every open watch (``drop_watches``), and read the request log (``requests``).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

# resource key -> (group/version path prefix, kind)
RESOURCES: dict[str, tuple[str, str]] = {
    "deployments.apps": ("/apis/apps/v1", "Deployment"),
    "services": ("/api/v1", "Service"),
    "configmaps": ("/api/v1", "ConfigMap"),
    "endpointslices.discovery.k8s.io": ("/apis/discovery.k8s.io/v1", "EndpointSlice"),
    "scaledobjects.keda.sh": ("/apis/keda.sh/v1alpha1", "ScaledObject"),
    "httpapps.kedahttp.dev": ("/apis/kedahttp.dev/v1alpha1", "HTTPApp"),
    "leases.coordination.k8s.io": ("/apis/coordination.k8s.io/v1", "Lease"),
}
# resources whose status is a subresource: a write of the object keeps the stored status, and a write
# of the status keeps the stored spec (and never bumps the generation)
STATUS_SUBRESOURCE = {"httpapps.kedahttp.dev", "scaledobjects.keda.sh"}
KIND_TO_RESOURCE = {kind: key for key, (_, kind) in RESOURCES.items()}


def resource_of(obj: Mapping[str, Any]) -> str:
    return KIND_TO_RESOURCE[obj["kind"]]


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, _, value = term.partition("!=")
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass
class Change:
    rv: int
    resource: str
    type: str  # ADDED, MODIFIED, DELETED
    old: dict[str, Any] | None
    new: dict[str, Any] | None


@dataclass
class Fault:
    method: str
    resource: str
    status: int
    message: str
    times: int


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None


@dataclass
class _Route:
    resource: str
    namespace: str | None
    name: str | None
    subresource: str = ""


@dataclass
class _Watch:
    resource: str
    namespace: str | None
    selector: str
    bookmarks: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "AlreadyExists", 410: "Expired",
           422: "Invalid", 500: "InternalError", 503: "ServiceUnavailable"}


class FakeApiServer:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.history: list[Change] = []
        self.rv = 100
        self.compacted_rv = 0
        self.requests: list[Request] = []
        self.sent: list[tuple[str, str]] = []  # (path, event type) of every watch event written
        self.faults: list[Fault] = []
        self.unserved: set[str] = set()
        self.cond = threading.Condition()
        self.watches: list[_Watch] = []
        self.stopping = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-apiserver", daemon=True,
        )

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            for watch in self.watches:
                watch.stop.set()
            self.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def write_kubeconfig(self, directory: Path) -> Path:
        path = directory / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}],
            "current-context": "fake",
        }))
        return path

    # -- what controllers and tests do directly --------------------------------------------------------

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Creates or replaces an object (as a controller would), emitting ADDED or MODIFIED."""
        with self.cond:
            return self._store(resource_of(obj), json.loads(json.dumps(obj)))

    def remove(self, kind: str, namespace: str, name: str) -> None:
        with self.cond:
            self._delete(KIND_TO_RESOURCE[kind], namespace, name)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            return self.objects.get((KIND_TO_RESOURCE[kind], namespace, name))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        resource = KIND_TO_RESOURCE[kind]
        with self.cond:
            return [obj for (res, _, _), obj in sorted(self.objects.items()) if res == resource]

    def fail(self, method: str, kind: str, status: int, message: str = "injected failure", times: int = 1) -> None:
        """The next ``times`` calls of ``method`` on ``kind`` answer ``status``."""
        with self.cond:
            self.faults.append(Fault(method.upper(), KIND_TO_RESOURCE[kind], status, message, times))

    def unserve(self, kind: str) -> None:
        """Answers 404 for the whole resource, as a cluster without that CRD does."""
        self.unserved.add(KIND_TO_RESOURCE[kind])

    def drop_watches(self) -> None:
        """Cuts every open watch connection without a proper end, as a network failure would."""
        with self.cond:
            for watch in self.watches:
                watch.stop.set()
            self.cond.notify_all()

    def bookmark(self) -> int:
        """Sends every watch that asked for them a BOOKMARK at a new resourceVersion, and returns it."""
        with self.cond:
            rv = self._next_rv()
            for resource in RESOURCES:
                self.history.append(Change(rv, resource, "BOOKMARK", None, None))
            self.cond.notify_all()
            return rv

    def compact(self) -> None:
        """Forgets history: watches from any resourceVersion seen so far get 410 Gone."""
        with self.cond:
            self.rv += 1
            self.compacted_rv = self.rv
            self.history.clear()

    def requests_for(self, method: str, path_part: str) -> list[Request]:
        with self.cond:
            return [r for r in self.requests if r.method == method and path_part in r.path]

    def watch_count(self) -> int:
        with self.cond:
            return len(self.watches)

    # -- storage (call with self.cond held) -------------------------------------------------------------

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _store(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        key = (resource, meta.get("namespace", "default"), meta["name"])
        meta.setdefault("namespace", key[1])
        old = self.objects.get(key)
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        if old is None:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            meta.setdefault("generation", 1)
        else:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            generation = int(old["metadata"].get("generation") or 1)
            meta["generation"] = generation + 1 if obj.get("spec") != old.get("spec") else generation
        self.objects[key] = obj
        self.history.append(Change(rv, resource, "MODIFIED" if old else "ADDED", old, obj))
        self.cond.notify_all()
        return obj

    def _delete(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        old = self.objects.pop((resource, namespace, name))
        rv = self._next_rv()
        gone = json.loads(json.dumps(old))
        gone["metadata"]["resourceVersion"] = str(rv)
        self.history.append(Change(rv, resource, "DELETED", old, gone))
        self.cond.notify_all()
        return gone

    def _take_fault(self, method: str, resource: str) -> Fault | None:
        for fault in self.faults:
            if fault.method == method and fault.resource == resource and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _matching(self, route: _Route, selector: str) -> list[dict[str, Any]]:
        return [
            obj for (res, ns, _), obj in sorted(self.objects.items())
            if res == route.resource and (route.namespace is None or ns == route.namespace)
            and selector_matches(selector, obj["metadata"].get("labels") or {})
        ]

    def _event_for(self, change: Change, watch: _Watch) -> dict[str, Any] | None:
        if change.resource != watch.resource:
            return None
        if change.type == "BOOKMARK":
            if not watch.bookmarks:
                return None
            return {"type": "BOOKMARK", "object": {"kind": RESOURCES[change.resource][1],
                                                   "metadata": {"resourceVersion": str(change.rv)}}}
        obj = change.new if change.new is not None else change.old
        assert obj is not None
        if watch.namespace is not None and obj["metadata"]["namespace"] != watch.namespace:
            return None
        was = change.old is not None and selector_matches(watch.selector, change.old["metadata"].get("labels") or {})
        now = change.type != "DELETED" and selector_matches(watch.selector, obj["metadata"].get("labels") or {})
        if was and now:
            kind = change.type
        elif now:
            kind = "ADDED"
        elif was:
            kind = "DELETED"
        else:
            return None
        return {"type": kind, "object": obj}


def _parse_path(path: str) -> _Route | None:
    for resource, (prefix, _) in RESOURCES.items():
        if not path.startswith(prefix + "/"):
            continue
        parts = path[len(prefix) + 1:].split("/")
        plural = resource.split(".")[0]
        if parts[0] == "namespaces" and len(parts) in (3, 4) and parts[2] == plural:
            return _Route(resource, parts[1], parts[3] if len(parts) == 4 else None)
        if parts[0] == "namespaces" and len(parts) == 5 and parts[2] == plural and parts[4] == "status":
            return _Route(resource, parts[1], parts[3], "status")
        if parts == [plural]:
            return _Route(resource, None, None)
    return None


def _make_handler(api: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # headers and body go out in separate writes: without this, delayed ACKs add 40 ms per call
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send_json(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, message: str) -> None:
            self._send_json(code, status_body(code, REASONS.get(code, "Unknown"), message))

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else None

        def _begin(self) -> tuple[_Route | None, dict[str, str], Any]:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            body = self._body() if self.command in ("POST", "PUT", "DELETE", "PATCH") else None
            route = _parse_path(parts.path)
            with api.cond:
                api.requests.append(Request(self.command, parts.path, query, body))
                if route is not None and route.resource in api.unserved:
                    route = None
                fault = api._take_fault(self.command, route.resource) if route else None
            if route is None:
                self._error(404, f"the server could not find the requested resource ({parts.path})")
            elif fault is not None:
                self._error(fault.status, fault.message)
                route = None
            return route, query, body

        def do_GET(self) -> None:
            route, query, _ = self._begin()
            if route is None:
                return
            if query.get("watch") in ("true", "1", "True"):
                self._watch(route, query)
                return
            with api.cond:
                if route.name is not None:
                    obj = api.objects.get((route.resource, route.namespace or "", route.name))
                    if obj is None:
                        return self._error(404, f'{route.resource} "{route.name}" not found')
                    return self._send_json(200, obj)
                items = api._matching(route, query.get("labelSelector", ""))
                body = {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": str(api.rv)}, "items": items}
            self._send_json(200, body)

        def do_POST(self) -> None:
            route, _, body = self._begin()
            if route is None:
                return
            if route.namespace is None or route.name is not None or not isinstance(body, dict):
                return self._error(400, "bad create")
            body.setdefault("metadata", {})["namespace"] = route.namespace
            with api.cond:
                if (route.resource, route.namespace, body["metadata"].get("name")) in api.objects:
                    return self._error(409, f'{route.resource} "{body["metadata"].get("name")}" already exists')
                created = api._store(route.resource, body)
            self._send_json(201, created)

        def do_PUT(self) -> None:
            route, _, body = self._begin()
            if route is None:
                return
            if route.namespace is None or route.name is None or not isinstance(body, dict):
                return self._error(400, "bad replace")
            with api.cond:
                key = (route.resource, route.namespace, route.name)
                old = api.objects.get(key)
                if old is None:
                    return self._error(404, f'{route.resource} "{route.name}" not found')
                meta = body.setdefault("metadata", {})
                if meta.get("name") != route.name:
                    return self._error(400, "the name in the body differs from the path")
                want = meta.get("resourceVersion")
                if want and want != old["metadata"]["resourceVersion"]:
                    return self._error(409, f'Operation cannot be fulfilled on {route.resource} "{route.name}": '
                                            "the object has been modified; please apply your changes to the "
                                            "latest version and try again")
                meta["namespace"] = route.namespace
                if route.resource in STATUS_SUBRESOURCE:
                    new = json.loads(json.dumps(old))
                    if route.subresource == "status":
                        new["status"] = body.get("status")
                    else:
                        new = {**body, "status": old.get("status")}
                        new["metadata"] = {**meta, "uid": old["metadata"]["uid"]}
                    body = new
                stored = api._store(route.resource, body)
            self._send_json(200, stored)

        def do_DELETE(self) -> None:
            route, _, body = self._begin()
            if route is None:
                return
            with api.cond:
                key = (route.resource, route.namespace or "", route.name or "")
                obj = api.objects.get(key)
                if obj is None:
                    return self._error(404, f'{route.resource} "{route.name}" not found')
                want_uid = ((body or {}).get("preconditions") or {}).get("uid")
                if want_uid and want_uid != obj["metadata"]["uid"]:
                    return self._error(409, f"Precondition failed: UID in precondition: {want_uid}")
                gone = api._delete(*key)
            self._send_json(200, gone)

        def _watch(self, route: _Route, query: dict[str, str]) -> None:
            watch = _Watch(route.resource, route.namespace, query.get("labelSelector", ""),
                           query.get("allowWatchBookmarks") == "true")
            deadline = time.monotonic() + float(query.get("timeoutSeconds") or 3600)
            rv_text = query.get("resourceVersion") or ""
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            with api.cond:
                if rv_text and int(rv_text) < api.compacted_rv:
                    pending: list[dict[str, Any]] = [{"type": "ERROR", "object": status_body(
                        410, "Expired", f"too old resource version: {rv_text} ({api.compacted_rv})")}]
                    cursor = None
                else:
                    if rv_text:
                        pending, cursor = [], int(rv_text)
                    else:  # no version: the current state as synthetic ADDED events
                        pending = [{"type": "ADDED", "object": o} for o in api._matching(route, watch.selector)]
                        cursor = api.rv
                    api.watches.append(watch)
            try:
                if cursor is None:
                    self._chunks(pending)
                    return self._end()
                while True:
                    if pending:
                        self._chunks(pending)
                        pending = []
                    with api.cond:
                        while not watch.stop.is_set() and time.monotonic() < deadline:
                            if self._client_gone():
                                return
                            events = [(c.rv, api._event_for(c, watch)) for c in api.history if c.rv > cursor]
                            if events:
                                cursor = events[-1][0]
                                pending = [e for _, e in events if e is not None]
                                if pending:
                                    break
                            api.cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
                    if watch.stop.is_set():
                        self._cut()
                        return
                    if not pending and time.monotonic() >= deadline:
                        return self._end()
            except OSError:
                self.close_connection = True
            finally:
                with api.cond:
                    if watch in api.watches:
                        api.watches.remove(watch)

        def _client_gone(self) -> bool:
            """The client closed its end (it sends nothing else on a watch connection)."""
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            try:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

        def _chunks(self, events: list[dict[str, Any]]) -> None:
            for event in events:
                data = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            with api.cond:
                api.sent.extend((urlsplit(self.path).path, event["type"]) for event in events)

        def _end(self) -> None:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _cut(self) -> None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    return Handler
