"""The admin API served on a real port for the Kubernetes, CLI and hostile tests (the ``admin`` fixture in
tests/conftest.py uses it), with the token and scaler address it is configured with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kedahttp.kube.apps_api import AppsApi, add_routes
from kedahttp.kube.cluster import Cluster
from kedahttp.process.settings import Settings, load

TOKEN = "t0ken-for-tests"
SCALER_ADDRESS = "kedahttp-scaler.kedahttp.svc:9090"


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
