"""A whole proxy in the test's own process, on real loopback sockets, and small aiohttp apps behind it."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web

from kedahttp.activity.bus import open_transport
from kedahttp.process import settings as settings_mod
from kedahttp.process.settings import Settings
from kedahttp.proxy.assembly import Proxy, build
from kedahttp.proxy.sources import Backend
from tests.harness.static_source import StaticSource

_buses = itertools.count()


def proxy_settings(**env: str) -> Settings:
    """Settings for an in-process proxy: every listener on a free loopback port, its own memory bus.
    ``env`` adds KEDAHTTP_* variables by their setting name (``tracing="true"``)."""
    base = {
        "KEDAHTTP_BUS": f"memory://inproc-{next(_buses)}", "KEDAHTTP_PROXY_ADDR": "127.0.0.1:0",
        "KEDAHTTP_ADMIN_ADDR": "127.0.0.1:0", "KEDAHTTP_METRICS_ADDR": "127.0.0.1:0",
        "KEDAHTTP_SCALER_ADDR": "127.0.0.1:0", "KEDAHTTP_ROUTES": "/nonexistent",
    }
    return settings_mod.load({}, environ={**base, **{settings_mod.env_name(k): v for k, v in env.items()}})


@contextlib.asynccontextmanager
async def running_proxy(settings: Settings, backends: Sequence[Backend],
                        endpoints: dict[str, list[str]] | None = None, **options: Any) -> AsyncIterator[Proxy]:
    """The proxy's components started in order and closed in reverse, as the lifecycle would."""
    proxy = build(settings, StaticSource(backends, endpoints or {}), open_transport(settings.bus), **options)
    started = []
    try:
        for component in proxy.components:
            await component.start()
            started.append(component)
        yield proxy
    finally:
        for component in reversed(started):
            await component.close()


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Runs ``app`` on a free loopback port; yields its ``host:port``."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info.get("code", "200")), text="s")


def status_app() -> web.Application:
    """An upstream that answers ``/`` 200 and ``/status/<code>`` with that status."""
    app = web.Application()
    app.router.add_get("/", _status)
    app.router.add_get("/status/{code}", _status)
    return app
