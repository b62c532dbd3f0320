"""The local runtime: each app a "Deployment" whose replicas are local processes, each on its own port.

It plays the cluster's part for `kedahttp dev`: ``scale(key, n)`` is the scale subresource, a replica is
ready when its port accepts a connection (a TCP readiness probe), and routes and ready endpoints reach
the proxy through the same ``RouteSource`` interface as the routes file and Kubernetes, pushed the
moment they change. A replica that exits on its own is restarted with a growing delay (a pod's restart
policy); a replica being removed leaves the endpoints first, then gets SIGTERM and, after its grace
period, SIGKILL. Replicas run in their own session (child.py) so Ctrl-C reaches only `kedahttp dev`,
which stops them itself after the proxy has drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedahttp.dev.child import ChildProcess
from kedahttp.dev.config import GREETER, AppConfig
from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.tasks import TaskOwner
from kedahttp.proxy.sources import Backend, RouteSink

log = logging.getLogger("kedahttp.dev.runtime")

PROBE_INTERVAL_SECONDS = 0.05
ENDPOINT_REMOVAL_DELAY_SECONDS = 0.2  # let the proxy stop picking a replica before it is told to stop
RESTART_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class AppStatus:
    desired: int
    replicas: int  # replicas that exist and are not being removed (the HPA's status.replicas)
    ready: int
    restarts: int
    stopping: int = 0  # removed replicas still shutting down


class Replica:
    """One replica: its process (restarted in place when it dies) and whether its port answers."""

    def __init__(self, app: AppConfig, replica_id: str) -> None:
        self.app = app
        self.id = replica_id
        self.port = 0
        self.ready = False
        self.restarts = 0
        self.started_at = time.monotonic()
        self.process: ChildProcess | None = None
        self.stop_requested = asyncio.Event()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"


class AppRuntime:
    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.desired = 0
        self.replicas: list[Replica] = []  # not being removed
        self.removing: list[Replica] = []
        self.restarts = 0
        self._ids = itertools.count(1)

    def next_id(self) -> str:
        return f"{self.config.name}-{next(self._ids)}"

    def endpoints(self) -> list[str]:
        return [r.endpoint for r in self.replicas if r.ready]

    def status(self) -> AppStatus:
        ready = sum(1 for r in self.replicas if r.ready)
        return AppStatus(self.desired, len(self.replicas), ready, self.restarts, len(self.removing))


class LocalRuntime(BaseComponent):
    name = "dev-runtime"

    def __init__(self, apps: Sequence[AppConfig], python: str = sys.executable, workdir: str | None = None) -> None:
        self.apps = {app.key: AppRuntime(app) for app in apps}
        self.python = python
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kedahttp-dev-"))
        self._sinks: list[RouteSink] = []
        self._tasks = TaskOwner("dev-runtime")
        self._replica_tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- the route source side -------------------------------------------------------------------

    def backends(self) -> list[Backend]:
        return [
            Backend(key=key, hosts=a.config.hosts, path_prefixes=a.config.path_prefixes,
                    cold_start_timeout_seconds=a.config.cold_start_timeout_seconds, protocol=a.config.protocol)
            for key, a in self.apps.items()
        ]

    def attach(self, sink: RouteSink) -> None:
        sink.replace_backends(self.backends())
        for key, app in self.apps.items():
            sink.set_endpoints(key, app.endpoints())
        self._sinks.append(sink)

    def detach(self, sink: RouteSink) -> None:
        with contextlib.suppress(ValueError):
            self._sinks.remove(sink)

    def _publish(self, app: AppRuntime) -> None:
        endpoints = app.endpoints()
        for sink in self._sinks:
            try:
                sink.set_endpoints(app.config.key, endpoints)
            except Exception:
                log.exception("route sink refused endpoints", extra={"app": app.config.key})

    def source(self) -> LocalRuntimeSource:
        return LocalRuntimeSource(self)

    # -- the scale side ---------------------------------------------------------------------------

    def status(self, key: str) -> AppStatus:
        return self.apps[key].status()

    def replica_ids(self, key: str) -> list[str]:
        return [r.id for r in self.apps[key].replicas]

    async def start(self) -> None:
        for key, app in self.apps.items():
            if app.config.min_replicas:
                await self.scale(key, app.config.min_replicas)

    async def scale(self, key: str, replicas: int) -> None:
        """Sets the app's replica count and starts or removes replicas to match; returns at once."""
        if self._closing:
            return
        app = self.apps[key]
        app.desired = max(replicas, 0)
        while len(app.replicas) < app.desired:
            replica = Replica(app.config, app.next_id())
            app.replicas.append(replica)
            task = self._tasks.spawn(self._run_replica(app, replica), name=replica.id)
            self._replica_tasks.add(task)
            task.add_done_callback(self._replica_tasks.discard)
        if len(app.replicas) > app.desired:
            # as a ReplicaSet does: unready replicas go first, then the newest
            order = sorted(app.replicas, key=lambda r: (r.ready, r.started_at))
            for replica in order[: len(app.replicas) - app.desired]:
                app.replicas.remove(replica)
                app.removing.append(replica)
                replica.stop_requested.set()
            self._publish(app)

    def _command(self, app: AppConfig, replica: Replica) -> list[str]:
        if app.is_sample:
            return [
                self.python, "-m", "kedahttp.dev.sampleapp", "--port", str(replica.port),
                "--replica-id", replica.id, "--app", app.name, "--delay-ms", f"{app.sample_delay_ms:g}",
                "--startup-seconds", f"{app.sample_startup_seconds:g}", "--parent-pid", str(os.getpid()),
            ]
        if app.command == (GREETER,):
            return [
                self.python, "-m", "kedahttp.dev.greeter", "--port", str(replica.port), "--replica-id", replica.id,
                "--startup-seconds", f"{app.sample_startup_seconds:g}",
            ]
        return [part.replace("{port}", str(replica.port)).replace("{replica}", replica.id) for part in app.command]

    async def _run_replica(self, app: AppRuntime, replica: Replica) -> None:
        failures = 0
        try:
            while not replica.stop_requested.is_set():
                replica.port = free_port()
                exited_early = await self._run_once(app, replica)
                if not exited_early or replica.stop_requested.is_set():
                    break
                failures += 1
                replica.restarts += 1
                app.restarts += 1
                delay = RESTART_BACKOFF_SECONDS[min(failures, len(RESTART_BACKOFF_SECONDS)) - 1]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(replica.stop_requested.wait(), delay)
        finally:
            with contextlib.suppress(ValueError):
                app.removing.remove(replica)
            if replica in app.replicas:  # cancelled at close
                app.replicas.remove(replica)

    async def _run_once(self, app: AppRuntime, replica: Replica) -> bool:
        """Runs the process until it exits (True) or the replica is removed (False)."""
        env = {**os.environ, **app.config.env, "PORT": str(replica.port), "REPLICA_ID": replica.id}
        log_path = self.workdir / f"{replica.id}.log"
        out = await asyncio.to_thread(open, log_path, "ab")
        try:
            process = await ChildProcess.start(self._command(app.config, replica), env, out)
        finally:
            out.close()  # the child has its own copy
        replica.process = process
        replica.started_at = time.monotonic()
        exit_wait: asyncio.Future[Any] = asyncio.ensure_future(process.wait())
        stop_wait: asyncio.Future[Any] = asyncio.ensure_future(replica.stop_requested.wait())
        try:
            ready = await self._probe(app, replica, exit_wait, stop_wait)
            if ready:
                replica.ready = True
                log.info("replica ready", extra={"app": app.config.key, "replica": replica.id,
                                                   "port": replica.port,
                                                   "seconds": round(time.monotonic() - replica.started_at, 3)})
                self._publish(app)
                await asyncio.wait({exit_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if exit_wait.done() and not replica.stop_requested.is_set():
                replica.ready = False
                self._publish(app)
                log.warning("replica exited; restarting", extra={
                    "app": app.config.key, "replica": replica.id, "code": process.returncode,
                    "log": str(log_path), "tail": _tail(log_path)})
                return True
            was_ready, replica.ready = replica.ready, False
            if was_ready:
                self._publish(app)
                await asyncio.sleep(ENDPOINT_REMOVAL_DELAY_SECONDS)
            await self._terminate(process, app.config.termination_grace_seconds, replica.id)
            return False
        finally:
            stop_wait.cancel()
            if process.returncode is None:  # cancelled (shutdown): never leave a process behind
                await asyncio.shield(self._terminate(process, app.config.termination_grace_seconds, replica.id))
            exit_wait.cancel()
            if process.returncode is not None:
                process.close()

    async def _probe(self, app: AppRuntime, replica: Replica, exit_wait: asyncio.Future[Any],
                     stop_wait: asyncio.Future[Any]) -> bool:
        deadline = time.monotonic() + app.config.readiness_timeout_seconds
        while not exit_wait.done() and not stop_wait.done():
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", replica.port), 1.0)
            except (TimeoutError, OSError):
                if time.monotonic() > deadline:
                    log.warning("replica not ready in time; restarting", extra={
                        "app": app.config.key, "replica": replica.id,
                        "seconds": app.config.readiness_timeout_seconds})
                    await self._terminate(replica.process, 1.0, replica.id)
                    return False
                await asyncio.wait({exit_wait, stop_wait}, timeout=PROBE_INTERVAL_SECONDS)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        return False

    @staticmethod
    async def _terminate(process: ChildProcess | None, grace: float, name: str) -> None:
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            log.warning("replica did not stop in its grace period: SIGKILL", extra={"replica": name})
            process.kill()
            await process.wait()

    # -- lifecycle --------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stops every replica (SIGTERM, then SIGKILL after its grace) and waits for them."""
        self._closing = True
        for app in self.apps.values():
            app.desired = 0
            for replica in app.replicas:
                replica.stop_requested.set()
        pending = [t for t in self._replica_tasks if not t.done()]
        if pending:
            longest = max((a.config.termination_grace_seconds for a in self.apps.values()), default=5.0)
            await asyncio.wait(pending, timeout=longest + ENDPOINT_REMOVAL_DELAY_SECONDS + 2.0)
        await self._tasks.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class LocalRuntimeSource:
    """The runtime as a ``RouteSource``: reports every app and its ready replicas, then every change."""

    name = "dev-runtime"

    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime

    async def run(self, sink: RouteSink) -> None:
        self.runtime.attach(sink)
        try:
            await asyncio.Event().wait()
        finally:
            self.runtime.detach(sink)


def _tail(path: Path, limit: int = 600) -> str:
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    return data.decode(errors="replace").strip()
