"""An upstream that takes its time, for the proxy's timeout tests: it hangs, stalls, drips, or idles.

Real sockets (aiohttp on 127.0.0.1). Paths:
  /hang                 read the request, never answer (until the peer goes away)
  /sleep?s=S            answer 200 ``slept`` after S seconds
  /stall?n=N            200 with Content-Length N, half the body, then nothing
  /drip?pieces=P&every=S  chunked, one piece every S seconds, P pieces, then the end: a slow steady stream
  /ws                   a WebSocket that echoes and otherwise stays silent
Every handler that was cut off by the proxy notes it in ``cut`` (the proxy closed the connection).
"""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

from tests.harness.upstreams import Upstream


class SlowUpstream(Upstream):
    handler_cancellation = True  # a handler the proxy cut off is cancelled, and notes it

    def __init__(self) -> None:
        super().__init__()
        self.cut: list[str] = []  # paths whose connection the proxy closed before the handler finished
        self.ws_closed = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/hang", self.hang)
        app.router.add_get("/sleep", self.sleep)
        app.router.add_get("/stall", self.stall)
        app.router.add_get("/drip", self.drip)
        app.router.add_get("/ws", self.ws)
        app.router.add_get("/{tail:.*}", self.ok)
        return app

    async def ok(self, request: web.Request) -> web.Response:
        return web.Response(text=f"hello from {request.path}")

    async def hang(self, request: web.Request) -> web.Response:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cut.append("/hang")
            raise
        return web.Response()  # never reached

    async def sleep(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "0")))
        return web.Response(text="slept")

    async def stall(self, request: web.Request) -> web.StreamResponse:
        n = int(request.query.get("n", "1000"))
        response = web.StreamResponse()
        response.content_length = n
        await response.prepare(request)
        await response.write(b"x" * (n // 2))
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cut.append("/stall")
            raise
        return response  # never reached

    async def drip(self, request: web.Request) -> web.StreamResponse:
        pieces = int(request.query.get("pieces", "5"))
        every = float(request.query.get("every", "0.2"))
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(pieces):
            await asyncio.sleep(every)
            await response.write(b"piece %d\n" % i)
        await response.write_eof()
        return response

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str("echo:" + msg.data)
        finally:
            self.ws_closed.set()
        return ws

