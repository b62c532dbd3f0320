"""The admin server on ADMIN_ADDR: health and readiness here, the /api/v1/apps routes from apps_api.py.

aiohttp, off the data path. ``/healthz`` answers 200 while the process runs; ``/readyz`` answers 503 from
the moment shutdown begins, so load balancers move away during the shutdown delay. The apps API lives in
``kube/apps_api.py`` (it talks to Kubernetes); its routes are added with ``add_routes(app, context)``
and it gets what it needs from the proxy through ``AdminContext``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kedahttp.kube import apps_api
from kedahttp.process.settings import Settings
from kedahttp.process.sideserver import SideServer
from kedahttp.proxy.live import LivePage
from kedahttp.proxy.routing import RouteTable

log = logging.getLogger("kedahttp.proxy.admin")

RATE_WINDOW_SECONDS = 60.0


@dataclass
class AdminContext:
    """What the admin routes may read from the proxy.

    ``stats()`` returns the process-wide snapshot (summed over workers): ``{"backends": {"ns/name":
    {"in_flight", "held", "started", "by_class", ...}}, "publisher": {...}, "routes": n}``; ``started``
    is cumulative, so a request rate is the difference of two calls over their time apart.
    ``routes`` is the route table with each backend's ready endpoints (``routes.routes[key].endpoints``).
    """

    settings: Settings
    routes: RouteTable
    stats: Callable[[], dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)
    _samples: dict[str, deque[tuple[float, int]]] = field(default_factory=dict, repr=False)

    def app_status(self, key: str) -> dict[str, Any]:
        """Live figures of one backend for the apps API: inFlight, held, readyEndpoints, requestRate.

        The rate is requests started per second over the calls of the last minute (0 on the first call).
        """
        backend = self.stats().get("backends", {}).get(key)
        route = self.routes.get(key)
        now = time.monotonic()
        started = backend["started"] if backend else 0
        samples = self._samples.setdefault(key, deque())
        samples.append((now, started))
        while len(samples) > 1 and now - samples[0][0] > RATE_WINDOW_SECONDS:
            samples.popleft()
        t0, s0 = samples[0]
        rate = (started - s0) / (now - t0) if now - t0 >= 1.0 else 0.0
        return {
            "inFlight": backend["in_flight"] if backend else 0,
            "held": backend["held"] if backend else 0,
            "readyEndpoints": len(route.endpoints) if route else 0,
            "requestRate": round(rate, 3),
        }


class AdminServer(SideServer):
    name = "admin"

    def __init__(self, context: AdminContext, live: LivePage | None = None) -> None:
        super().__init__(context.settings.admin_addr)
        self.context = context
        self.live = live  # the live page (live.py), served beside the API when given
        self.ready = True

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self.live is not None:
            self.live.add_routes(app)
        apps_api.add_routes(app, self.context)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="draining\n")

    def mark_not_ready(self) -> None:
        self.ready = False
