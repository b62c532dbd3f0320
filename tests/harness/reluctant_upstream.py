"""An upstream that is slow to take a request body, for the upload side of the idle timeout.

A raw asyncio server on 127.0.0.1 (a protocol, so reading is paused and resumed at the socket: once
paused, the kernel's receive buffer fills and TCP's window closes, as with an app that stops reading).
Two behaviours, chosen per server:

- ``stall``: read the head and ``first_bytes`` of the body, then stop reading for good (with ``drip``,
  meanwhile answer: a chunked 200 whose pieces keep coming every ``every`` seconds, so only the
  upload is stalled, never the response);
- ``steady``: read one socket read, pause ``every`` seconds, and so on, until the body (Content-Length)
  is in, then answer 200 with the number of body bytes it received.

``received`` holds the body bytes taken so far; ``peer_closed()`` says whether the proxy has closed every
connection it opened (read from the kernel: a connection that is not reading never sees its close).
"""

from __future__ import annotations

import asyncio
import socket

HEAD_END = b"\r\n\r\n"
TCP_ESTABLISHED = 1  # struct tcp_info's tcpi_state


class ReluctantUpstream:
    def __init__(self, mode: str, *, first_bytes: int = 1000, every: float = 0.05, drip: bool = False) -> None:
        if mode not in ("stall", "steady"):
            raise ValueError(f"mode must be stall or steady, got {mode!r}")
        self.mode = mode
        self.first_bytes = first_bytes
        self.every = every
        self.drip = drip
        self.received = 0
        self.conns: list[_Conn] = []
        self.server: asyncio.Server | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> ReluctantUpstream:
        self.server = await asyncio.get_running_loop().create_server(lambda: _Conn(self), "127.0.0.1", 0)
        return self

    def peer_closed(self) -> bool:
        """Every connection the proxy opened has been closed (or reset) from its side."""
        states = [conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
                  for conn in self.conns if conn.sock is not None]
        return bool(self.conns) and TCP_ESTABLISHED not in states

    async def stop(self) -> None:
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.abort()
        if self.server is not None:
            self.server.close()


class _Conn(asyncio.Protocol):
    def __init__(self, owner: ReluctantUpstream) -> None:
        self.owner = owner
        self.head = b""
        self.length = -1  # the body's Content-Length, once the head is in
        self.stopped = False  # stall: reading stopped for good
        self.transport: asyncio.Transport | None = None
        self.sock: socket.socket | None = None
        owner.conns.append(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sock = transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        assert self.transport is not None
        if self.length < 0:
            self.head += data
            if HEAD_END not in self.head:
                return
            head, _, data = self.head.partition(HEAD_END)
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    self.length = int(value)
        owner.received += len(data)
        if owner.mode == "stall":
            if owner.received >= owner.first_bytes and not self.stopped:
                self.stopped = True
                self.transport.pause_reading()  # and never again
                if owner.drip:
                    self.transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    self._drip()
            return
        if owner.received >= self.length:
            body = str(owner.received).encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        self.transport.pause_reading()
        asyncio.get_running_loop().call_later(owner.every, self._resume)

    def _drip(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"6\r\npiece\n\r\n")
            asyncio.get_running_loop().call_later(self.owner.every, self._drip)

    def _resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.sock = None
