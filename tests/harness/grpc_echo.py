"""A gRPC app for tests without generated code: grpcio's generic handlers over raw bytes.

``EchoApp`` serves /test.Echo/{Unary,ServerStream,ClientStream,Bidi,Fail,Slow} and records the
metadata it saw; ``methods`` gives a client channel's callables for the same names. Messages are bytes
both ways (identity serializers), so a test says exactly what goes over the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

SERVICE = "test.Echo"


def _ident(b: bytes) -> bytes:
    return b


class EchoApp:
    def __init__(self, name: str = "echo", service: str = SERVICE) -> None:
        self.name = name
        self.service = service
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.cancelled = asyncio.Event()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> EchoApp:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary, _ident, _ident),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream, _ident, _ident),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream, _ident, _ident),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi, _ident, _ident),
            "Fail": grpc.unary_unary_rpc_method_handler(self.fail, _ident, _ident),
            "Slow": grpc.unary_unary_rpc_method_handler(self.slow, _ident, _ident),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(self.service, handlers),))
        self.port = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        self.server = server
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None

    def _seen(self, method: str, context: Any) -> None:
        self.calls.append((method, {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}))

    async def unary(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self._seen("Unary", context)
        await context.send_initial_metadata((("x-app", self.name),))
        context.set_trailing_metadata((("x-trailer", "t-" + self.name),))
        return self.name.encode() + b":" + request

    async def server_stream(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """``request`` is b"<count>x<size>": that many messages of that size."""
        self._seen("ServerStream", context)
        count, _, size = request.partition(b"x")
        block = b"s" * int(size or b"8")
        for _ in range(int(count)):
            yield block

    async def client_stream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        self._seen("ClientStream", context)
        total = count = 0
        async for message in requests:
            total += len(message)
            count += 1
        return f"{count}:{total}".encode()

    async def bidi(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        self._seen("Bidi", context)
        async for message in requests:
            yield message.upper()

    async def fail(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self._seen("Fail", context)
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + request.decode())
        return b""

    async def slow(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self._seen("Slow", context)
        try:
            await asyncio.sleep(float(request or b"30"))
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return b"late"


def channel(target: str, authority: str | None = None, retries: bool = False) -> grpc.aio.Channel:
    """One channel (one HTTP/2 connection) to ``target``, without transparent retries unless ``retries``
    (grpcio's default: a call the server did not process is sent again)."""
    options: list[tuple[str, Any]] = [("grpc.enable_retries", int(retries))]
    if authority:
        options.append(("grpc.default_authority", authority))
    return grpc.aio.insecure_channel(target, options=options)


class EchoClient:
    """Callables for the EchoApp methods of ``service`` on a channel."""

    def __init__(self, ch: grpc.aio.Channel, service: str = SERVICE) -> None:
        self.channel = ch
        m = f"/{service}/"
        self.unary = ch.unary_unary(m + "Unary", _ident, _ident)
        self.server_stream = ch.unary_stream(m + "ServerStream", _ident, _ident)
        self.client_stream = ch.stream_unary(m + "ClientStream", _ident, _ident)
        self.bidi = ch.stream_stream(m + "Bidi", _ident, _ident)
        self.fail = ch.unary_unary(m + "Fail", _ident, _ident)
        self.slow = ch.unary_unary(m + "Slow", _ident, _ident)

    async def close(self) -> None:
        await self.channel.close()
