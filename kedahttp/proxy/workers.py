"""WORKERS > 1: a supervisor and N worker processes that share the data-path port with SO_REUSEPORT.

Each worker is a whole proxy (route source, dispatcher, reporter with its own instance id) without the
admin and metrics servers; the kernel spreads connections over the workers' sockets. The supervisor
serves /healthz, /readyz, the apps API and /metrics: every worker streams a snapshot of its counters to
it once a second over a loopback socket, and /metrics serves their sum (a dead worker's last counters
stay in the sum, its gauges drop to zero). Workers are spawned (not forked: the parent runs a loop),
put in their own process group so a terminal's Ctrl-C reaches only the supervisor, restarted when they
die, and sent SIGTERM on shutdown; each then runs its own staged shutdown and drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import struct
import time
from multiprocessing.process import BaseProcess
from typing import Any

from kedahttp.activity.bus import open_transport
from kedahttp.process import lifecycle, logs
from kedahttp.process.lifecycle import BaseComponent, Component
from kedahttp.process.settings import Settings
from kedahttp.process.tasks import TaskOwner
from kedahttp.proxy.admin import AdminContext, AdminServer
from kedahttp.proxy.assembly import SourceRunner, build, make_source
from kedahttp.proxy.live import LivePage, SnapshotSampler, is_served
from kedahttp.proxy.routing import RouteTable
from kedahttp.proxy.telemetry import MetricsServer, Snapshot, sum_process_snapshots

log = logging.getLogger("kedahttp.proxy.workers")

STATS_INTERVAL_SECONDS = 1.0
RESTART_DELAY_SECONDS = 1.0
MAX_QUICK_DEATHS = 5  # a worker dying this many times within its first seconds stops the supervisor
_HEADER = struct.Struct("!I")


# -- worker side --------------------------------------------------------------------------------------

class StatsSender(BaseComponent):
    name = "stats-sender"

    def __init__(self, port: int, snapshot: Any) -> None:
        self.port = port
        self.snapshot = snapshot
        self.tasks = TaskOwner("stats-sender")
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        _, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.tasks.spawn(self._run(), "send")

    def _send(self) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        if writer.transport.get_write_buffer_size() > 1 << 20:
            return  # the supervisor is not reading; skip rather than grow
        data = json.dumps(self.snapshot()).encode()
        writer.write(_HEADER.pack(len(data)) + data)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL_SECONDS)
            self._send()

    async def close(self) -> None:
        await self.tasks.close()
        self._send()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.drain(), 1.0)
            self._writer.close()


async def _worker(settings: Settings, stats_port: int) -> None:
    proxy = build(settings, make_source(settings), serve_admin=False, serve_metrics=False, reuse_port=True,
                  freeze_gc=True)
    components = [StatsSender(stats_port, proxy.snapshot), *proxy.components]
    await lifecycle.Lifecycle(
        components,
        shutdown_delay_seconds=settings.shutdown_delay_seconds,
        drain_timeout_seconds=settings.drain_timeout_seconds,
    ).run()


def worker_main(settings: Settings, index: int, stats_port: int) -> None:
    os.setpgrp()  # Ctrl-C in a terminal goes to the supervisor only; it forwards SIGTERM
    logs.configure(settings.log_format, settings.log_level, settings.secret_values())
    logging.getLogger().handlers[0].addFilter(_WorkerTag(index))
    lifecycle.run(_worker(settings, stats_port))


class _WorkerTag(logging.Filter):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


# -- supervisor side ----------------------------------------------------------------------------------

class Supervisor(BaseComponent):
    name = "workers"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: dict[int, BaseProcess] = {}
        self.started_at: dict[int, float] = {}
        self.snapshots: dict[int, Snapshot] = {}
        self.retired: list[Snapshot] = []
        self.tasks = TaskOwner("supervisor")
        self.stopping = False
        self.quick_deaths = 0
        self.failed = asyncio.Event()
        self._stats_server: asyncio.AbstractServer | None = None
        self._stats_port = 0
        self._next_conn = 0

    # stats
    async def _stats_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._next_conn += 1
        conn_id = self._next_conn
        try:
            while True:
                size = _HEADER.unpack(await reader.readexactly(_HEADER.size))[0]
                self.snapshots[conn_id] = json.loads(await reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            last = self.snapshots.pop(conn_id, None)
            if last is not None:
                for values in last.get("backends", {}).values():
                    values["in_flight"] = values["held"] = 0
                last["connections"] = 0
                self.retired.append(last)
                self.retired[:] = [sum_process_snapshots(self.retired)]
            writer.close()

    def snapshot(self) -> Snapshot:
        return sum_process_snapshots([*self.retired, *self.snapshots.values()])

    # processes
    def _spawn(self, index: int) -> None:
        proc = self.ctx.Process(target=worker_main, args=(self.settings, index, self._stats_port),
                                name=f"kedahttp-proxy-{index}", daemon=False)
        proc.start()
        self.procs[index] = proc
        self.started_at[index] = time.monotonic()
        log.info("worker started", extra={"worker": index, "pid": proc.pid})

    async def start(self) -> None:
        self._stats_server = await asyncio.start_server(self._stats_conn, "127.0.0.1", 0)
        self._stats_port = self._stats_server.sockets[0].getsockname()[1]
        for index in range(self.settings.workers):
            self._spawn(index)
        self.tasks.spawn(self._watch(), "watch")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            for index, proc in list(self.procs.items()):
                if proc.is_alive() or self.stopping:
                    continue
                lived = time.monotonic() - self.started_at[index]
                log.error("worker exited", extra={"worker": index, "exitcode": proc.exitcode,
                                                  "seconds": round(lived, 1)})
                if lived < 5.0:
                    self.quick_deaths += 1
                    if self.quick_deaths >= MAX_QUICK_DEATHS:
                        log.error("workers keep dying at start; stopping")
                        self.failed.set()
                        return
                await asyncio.sleep(RESTART_DELAY_SECONDS)
                if not self.stopping:
                    self._spawn(index)

    def mark_not_ready(self) -> None:
        self.stopping = True
        for proc in self.procs.values():
            if proc.pid is not None and proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)

    async def drain(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:  # a process exit is not awaitable here: poll its sentinel
            if not any(p.is_alive() for p in self.procs.values()):
                return
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        self.stopping = True
        await self.tasks.close()
        for proc in self.procs.values():
            if proc.is_alive():
                proc.kill()
            proc.join(2)
        if self._stats_server is not None:
            self._stats_server.close()


async def _supervise(settings: Settings) -> int:
    supervisor = Supervisor(settings)
    routes = RouteTable()  # for the admin API's view of backends; the workers route on their own
    open_transport(settings.bus)  # a bad bus URL fails here, before any worker starts
    sampler = SnapshotSampler(routes, supervisor.snapshot)
    live = LivePage(settings.admin_token, sampler.sample, sampler.cold_waits) \
        if is_served(settings.admin_token, settings.admin_addr) else None
    components: list[Component] = [
        MetricsServer(settings.metrics_addr, supervisor.snapshot, settings.metrics_app_latency),
        AdminServer(AdminContext(settings, routes, supervisor.snapshot), live),
        *([live] if live is not None else []),
        SourceRunner(make_source(settings), routes),
        supervisor,
    ]
    cycle = lifecycle.Lifecycle(
        components,
        shutdown_delay_seconds=0.0,  # each worker keeps serving for the delay itself
        drain_timeout_seconds=settings.shutdown_delay_seconds + settings.drain_timeout_seconds + 5.0,
    )
    waiter = asyncio.ensure_future(supervisor.failed.wait())
    waiter.add_done_callback(lambda _: cycle.request_stop())
    try:
        await cycle.run()
    finally:
        waiter.cancel()
    return 1 if supervisor.failed.is_set() else 0


def run_supervisor(settings: Settings) -> int:
    return lifecycle.run(_supervise(settings))
