"""The upstream of the hostile proxy tests: a raw asyncio server that records every byte the proxy sends it.

It reads with the strict reader (wire.py), so anything the proxy forwards that a strict server would
frame differently shows up as ``malformed``; each complete request is recorded with the connection it
came on and the client address the proxy appended to X-Forwarded-For, and answered 200 with a small
body naming it (``seq``), so a test can tell which upstream request a client response belongs to. A
connection that stops in the middle of a request for ``stall_seconds`` is closed and counted
``incomplete``, as a real server's read timeout would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

from tests.harness.wire import Incomplete, Malformed, Message, read_request


@dataclass
class Received:
    seq: int
    conn: int  # which upstream connection carried it
    message: Message

    @property
    def path(self) -> str:
        return self.message.target.decode("latin-1")

    @property
    def client_ip(self) -> str:
        """The last X-Forwarded-For element: the address the proxy saw the client connect from."""
        xff = b", ".join(self.message.values(b"x-forwarded-for"))
        return xff.rsplit(b",", 1)[-1].strip().decode("latin-1")


class Recorder:
    def __init__(self, stall_seconds: float = 0.5) -> None:
        self.stall_seconds = stall_seconds
        self.requests: list[Received] = []
        self.malformed: list[tuple[str, bytes]] = []  # (reason, the bytes of the connection from there)
        self.incomplete = 0
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def from_client(self, ip: str) -> list[Received]:
        return [r for r in self.requests if r.client_ip == ip]

    def clear(self) -> None:
        self.requests.clear()
        self.malformed.clear()
        self.incomplete = 0

    async def start(self) -> Recorder:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        conn = self.connections
        buf = b""
        try:
            while True:
                try:
                    message = read_request(buf)
                except Incomplete:
                    try:
                        data = await asyncio.wait_for(reader.read(65536), self.stall_seconds if buf else None)
                    except TimeoutError:
                        self.incomplete += 1
                        return
                    if not data:
                        if buf:
                            self.incomplete += 1
                        return
                    buf += data
                    continue
                except Malformed as exc:
                    self.malformed.append((str(exc), buf[:2000]))
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                buf = buf[message.size:]
                seq = len(self.requests) + 1
                self.requests.append(Received(seq, conn, message))
                body = json.dumps({"seq": seq, "method": message.method.decode("latin-1"),
                                   "path": message.target.decode("latin-1"), "body": len(message.body)}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Seq: %d\r\n"
                             b"Content-Length: %d\r\n\r\n" % (seq, len(body)))
                if message.method != b"HEAD":
                    writer.write(body)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
