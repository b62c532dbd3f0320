"""What both connection ends of the full stack do alike with a stream's DATA, trailers and windows.

The client connection (downstream.py) and the app connection (upstream.py) each map their own stream ids
to the shared ``Stream`` and get the same events from their ``Wire``; they differ only in which way the
bytes go. DATA for a stream that is gone is acknowledged at once (nobody will read it, and the sender's
window must not shrink for it). And how a client connection ends without losing what it was sent last
(``linger``), for the full stack's client connections and the relay's alike.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kedahttp.proxy.h2.stream import Stream
from kedahttp.proxy.h2.wire import Fields, Wire

LINGER_SECONDS = 2.0  # how long a closing connection's input is dropped at most before it is closed


def linger(transport: Any) -> None:
    """Ends a connection without losing what it was sent last: FIN after the writes already buffered, then
    its input is read and dropped (the caller ignores it) until the peer closes, LINGER_SECONDS at most.
    Closing a socket with unread input sends a reset, which can destroy a GOAWAY or the end of a stream
    before the peer has read them; a WINDOW_UPDATE or PING sent meanwhile is such input."""
    if transport.is_closing() or not transport.can_write_eof():
        transport.close()
        return
    transport.resume_reading()
    transport.write_eof()
    asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)


class StreamEnd(asyncio.Protocol):
    """Base of both connection ends; subclasses say where a stream's data and end go."""

    streams: dict[int, Stream]
    wire: Wire

    def ack(self, flow: int, sid: int) -> None:
        raise NotImplementedError

    def _stream_data(self, stream: Stream, data: bytes, flow: int) -> None:
        raise NotImplementedError

    def _stream_end(self, stream: Stream, trailers: Fields | None) -> None:
        raise NotImplementedError

    def _pump(self, stream: Stream) -> None:
        """Sends what the stream has waiting for this end, as far as the windows allow."""
        raise NotImplementedError

    def _waiting(self, stream: Stream) -> bool:
        """The stream has data or an end waiting to be sent to this end."""
        raise NotImplementedError

    def on_window(self, sid: int) -> None:
        if sid:
            stream = self.streams.get(sid)
            if stream is not None:
                self._pump(stream)
        else:  # the connection's window: every stream that was waiting for it
            for stream in list(self.streams.values()):
                if self._waiting(stream):
                    self._pump(stream)

    def on_data(self, sid: int, data: bytes, flow: int, end: bool) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            self.ack(flow, sid)
            return
        if data:
            self._stream_data(stream, data, flow)
        elif flow:  # padding only
            self.ack(flow, sid)
        if end:
            self._stream_end(stream, None)

    def _trailers(self, sid: int, fields: Fields) -> None:
        stream = self.streams.get(sid)
        if stream is not None:
            self._stream_end(stream, fields)
