"""Raw HTTP clients for the proxy tests: bytes in, bytes out, and what the connection did.

``raw_exchange`` and ``read_response`` speak plain HTTP/1.1 over a socket; ``send`` writes pieces with
pauses and reports whether the proxy closed the connection (keeping bytes that came before a reset);
``curl`` runs the real curl.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from tests.harness.wire import Malformed, Message, read_responses

# Canned messages: a plain request, the same closing the connection, and an upstream answering twice.
VALID = b"GET /first HTTP/1.1\r\nHost: app.test\r\n\r\n"
VALID_LAST = b"GET /first HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
TWICE = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none" + b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo"

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


async def curl(*args: str, timeout: float = 20.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode("latin-1"), err.decode("latin-1")


def headers_seen(body: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in json.loads(body)["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


@dataclass
class Outcome:
    data: bytes  # everything the proxy sent
    closed: bool  # the proxy closed the connection (else the read timed out)

    def responses(self, heads: int = 0) -> list[Message]:
        """The responses, read strictly; raises Malformed if the proxy sent anything else."""
        return read_responses(self.data, eof=self.closed, heads=heads)

    def statuses(self) -> list[int]:
        return [r.status for r in self.responses()]

    def well_formed(self) -> bool:
        try:
            self.responses()
        except Malformed:
            return False
        return True


class Collector(asyncio.Protocol):
    """Keeps every byte received, even when the connection then ends in a reset (a StreamReader would
    raise the reset and hide the response that came before it)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def send(port: int, *pieces: bytes, pause: float = 0.05, timeout: float = 3.0,
               source_ip: str | None = None) -> Outcome:
    """Writes ``pieces`` (pausing between them) and reads until the proxy closes or ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    local = (source_ip, 0) if source_ip else None
    transport, collector = await loop.create_connection(Collector, "127.0.0.1", port, local_addr=local)
    try:
        for i, piece in enumerate(pieces):
            if i and pause:
                await asyncio.sleep(pause)
            if collector.lost.done():
                break
            transport.write(piece)
        try:
            await asyncio.wait_for(asyncio.shield(collector.lost), timeout)
        except TimeoutError:
            pass
    finally:
        transport.close()
    return Outcome(bytes(collector.data), collector.lost.done())
