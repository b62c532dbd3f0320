"""The bus between proxies and scalers: one small Protocol, and a table from URL scheme to transport.

A transport moves opaque envelopes (see codec.py) and does nothing else: no buffering, no retries, no
decoding. Buffering and retries belong to the publisher (publisher.py), reconnects and replay to the
feed (feed.py), so each transport stays a thin adapter over its client library.

Every transport keeps a retained, ordered log that any number of scaler replicas read in full: a Redis
stream, a NATS JetStream stream, or a list in memory. A scaler that starts (or reconnects) replays the
log from ``since`` and then follows it live, so every replica folds the same messages in the same order
and a restart does not forget recent traffic.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Sequence
from typing import Final, Protocol

from kedahttp.process.secrets import redact_url


class BusUnavailable(ConnectionError):
    """The bus cannot be reached or refused the operation; the caller retries with backoff."""


class CaughtUp:
    """Marker yielded once by ``subscribe`` when the replayed history is exhausted and live data follows."""

    def __repr__(self) -> str:
        return "CAUGHT_UP"


CAUGHT_UP: Final = CaughtUp()

# How much history a transport keeps and a scaler replays on start: the longest window it serves
# (rateWindowSeconds is capped at MAX_WINDOW_SECONDS) plus a margin.
MAX_WINDOW_SECONDS: Final = 600
RETENTION_SECONDS: Final = MAX_WINDOW_SECONDS + 60


class Transport(Protocol):
    url: str

    async def connect(self) -> None:
        """Opens the connection; raises BusUnavailable when the server cannot be reached."""

    async def publish(self, payloads: Sequence[bytes]) -> None:
        """Appends envelopes to the log, in order, in as few round trips as the client allows.

        Raises BusUnavailable if any of them may not have been stored; the caller sends them again
        (readers drop duplicates by instance and sequence number).
        """

    def subscribe(self, since: float) -> AsyncIterator[bytes | CaughtUp]:
        """Yields envelopes appended at or after wall-clock ``since``, then CAUGHT_UP once, then live ones.

        Raises BusUnavailable when the connection is lost; the caller subscribes again.
        """

    async def close(self) -> None: ...


# Scheme -> "module:class". Imported lazily so a process only loads the client it uses.
BUS_SCHEMES: Final[dict[str, str]] = {
    "redis": "kedahttp.activity.redis_bus:RedisTransport",
    "rediss": "kedahttp.activity.redis_bus:RedisTransport",
    "nats": "kedahttp.activity.nats_bus:NatsTransport",
    "memory": "kedahttp.activity.memory_bus:MemoryTransport",
}


def open_transport(url: str) -> Transport:
    """Builds (does not connect) the transport for ``url``, chosen by its scheme."""
    scheme = url.partition("://")[0].lower()
    try:
        target = BUS_SCHEMES[scheme]
    except KeyError:
        raise ValueError(f"bus URL {redact_url(url)!r}: scheme must be one of {', '.join(BUS_SCHEMES)}") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    transport: Transport = cls(url)
    return transport
