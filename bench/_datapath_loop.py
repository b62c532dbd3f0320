"""The proxy's data path in one process with fake transports: the loop that datapath_instructions.py counts.

A real ``ProxyServer`` wiring (route table, dispatcher, pool, counters) serves requests from a client
connection whose transport is a list, through one keep-alive upstream connection whose transport is a
list too; the upstream's answer is fed back by hand. No sockets, no event loop: what is left is our own
per-request work plus httptools, which is what the instruction count is meant to follow.

Run as ``python -m bench._datapath_loop {plain|browser} N`` (under callgrind by the scenario); it checks
every response, so a broken data path cannot pass as a fast one.
"""

from __future__ import annotations

import sys
from typing import Any

from kedahttp.process.tasks import TaskOwner
from kedahttp.proxy.counters import CounterRegistry
from kedahttp.proxy.dispatch import Dispatcher
from kedahttp.proxy.routing import RouteTable
from kedahttp.proxy.server import ClientConnection, ProxyServer
from kedahttp.proxy.sources import Backend
from kedahttp.proxy.upstream import UpstreamConnection, UpstreamPool

ENDPOINT = "127.0.0.1:9"
REQUESTS = {
    "plain": b"GET / HTTP/1.1\r\nHost: app.bench\r\n\r\n",  # what wrk sends
    "browser": (  # 10 headers, as a browser sends them
        b"GET /static/app.js?v=3 HTTP/1.1\r\n"
        b"Host: app.bench\r\n"
        b"Connection: keep-alive\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        b"Chrome/120.0.0.0 Safari/537.36\r\n"
        b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
        b"Accept-Encoding: gzip, deflate, br\r\n"
        b"Accept-Language: en-US,en;q=0.9\r\n"
        b"Cache-Control: no-cache\r\n"
        b"Referer: http://app.bench/index.html\r\n"
        b"Sec-Fetch-Mode: no-cors\r\n"
        b"Cookie: session=0123456789abcdef; theme=dark\r\n"
        b"\r\n"
    ),
}
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 06 Dec 2026 03:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 24\r\nConnection: keep-alive\r\n\r\n"
    b"hello from the upstream\n"
)


class ListTransport:
    """Just enough of an asyncio transport: writes are kept for the loop to check. ``write`` is the list's
    own append (a C call, like uvloop's), so the harness adds next to nothing to the count."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.write = self.out.append
        self.writelines = self.out.extend

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None:
        raise AssertionError("the data path closed a connection")

    abort = close


def wire() -> tuple[ClientConnection, UpstreamConnection, ListTransport, ListTransport]:
    pool = UpstreamPool(TaskOwner("bench"))
    dispatcher = Dispatcher(pool, CounterRegistry("bench"), cold_start_timeout_seconds=60.0,
                            max_held_requests=100, on_wake=lambda key: None)
    routes = RouteTable(dispatcher)
    routes.replace_backends([Backend(key="bench/app", hosts=("app.bench",))])
    routes.set_endpoints("bench/app", [ENDPOINT])
    server = ProxyServer(routes, dispatcher, pool)
    client_t, up_t = ListTransport(), ListTransport()
    up = UpstreamConnection(pool, ENDPOINT)
    up.connection_made(up_t)  # type: ignore[arg-type]
    pool.put(up)
    client = ClientConnection(server)
    client.connection_made(client_t)  # type: ignore[arg-type]
    return client, up, client_t, up_t


class Echo:
    """Stands in for both connections in the "harness" run: it writes what a proxy would, no more, so
    that run counts the loop and the fake transports alone (to subtract from the others)."""

    def __init__(self, peer: ListTransport, answer: bytes) -> None:
        self.peer = peer
        self.answer = answer

    def data_received(self, data: bytes) -> None:
        self.peer.write(self.answer)


def run(kind: str, count: int) -> None:
    request = REQUESTS["plain" if kind == "harness" else kind]
    client: Any
    up: Any
    if kind == "harness":
        client_t, up_t = ListTransport(), ListTransport()
        client, up = Echo(up_t, request), Echo(client_t, RESPONSE)
    else:
        client, up, client_t, up_t = wire()
    for _ in range(count):
        client.data_received(request)
        assert up_t.out, "nothing sent upstream"
        up_t.out.clear()
        up.data_received(RESPONSE)
        assert len(client_t.out) == 1 and client_t.out[0].startswith(b"HTTP/1.1 200"), client_t.out
        client_t.out.clear()


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]))
