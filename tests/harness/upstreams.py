"""Fake upstreams for the proxy tests, on real sockets on free ports.

``Upstream`` is a well-behaved aiohttp app (echo, headers, big bodies, status codes, slow answers,
WebSocket); ``FixedUpstream`` and ``ScriptedUpstream`` are raw asyncio servers that misbehave on purpose
(answer twice, write before a 101, ...); ``UnacceptingEndpoint`` never accepts a connection. The
recording upstream (``recorder.py``) and the scriptable faulty one (``faulty_upstream.py``) live beside
this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from aiohttp import WSMsgType, web


class Upstream:
    handler_cancellation = False  # True: a handler is cancelled when its client (the proxy) goes away

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
        self.runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=self.handler_cancellation)
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


class _RawUpstream:
    """An asyncio server on a free port, used as ``async with``; ``_serve`` handles one connection.
    ``connections`` counts the connections it accepted."""

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await self._serve(reader, writer)

    async def __aenter__(self) -> Any:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


class FixedUpstream(_RawUpstream):
    """Answers every request it reads with the same bytes (a misbehaving backend)."""

    def __init__(self, response: bytes) -> None:
        super().__init__()
        self.response = response

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if b"\r\n\r\n" in data:
                    writer.write(self.response)
        except ConnectionError:
            pass
        finally:
            writer.close()


class ScriptedUpstream(_RawUpstream):
    """Reads one request head per connection, then runs ``script(reader, writer)``."""

    def __init__(self, script: object) -> None:
        super().__init__()
        self.script = script
        self.heads: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
            await self.script(reader, writer)  # type: ignore[operator]
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


class UnacceptingEndpoint:
    """A listening socket whose accept queue is full and never drained, used as ``with``: a connect to
    ``endpoint`` neither succeeds nor fails (its SYNs are dropped) until the connecting side gives up."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.filling: list[socket.socket] = []

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    def __enter__(self) -> UnacceptingEndpoint:
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        for _ in range(4):  # more than the queue holds (backlog 0: one connection)
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(self.listener.getsockname())
            self.filling.append(sock)
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self.filling:
            sock.close()
        self.listener.close()
