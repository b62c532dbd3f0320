"""Fixtures for proxy tests: a real upstream (aiohttp), the proxy in-process on real sockets, raw clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from kedahttp.process.settings import Settings
from kedahttp.proxy.sources import Backend
from tests.harness.proxies import RunningProxy, curl, make_settings, start_proxy
from tests.harness.static_source import StaticSource

__all__ = ["RunningProxy", "StaticSource", "curl", "make_settings", "start_proxy"]  # older tests import them here

@pytest.fixture
async def proxy_factory() -> AsyncIterator[Any]:
    started: list[RunningProxy] = []

    async def factory(source: Any, settings: Settings | None = None, transport: Any = None) -> RunningProxy:
        running = await start_proxy(source, settings, transport)
        started.append(running)
        return running

    yield factory
    for running in reversed(started):
        await running.stop()


# -- the upstream ---------------------------------------------------------------------------------------

class Upstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.gate = asyncio.Event()
        self.gate.set()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_route("*", "/headers", self.headers)
        app.router.add_get("/big", self.big)
        app.router.add_route("*", "/sink", self.sink)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/ws", self.ws)
        app.router.add_route("*", "/{tail:.*}", self.headers)
        return app

    async def start(self) -> Upstream:
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def headers(self, request: web.Request) -> web.Response:
        body = await request.read()
        seen = {"method": request.method, "path": request.path_qs, "headers": list(request.raw_headers),
                "body": len(body), "version": f"{request.version.major}.{request.version.minor}"}
        self.requests.append(seen)
        out = {"method": request.method, "path": request.path_qs, "body_bytes": len(body),
               "headers": [[k.decode(), v.decode()] for k, v in request.raw_headers]}
        return web.json_response(out)

    async def echo(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        async for data in request.content.iter_any():
            await response.write(data)
        await response.write_eof()
        return response

    async def sink(self, request: web.Request) -> web.Response:
        total = 0
        async for data in request.content.iter_any():
            total += len(data)
        return web.Response(text=str(total))

    async def big(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("n", "1000"))
        response = web.StreamResponse()
        response.content_length = size
        await response.prepare(request)
        block = b"x" * 65536
        sent = 0
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            await response.write(piece)
            sent += len(piece)
        await response.write_eof()
        return response

    async def status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, body=None if code in (204, 304) else b"s")

    async def slow(self, request: web.Request) -> web.Response:
        await self.gate.wait()
        await asyncio.sleep(float(request.query.get("s", "0")))
        return web.Response(text=request.query.get("id", "slow"))

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = await Upstream().start()
    yield server
    await server.stop()


def app_backend(**kw: Any) -> Backend:
    defaults: dict[str, Any] = {"key": "default/app", "hosts": ("app.test",)}
    defaults.update(kw)
    return Backend(**defaults)


@pytest.fixture
async def proxied(upstream: Upstream, proxy_factory: Any) -> RunningProxy:
    """The proxy in front of the upstream, as backend default/app on host app.test."""
    running: RunningProxy = await proxy_factory(StaticSource([app_backend()], {"default/app": [upstream.endpoint]}))
    return running


# -- raw clients ------------------------------------------------------------------------------------------

async def raw_exchange(port: int, data: bytes, *, read_until_close: bool = True, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(timeout):
            if read_until_close:
                return await reader.read(-1)
            return await reader.read(65536)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Reads one response (Content-Length or chunked) from a raw connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    return status, headers, body


def headers_seen(body: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in json.loads(body)["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out
