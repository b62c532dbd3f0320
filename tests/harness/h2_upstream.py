"""A small HTTP/2 (h2c, prior knowledge) app for tests that speak plain HTTP/2 rather than gRPC.

Built on the ``h2`` library, in the test's event loop. Paths: ``/echo`` answers the request body,
``/big?n=BYTES`` sends that many bytes (honouring the client's flow control), ``/trailers`` ends with a
trailer, ``/reset`` resets the stream (CANCEL), ``/goaway`` answers then sends GOAWAY, ``/hang`` never
answers, ``/sleep?ms=N`` answers after N milliseconds (the stream stays open that long), ``/stall`` sends a head with content-length 4000 and 2000 bytes, then nothing; anything else
answers "<app> <method> <path>". Every request's headers are recorded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded, StreamReset, WindowUpdated


class _Conn(asyncio.Protocol):
    def __init__(self, app: H2App) -> None:
        self.app = app
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.transport: Any = None
        self.bodies: dict[int, bytearray] = {}
        self.heads: dict[int, dict[bytes, bytes]] = {}
        self.outgoing: dict[int, tuple[memoryview, bool]] = {}  # stream -> (bytes still to send, trailers)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.app.connections += 1
        self.conn.initiate_connection()
        self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, RequestReceived):
                head = dict(event.headers)
                self.heads[event.stream_id] = head
                self.bodies[event.stream_id] = bytearray()
                self.app.requests.append(head)
            elif isinstance(event, DataReceived):
                self.bodies[event.stream_id] += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self._answer(event.stream_id)
            elif isinstance(event, StreamReset):
                self.outgoing.pop(event.stream_id, None)
                self.app.resets += 1
            elif isinstance(event, WindowUpdated):
                self._pump()
        self.transport.write(self.conn.data_to_send())

    def _answer(self, sid: int) -> None:
        head = self.heads.pop(sid)
        body = bytes(self.bodies.pop(sid))
        path = head.get(b":path", b"/")
        if path == b"/reset":  # the app cancels the stream
            self.conn.reset_stream(sid, 8)
            return
        if path == b"/goaway":  # answers, then says it takes no more streams on this connection
            self.conn.send_headers(sid, [(b":status", b"200"), (b"content-length", b"3")])
            self.conn.send_data(sid, b"bye", end_stream=True)
            self.conn.close_connection(0, last_stream_id=sid)
            return
        if path == b"/hang":  # never answers (the stream stays open until someone resets it)
            return
        if path.startswith(b"/stall"):  # half of what the head promises, then nothing
            self.conn.send_headers(sid, [(b":status", b"200"), (b"content-length", b"4000")])
            self.conn.send_data(sid, b"x" * 2000)
            self.transport.write(self.conn.data_to_send())
            return
        if path.startswith(b"/big"):
            out = b"x" * int(path.partition(b"n=")[2] or b"1000")
        elif path == b"/echo":
            out = body
        else:
            out = b"%s %s %s" % (self.app.name.encode(), head.get(b":method", b""), path)
        if path.startswith(b"/sleep"):
            delay = int(path.partition(b"ms=")[2] or b"100") / 1000
            asyncio.get_running_loop().call_later(delay, self._reply, sid, out, False)
            return
        self._reply(sid, out, path == b"/trailers")

    def _reply(self, sid: int, out: bytes, trailers: bool) -> None:
        if self.transport.is_closing() or sid not in self.conn.streams:
            return  # the connection or the stream went away meanwhile
        self.conn.send_headers(sid, [(b":status", b"200"), (b"content-length", str(len(out)).encode())])
        self.outgoing[sid] = (memoryview(out), trailers)
        self._pump()
        self.transport.write(self.conn.data_to_send())

    def _pump(self) -> None:
        """Sends what each stream still has, as far as the client's windows allow."""
        conn = self.conn
        for sid, (data, trailers) in list(self.outgoing.items()):
            while data:
                n = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(data))
                if n <= 0:
                    break
                conn.send_data(sid, bytes(data[:n]))
                data = data[n:]
            if data:
                self.outgoing[sid] = (data, trailers)
                continue
            del self.outgoing[sid]
            if trailers:
                conn.send_headers(sid, [(b"x-trailer", b"yes")], end_stream=True)
            else:
                conn.end_stream(sid)


class H2App:
    def __init__(self, name: str = "h2app") -> None:
        self.name = name
        self.requests: list[dict[bytes, bytes]] = []
        self.connections = 0
        self.resets = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> H2App:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
