"""The side server binds, reports the port it got, refuses a taken port cleanly and closes."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from kedahttp.process.settings import Address
from kedahttp.process.sideserver import SideServer


class Hello(SideServer):
    name = "hello"

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/hello", self._hello)
        return app

    async def _hello(self, request: web.Request) -> web.Response:
        return web.Response(text="hello\n")


async def test_port_zero_binds_a_free_port_and_serves_the_app() -> None:
    server = Hello(Address("127.0.0.1", 0))
    assert server.port == 0
    await server.start()
    try:
        assert server.port > 0
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{server.port}/hello") as r:
            assert (r.status, await r.text()) == (200, "hello\n")
    finally:
        await server.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{server.port}/hello")


async def test_a_taken_port_raises_and_leaves_nothing_running() -> None:
    first = Hello(Address("127.0.0.1", 0))
    await first.start()
    try:
        second = Hello(Address("127.0.0.1", first.port))
        with pytest.raises(OSError):
            await second.start()
        await second.close()  # nothing to close: the failed start cleaned up after itself
        assert second._runner is None
    finally:
        await first.close()
