"""A small aiohttp server beside the main one (admin API, /metrics), run as a lifecycle component.

The proxy's admin server, its /metrics and the scaler's /metrics all serve a handful of routes off the
data path. This class owns what they share: binding the address (port 0 picks a free one, and ``port``
then holds the bound one, which tests and the dev runtime read), cleaning up if the bind fails, and
closing. A subclass says only which routes it serves (``build_app``).
"""

from __future__ import annotations

import logging

from aiohttp import web

from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.settings import Address

log = logging.getLogger("kedahttp.sideserver")


class SideServer(BaseComponent):
    """Serves ``build_app()`` on ``address`` from ``start`` to ``close``."""

    name = "side-server"

    def __init__(self, address: Address) -> None:
        self.address = address
        self.port = address.port  # the bound port once started (differs when address.port is 0)
        self._runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> None:
        runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.address.host, self.address.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("side server listening", extra={"server": self.name, "address": f"{self.address.host}:{self.port}"})

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
