"""What the proxy itself says to a gRPC client: status codes, trailers-only answers, and grpc-timeout.

Pure functions over header bytes. A call the proxy answers itself (no route, held too long, hold queue
full, app unreachable) gets HTTP 200 with ``grpc-status`` in a trailers-only response, as the gRPC spec
asks of proxies, so client retry policies see UNAVAILABLE rather than a transport error. ``grpc-timeout``
is the caller's deadline (gRPC over HTTP/2: 1-8 digits and a unit); a held call never outlives it.
"""

from __future__ import annotations

OK = 0
CANCELLED = 1
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14

# the gRPC spec's mapping of an HTTP status received instead of a gRPC answer
_FROM_HTTP = {400: INTERNAL, 401: 16, 403: 7, 404: UNIMPLEMENTED, 429: UNAVAILABLE, 502: UNAVAILABLE,
              503: UNAVAILABLE, 504: UNAVAILABLE}

_UNITS = {0x48: 3600.0, 0x4D: 60.0, 0x53: 1.0, 0x6D: 1e-3, 0x75: 1e-6, 0x6E: 1e-9}  # H M S m u n


def is_grpc(content_type: bytes) -> bool:
    """``application/grpc`` with or without a ``+proto``-style suffix or parameters."""
    return content_type[:16].lower() == b"application/grpc"


def timeout_seconds(value: bytes) -> float | None:
    """The ``grpc-timeout`` value in seconds; None when it is malformed (the call then has no deadline)."""
    if not 2 <= len(value) <= 9 or not value[:-1].isdigit():
        return None
    unit = _UNITS.get(value[-1])
    return None if unit is None else int(value[:-1]) * unit


def status_for_http(status: int) -> int:
    return _FROM_HTTP.get(status, UNAVAILABLE if status >= 500 else INTERNAL)


def _percent_encode(message: str) -> bytes:
    """grpc-message is percent-encoded UTF-8 outside printable ASCII (and '%' itself)."""
    out = bytearray()
    for byte in message.encode():
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def trailers_only(code: int, message: str) -> list[tuple[bytes, bytes, bool]]:
    """The header fields of a trailers-only gRPC answer (sent with END_STREAM, no body), as HPACK takes
    them (name, value, never-indexed)."""
    return [
        (b":status", b"200", False),
        (b"content-type", b"application/grpc", False),
        (b"grpc-status", str(code).encode(), False),
        (b"grpc-message", _percent_encode(message), False),
    ]
