"""Connections to upstream endpoints: the response side of an exchange and a keep-alive pool per endpoint.

An ``UpstreamConnection`` reads one response at a time (heads.ResponseReader: our llhttp binding, or
httptools) and hands the exchange it is bound to each head, body piece and end; it goes back to the pool only when its response was read to the end, the request was
sent in full and both sides allowed keep-alive, so a reused connection never carries leftovers. The pool
keeps idle connections per ``host:port`` (most recently used first, so surplus ones age out) and opens
new ones as owned tasks; the exchange decides what a failure means (retry or 502).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Any, Final

import httptools

from kedahttp.process.tasks import TaskOwner
from kedahttp.proxy import heads
from kedahttp.proxy.forward import Exchange, UpstreamSide
from kedahttp.proxy.pausing import PAUSE_UPSTREAM
from kedahttp.proxy.reader import ResponseHeadTooLarge

_ResponseReader: Final = heads.ResponseReader  # Final: a C static when compiled, not a dict lookup per call

CONNECT_TIMEOUT_SECONDS: Final = 5.0
IDLE_TIMEOUT_SECONDS: Final = 30.0
MAX_IDLE_PER_ENDPOINT: Final = 256


# Linux's struct tcp_info: tcpi_bytes_acked, the bytes of our stream the peer's TCP has acknowledged (it
# moves only as the app reads and its receive window opens; a zero-window probe's answer does not move it)
_TCP_INFO: Final = getattr(socket, "TCP_INFO", 0)
_TCP_INFO_BYTES: Final = 136
_BYTES_ACKED_OFFSET: Final = 120
_LINGER_RESET: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection


def _bytes_taken(transport: Any) -> int:
    """How far the upstream has taken our bytes: TCP's bytes acknowledged where the kernel tells (Linux),
    else minus the bytes still in the transport's buffer (it shrinks as the peer takes them)."""
    if _TCP_INFO:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_BYTES)
            except OSError:
                info = b""
            if len(info) >= _BYTES_ACKED_OFFSET + 8:
                return int(struct.unpack_from("=Q", info, _BYTES_ACKED_OFFSET)[0])
    return -int(transport.get_write_buffer_size())


class _BadResponse(Exception):
    """The upstream answered with something a proxy must not pass on."""


class _Unrequested(Exception):
    """A response that answers no request: the upstream answered twice (more bytes after a complete
    response, in the same read). They must never reach the request sent next on this connection."""


class UpstreamConnection(asyncio.Protocol, UpstreamSide):
    __slots__ = (
        "endpoint", "ex", "got_bytes", "idle_since", "last_read", "open", "pool", "reader", "reused", "taken", "taken_at", "transport", "tunnel",
    )

    def __init__(self, pool: UpstreamPool, endpoint: str) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.reader = _ResponseReader(self)
        self.ex: Exchange | None = None
        self.open = False
        self.reused = False  # has carried a response before this one
        self.got_bytes = False  # a byte of the current response has arrived
        self.idle_since = 0.0
        self.last_read = 0.0  # when the last byte arrived, on the pool's coarse clock (for the idle timeouts)
        self.tunnel: Any = None  # the client transport once upgraded
        # the upload idle timeout (deadlines.py), kept by the sweep alone: how far the upstream had taken our
        # bytes (_bytes_taken) when it last moved, and when that was on the coarse clock (0: nothing waits)
        self.taken = 0
        self.taken_at = 0.0

    # -- binding -----------------------------------------------------------------------------------

    def bind(self, ex: Exchange) -> None:
        self.ex = ex
        self.got_bytes = False
        self.reader.begin()
        self.taken_at = 0.0  # an upload stall is this exchange's own, never one left by the last

    def release(self) -> None:
        """The response is complete and the request was sent in full: back to the pool."""
        self.ex = None
        self.reused = True
        self.pool.put(self)

    def reading_resumed(self, now: float) -> None:
        self.last_read = now

    def upload_taken_at(self, now: float) -> float:
        transport = self.transport
        if transport is None or not transport.get_write_buffer_size():
            self.taken_at = 0.0  # everything handed to the kernel: the upstream is keeping up
            return 0.0
        taken = _bytes_taken(transport)
        if not self.taken_at or taken != self.taken:
            self.taken = taken
            self.taken_at = now
        return self.taken_at

    def tunnel_to(self, transport: Any) -> None:
        """Upgraded: from now on what the upstream sends goes to ``transport`` (the client's) untouched."""
        self.tunnel = transport

    def reset_on_close(self) -> None:
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass  # closed already

    def abort(self) -> None:
        self.ex = None
        self.open = False
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.open = True

    def data_received(self, data: bytes) -> None:
        self.last_read = self.pool.now
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.write(data)
            return
        ex = self.ex
        if ex is None:  # bytes on an idle connection: the server broke the protocol
            self.abort()
            return
        self.got_bytes = True
        conn = ex.conn
        conn.batching = True
        try:
            self.reader.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            ex.response_upgraded(self, data[exc.args[0]:])
        except ResponseHeadTooLarge:
            ex.upstream_failed(self, "response head too large")
            self.abort()
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Unrequested):
                if self.ex is not None:  # handed to the next request meanwhile: it counts the error
                    self.ex.upstream_misbound(self)
                elif ex.counters is not None:
                    ex.counters.upstream_errors += 1
                self.abort()
            elif isinstance(exc.__context__, _BadResponse) and self.ex is not None:
                self.ex.upstream_failed(self, str(exc.__context__))
                self.abort()
            else:
                raise
        except httptools.HttpParserError:
            if self.ex is not None:
                self.ex.upstream_failed(self, "bad response")
            self.abort()
        finally:
            conn.batching = False
            conn.flush_all()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.tunnel is not None:
            tunnel, self.tunnel = self.tunnel, None
            tunnel.close()
        ex = self.ex
        if ex is not None:
            self.ex = None
            ex.upstream_lost(self, exc is None)
        else:
            self.pool.forget(self)

    def pause_writing(self) -> None:
        if self.tunnel is not None:  # upgraded: the client transport feeds us directly
            self.tunnel.pause_reading()
        elif self.ex is not None:
            self.ex.conn.pause_reading(PAUSE_UPSTREAM)

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            if not self.tunnel.is_closing():
                self.tunnel.resume_reading()
        elif self.ex is not None:
            self.ex.conn.resume_reading(PAUSE_UPSTREAM)

    # -- the reader's calls -------------------------------------------------------------------------

    def on_head(self, status: int, head: bytes | None) -> bool:
        """A response head (None: one that answers no request); True ends the parse (a response to HEAD)."""
        ex = self.ex
        if ex is None or head is None:
            raise _Unrequested
        if status == 101 and not ex.upgrade:
            raise _BadResponse("101 without an upgrade request")
        ex.response_head(status, head)  # keep-alive towards the upstream is decided at the end
        if ex.is_head and status >= 200:
            ex.response_complete(self, True)
            return True
        return False

    def on_body(self, body: bytes) -> None:
        ex = self.ex
        if ex is not None:
            ex.response_body(body)

    def on_message_complete(self, keep_alive: bool) -> None:
        ex = self.ex
        if ex is not None and ex.status >= 200:
            ex.response_complete(self, keep_alive)


class UpstreamPool:
    """Idle keep-alive connections per endpoint, and connecting new ones."""

    def __init__(self, tasks: TaskOwner, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.tasks = tasks
        self.idle: dict[str, list[UpstreamConnection]] = {}
        self._addresses: dict[str, tuple[str, int]] = {}
        self.opened = 0
        self.closed = False
        self.now = time.monotonic()  # coarse clock, advanced by sweep()

    def acquire(self, endpoint: str) -> UpstreamConnection | None:
        """The most recently used open idle connection to ``endpoint``, if any."""
        conns = self.idle.get(endpoint)
        while conns:
            conn = conns.pop()
            if conn.open:
                return conn
        return None

    def put(self, conn: UpstreamConnection) -> None:
        if self.closed or not conn.open:
            conn.abort()
            return
        conns = self.idle.get(conn.endpoint)
        if conns is None:
            conns = self.idle[conn.endpoint] = []
        if len(conns) >= MAX_IDLE_PER_ENDPOINT:
            conn.abort()
            return
        conn.idle_since = self.now
        conns.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        conns = self.idle.get(conn.endpoint)
        if conns and conn in conns:
            conns.remove(conn)

    def connect(self, endpoint: str, ex: Exchange) -> None:
        self.tasks.spawn(self._connect(endpoint, ex), "connect")

    async def _connect(self, endpoint: str, ex: Exchange) -> None:
        loop = asyncio.get_running_loop()
        host, port = self._address(endpoint)
        attempt = ex.attempts
        route = ex.route
        timeout = route.limits.connect_timeout_seconds if route is not None else CONNECT_TIMEOUT_SECONDS
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(lambda: UpstreamConnection(self, endpoint), host, port)
        except (OSError, TimeoutError) as exc:
            if ex.attempts == attempt:
                ex.connect_failed(endpoint, exc)
            return
        self.opened += 1
        if ex.attempts == attempt and ex.waiting_for_connection():
            ex.attach(conn)
        else:
            self.put(conn)

    def _address(self, endpoint: str) -> tuple[str, int]:
        address = self._addresses.get(endpoint)
        if address is None:
            host, _, port = endpoint.rpartition(":")
            address = self._addresses[endpoint] = (host.strip("[]"), int(port))
        return address

    def sweep(self, now: float) -> None:
        """Closes connections idle for longer than IDLE_TIMEOUT_SECONDS."""
        self.now = now
        horizon = now - IDLE_TIMEOUT_SECONDS
        for endpoint, conns in list(self.idle.items()):
            keep = []
            for conn in conns:
                if conn.open and conn.idle_since >= horizon:
                    keep.append(conn)
                else:
                    conn.abort()
            if keep:
                self.idle[endpoint] = keep
            else:
                del self.idle[endpoint]

    def close(self) -> None:
        self.closed = True
        for conns in self.idle.values():
            for conn in conns:
                conn.abort()
        self.idle.clear()

    def idle_count(self) -> int:
        return sum(len(c) for c in self.idle.values())
