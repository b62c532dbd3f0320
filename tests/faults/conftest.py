"""Fixtures for fault and soak tests: the scriptable upstream, the proxy in-process, and subprocess bookkeeping.

Subprocesses started through ``procs`` are killed at the end of the test whatever happens, and their logs
are printed when it failed, so a fault test never leaves a proxy or scaler behind on a shared machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kedahttp.activity.bus import open_transport
from kedahttp.process import settings as settings_mod
from kedahttp.process.lifecycle import Lifecycle
from kedahttp.process.settings import Settings
from kedahttp.process.tasks import TaskOwner
from kedahttp.proxy.assembly import build
from kedahttp.proxy.sources import Backend
from kedahttp.scaler.main import build_scaler
from kedahttp.scaler.service import GrpcServer
from tests.faults.clients import until
from tests.faults.procs import KedahttpProcess
from tests.faults.upstream import FaultyUpstream
from tests.harness.static_source import StaticSource
from tests.integration.proxy.conftest import RunningProxy, make_settings

_names = itertools.count()


def proxy_settings(**overrides: Any) -> Settings:
    return make_settings(**{"report_interval_seconds": 0.25, "cold_start_timeout_seconds": 60.0, **overrides})


@pytest.fixture
async def upstream() -> AsyncIterator[FaultyUpstream]:
    server = await FaultyUpstream().start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy_for(upstream: FaultyUpstream) -> AsyncIterator[Any]:
    """A factory: the in-process proxy in front of ``upstream`` (or ``target``) as backend default/app on
    host app.test."""
    started: list[RunningProxy] = []

    async def make(target: FaultyUpstream | None = None, **overrides: Any) -> RunningProxy:
        settings = proxy_settings(**overrides)
        source = StaticSource([Backend(key="default/app", hosts=("app.test",))],
                              {"default/app": [(target or upstream).endpoint]})
        running = await RunningProxy(build(settings, source, open_transport(settings.bus))).start()
        started.append(running)
        return running

    yield make
    for running in reversed(started):
        await running.stop()


@pytest.fixture
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[KedahttpProcess]]:
    """Processes the test starts; all killed at the end, their logs shown if the test failed."""
    started: list[KedahttpProcess] = []
    yield started
    for proc in started:
        proc.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for proc in started:
            print(f"--- {proc.log.name} ---\n{proc.log_tail()}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@contextlib.asynccontextmanager
async def running_scaler(bus: str, **overrides: str) -> AsyncIterator[list[Any]]:
    """The real scaler components (``build_scaler``) under a Lifecycle in this loop, on free ports."""
    flags: dict[str, str | None] = {"bus": bus, "scaler_addr": "127.0.0.1:0", "metrics_addr": "127.0.0.1:0",
                                    "shutdown_delay_seconds": "0", "drain_timeout_seconds": "2", **overrides}
    components = build_scaler(settings_mod.load(flags, environ={}, component="scaler"))
    cycle = Lifecycle(components)
    tasks = TaskOwner("test-scaler")
    task = tasks.spawn(cycle.run(install_signals=False), "lifecycle")
    grpc_server = next(c for c in components if isinstance(c, GrpcServer))
    try:
        await until(lambda: bool(grpc_server.port) or task.done(), 15, "scaler listening")
        if task.done():
            task.result()
        yield components
    finally:
        cycle.request_stop()
        await asyncio.wait({task}, timeout=15)
        await tasks.close()
