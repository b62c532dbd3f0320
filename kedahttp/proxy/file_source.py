"""Routes and readiness from a YAML routes file (CONTRACT section 5), for running without Kubernetes.

The file is validated whole, with errors that name the backend and the field; a change is picked up by
polling its mtime/size/inode about once a second, and a bad edit keeps the previous good routes (the
error is logged). Readiness is found by connecting to each upstream: a backend that refuses connections
is cold. Cold backends are probed every 50 ms while a request may be waiting (the dispatcher nudges the
source on every wake event) and every second otherwise; warm ones every second, to notice them going.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kedahttp.activity.model import backend_key
from kedahttp.process.settings import ConfigurationError
from kedahttp.process.tasks import TaskOwner
from kedahttp.proxy.app_settings import AppSettingsError, parse_app_settings
from kedahttp.proxy.sources import PROTOCOLS, Backend, RouteSink
from kedahttp.proxy.waiting_page import MAX_TEMPLATE_BYTES

log = logging.getLogger("kedahttp.proxy.file_source")

POLL_SECONDS = 1.0
WARM_PROBE_SECONDS = 1.0
COLD_PROBE_SECONDS = 1.0
EAGER_PROBE_SECONDS = 0.05
EAGER_FOR_SECONDS = 5.0  # after a nudge, probe eagerly this long (the held requests re-nudge)
PROBE_TIMEOUT_SECONDS = 1.0

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$|^\[?[0-9a-f:.]+\]?$")
_FIELDS = {"name", "namespace", "hosts", "pathPrefixes", "upstream", "coldStartTimeoutSeconds", "protocol",
           "timeouts", "coldStart"}


class RoutesFileError(ConfigurationError, ValueError):
    """The routes file cannot be used; the message names the file, the backend and the field."""


@dataclass(frozen=True)
class FileBackend:
    backend: Backend
    endpoint: str  # host:port of the upstream


def _fail(path: str, where: str, message: str) -> RoutesFileError:
    return RoutesFileError(f"routes file {path}: {where}: {message}")


def parse_routes(text: str, path: str = "<routes>",
                 read_template: Callable[[str], str] | None = None) -> list[FileBackend]:
    """The backends of a routes file's text; ``read_template`` reads a ``coldStart.template`` by name.

    Raises RoutesFileError naming the file, the backend and the field.
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RoutesFileError(f"routes file {path}: not valid YAML: {exc}") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict) or not isinstance(doc.get("backends", []), list):
        raise RoutesFileError(f"routes file {path}: expected a mapping with a 'backends' list")
    out: list[FileBackend] = []
    seen: set[str] = set()
    for index, item in enumerate(doc.get("backends") or []):
        out.append(_parse_backend(item, index, path, seen, read_template))
    return out


def _parse_backend(item: Any, index: int, path: str, seen: set[str],
                   read_template: Callable[[str], str] | None) -> FileBackend:
    where = f"backends[{index}]"
    if not isinstance(item, dict):
        raise _fail(path, where, "expected a mapping")
    name = item.get("name")
    if not isinstance(name, str) or not _DNS1123_LABEL.match(name):
        raise _fail(path, f"{where} field 'name'", f"must be a DNS-1123 label (got {name!r})")
    where = f"backend {name!r}"
    unknown = set(item) - _FIELDS
    if unknown:
        raise _fail(path, where, f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    namespace = item.get("namespace", "default")
    if not isinstance(namespace, str) or not _DNS1123_LABEL.match(namespace):
        raise _fail(path, f"{where} field 'namespace'", f"must be a DNS-1123 label (got {namespace!r})")
    key = backend_key(namespace, name)
    if key in seen:
        raise _fail(path, where, f"defined twice in namespace {namespace!r}")
    seen.add(key)
    hosts = item.get("hosts")
    if not isinstance(hosts, list) or not hosts:
        raise _fail(path, f"{where} field 'hosts'", "must be a non-empty list of host names")
    clean_hosts = []
    for host in hosts:
        if not isinstance(host, str) or not _HOST.match(host.strip().lower()):
            raise _fail(path, f"{where} field 'hosts'", f"not a host name or '*.' wildcard: {host!r}")
        clean_hosts.append(host.strip().lower().strip("[]"))
    prefixes = item.get("pathPrefixes", ["/"])
    if not isinstance(prefixes, list) or not prefixes:
        raise _fail(path, f"{where} field 'pathPrefixes'", "must be a non-empty list of paths")
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise _fail(path, f"{where} field 'pathPrefixes'", f"each prefix must start with '/' (got {prefix!r})")
    endpoint = _endpoint(item.get("upstream"))
    if endpoint is None:
        raise _fail(path, f"{where} field 'upstream'",
                    f"must be http://host:port (got {item.get('upstream')!r})")
    timeout = item.get("coldStartTimeoutSeconds")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        raise _fail(path, f"{where} field 'coldStartTimeoutSeconds'", f"must be a number > 0 (got {timeout!r})")
    protocol = item.get("protocol", "http1")
    if protocol not in PROTOCOLS:
        raise _fail(path, f"{where} field 'protocol'", f"must be one of {', '.join(PROTOCOLS)} (got {protocol!r})")
    try:
        settings = parse_app_settings(item.get("timeouts"), item.get("coldStart"), read_template)
    except AppSettingsError as exc:
        raise _fail(path, f"{where} field '{exc.field}'", exc.reason) from exc
    backend = Backend(
        key=key,
        hosts=tuple(clean_hosts),
        path_prefixes=tuple(prefixes),
        cold_start_timeout_seconds=float(timeout) if timeout is not None else None,
        protocol=protocol,
        settings=settings,
    )
    return FileBackend(backend, endpoint)


def _endpoint(upstream: Any) -> str | None:
    if not isinstance(upstream, str) or not upstream.startswith("http://"):
        return None
    authority = upstream[len("http://"):].split("/", 1)[0]
    if authority.startswith("["):
        host, sep, port = authority[1:].partition("]:")
        host = f"[{host}]"
    else:
        host, sep, port = authority.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return f"{host}:{port}"


def load_routes_file(path: str) -> list[FileBackend]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise RoutesFileError(f"routes file {path}: cannot read: {exc.strerror or exc}") from exc
    return parse_routes(text, path, lambda name: _read_template(path, name))


def _read_template(routes_path: str, name: str) -> str:
    """A waiting-page template named in the routes file, relative to the file's directory."""
    template = Path(routes_path).parent / name
    with template.open("rb") as f:
        data = f.read(MAX_TEMPLATE_BYTES + 1)
    if len(data) > MAX_TEMPLATE_BYTES:
        raise OSError(f"larger than {MAX_TEMPLATE_BYTES} bytes")
    return data.decode()


class FileSource:
    name = "file"

    def __init__(self, path: str, *, interest: Callable[[str], bool] | None = None,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        self.interest = interest  # True while the proxy holds requests for the backend
        self.tasks = TaskOwner("file-source")
        self._probes: dict[str, tuple[str, asyncio.Task[Any]]] = {}
        self._nudged: dict[str, asyncio.Event] = {}
        self._eager_until: dict[str, float] = {}
        self._stamp: tuple[float, int, int] | None = None

    def nudge(self, key: str) -> None:
        """A request is waiting for ``key``: probe it now and keep probing quickly."""
        loop = asyncio.get_running_loop()
        self._eager_until[key] = loop.time() + EAGER_FOR_SECONDS
        event = self._nudged.get(key)
        if event is not None:
            event.set()

    async def run(self, sink: RouteSink) -> None:
        backends = load_routes_file(self.path)  # the first load must succeed
        self._stamp = self._file_stamp()
        try:
            self._apply(backends, sink)
            while True:
                await asyncio.sleep(self.poll_seconds)
                stamp = self._file_stamp()
                if stamp == self._stamp:
                    continue
                self._stamp = stamp
                try:
                    backends = load_routes_file(self.path)
                except RoutesFileError as exc:
                    log.error("routes file reload failed; keeping the previous routes", extra={"error": str(exc)})
                    continue
                log.info("routes file reloaded", extra={"backends": len(backends)})
                self._apply(backends, sink)
        finally:
            await self.tasks.close()

    def _file_stamp(self) -> tuple[float, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime, st.st_size, st.st_ino)

    def _apply(self, backends: list[FileBackend], sink: RouteSink) -> None:
        sink.replace_backends([fb.backend for fb in backends])
        wanted = {fb.backend.key: fb.endpoint for fb in backends}
        for key in list(self._probes):
            endpoint, task = self._probes[key]
            if wanted.get(key) != endpoint:
                task.cancel()
                del self._probes[key]
                self._nudged.pop(key, None)
        for key, endpoint in wanted.items():
            if key not in self._probes:
                self._nudged[key] = asyncio.Event()
                task = self.tasks.spawn(self._probe_loop(key, endpoint, sink), f"probe {key}")
                self._probes[key] = (endpoint, task)

    async def _probe_loop(self, key: str, endpoint: str, sink: RouteSink) -> None:
        loop = asyncio.get_running_loop()
        host, _, port = endpoint.rpartition(":")
        host = host.strip("[]")
        ready: bool | None = None
        event = self._nudged[key]
        while True:
            event.clear()
            ok = await _can_connect(host, int(port))
            if ok != ready:
                ready = ok
                sink.set_endpoints(key, [endpoint] if ok else [])
                log.info("backend ready" if ok else "backend not ready", extra={"backend": key})
            if ok:
                delay = WARM_PROBE_SECONDS
            elif loop.time() < self._eager_until.get(key, 0.0) or (self.interest and self.interest(key)):
                delay = EAGER_PROBE_SECONDS
            else:
                delay = COLD_PROBE_SECONDS
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await event.wait()


async def _can_connect(host: str, port: int) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True
