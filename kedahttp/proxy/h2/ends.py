"""What both ends of the HTTP/2 relay do alike with a stream's DATA, trailers and END_STREAM.

The client connection (downstream.py) and the app connection (upstream.py) each map their own stream ids
to the shared ``Stream``; the events differ only in which way the bytes go. DATA for a stream that is gone
is acknowledged at once (nobody will read it, and the sender's window must not shrink for it); trailers
always arrive with END_STREAM, so they are held here for the moment between the two events jh2 reports.
"""

from __future__ import annotations

import asyncio

from jh2.events import DataReceived, StreamEnded, TrailersReceived, WindowUpdated

from kedahttp.proxy.h2.stream import Stream

Fields = list[tuple[bytes, bytes]]


class StreamEnd(asyncio.Protocol):
    """Base of both connection ends; subclasses say where a stream's data and end go."""

    streams: dict[int, Stream]
    trailers: dict[int, Fields]

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

    def _window(self, event: WindowUpdated) -> None:
        if event.stream_id:
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self._pump(stream)
        else:  # the connection's window: every stream that was waiting for it
            for stream in list(self.streams.values()):
                if self._waiting(stream):
                    self._pump(stream)

    def _data(self, event: DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            self.ack(event.flow_controlled_length, event.stream_id)
        else:
            self._stream_data(stream, event.data, event.flow_controlled_length)

    def _trailers(self, event: TrailersReceived) -> None:
        if event.stream_id in self.streams:
            self.trailers[event.stream_id] = event.headers

    def _ended(self, event: StreamEnded) -> None:
        trailers = self.trailers.pop(event.stream_id, None)
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            self._stream_end(stream, trailers)
