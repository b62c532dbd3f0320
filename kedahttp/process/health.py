"""The small HTTP server a process answers probes on: ``/healthz`` while it runs, ``/readyz`` until shutdown
begins, plus whatever routes the process adds (the proxy's live page, the controller's apps API).

aiohttp, off any data path; binding and closing are the SideServer's. ``/readyz`` turns 503 the moment
shutdown begins, so load balancers and Services move away during the shutdown delay.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from kedahttp.process.settings import Address
from kedahttp.process.sideserver import SideServer


class HealthServer(SideServer):
    name = "admin"

    def __init__(self, address: Address, add_routes: Callable[[web.Application], object] | None = None) -> None:
        super().__init__(address)
        self.add_routes = add_routes
        self.ready = True

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

    def mark_not_ready(self) -> None:
        self.ready = False
