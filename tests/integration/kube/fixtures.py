"""Fixtures shared by the Kubernetes and CLI integration tests: a fake API server, a kubeconfig that points
the real client at it, and the admin API served on a real port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kedahttp.kube.apps_api import AppsApi, add_routes
from kedahttp.kube.cluster import Cluster
from kedahttp.process.settings import Settings, load
from tests.harness.servers import free_port
from tests.integration.kube.fake_apiserver import FakeApiServer

TOKEN = "t0ken-for-tests"
SCALER_ADDRESS = "kedahttp-scaler.kedahttp.svc:9090"


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(apiserver: FakeApiServer, tmp_path: Path) -> Path:
    return apiserver.write_kubeconfig(tmp_path)


@pytest.fixture
def cluster(kubeconfig: Path) -> Iterator[Cluster]:
    connection = Cluster.from_kubeconfig(str(kubeconfig))
    yield connection
    connection.close()


def admin_settings(port: int, **overrides: str) -> Settings:
    flags = {"admin_addr": f"127.0.0.1:{port}", "admin_token": TOKEN, "scaler_address": SCALER_ADDRESS}
    flags.update(overrides)
    return load(flags, environ={})


@dataclass
class AdminContext:
    """What the proxy's admin server passes to add_routes (duck-typed)."""

    settings: Settings
    cluster: Cluster | None = None
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)

    def app_status(self, key: str) -> dict[str, Any]:
        return self.statuses.get(key, {})


@dataclass
class Admin:
    url: str
    api: AppsApi
    context: AdminContext
    headers: dict[str, str]


async def start_admin(context: AdminContext, port: int) -> tuple[web.AppRunner, AppsApi]:
    app = web.Application()
    api = add_routes(app, context)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, api


@pytest.fixture
async def admin(cluster: Cluster) -> AsyncIterator[Admin]:
    port = free_port()
    context = AdminContext(admin_settings(port), cluster)
    runner, api = await start_admin(context, port)
    yield Admin(f"http://127.0.0.1:{port}", api, context, {"Authorization": f"Bearer {TOKEN}"})
    await runner.cleanup()
