"""The small HTTP server a process answers probes on: ``/healthz`` while it runs, ``/readyz`` until shutdown
begins, plus whatever routes the process adds (the controller's admin API).

aiohttp, off any data path. ``/readyz`` turns 503 the moment shutdown begins, so load balancers and
Services move away during the shutdown delay.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.settings import Address


class HealthServer(BaseComponent):
    name = "admin"

    def __init__(self, address: Address, add_routes: Callable[[web.Application], object] | None = None) -> None:
        self.address = address
        self.add_routes = add_routes
        self.ready = True
        self.port = address.port  # the bound port, once started
        self._runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self.add_routes is not None:
            self.add_routes(app)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="draining\n")

    async def start(self) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address.host, self.address.port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    def mark_not_ready(self) -> None:
        self.ready = False

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
