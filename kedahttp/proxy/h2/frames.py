"""HTTP/2 frames as bytes, for the relay (relay.py), which passes frames on without a protocol stack.

``scan_frames`` is the frame-header walk; _frames.pyx is its C twin (the one used where it was built:
tests/unit/proxy/test_h2_frames.py checks that both give the same answer). The rest builds the few frames
the relay writes itself and reads the few it looks into. Pure: no I/O.
"""

from __future__ import annotations

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = 0x1  # DATA, HEADERS
ACK = 0x1  # SETTINGS, PING
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, \
    MAX_HEADER_LIST_SIZE = range(1, 7)
ENABLE_CONNECT_PROTOCOL = 8

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR = 0, 1, 2
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 6, 7, 8, 9, 11

Frame = tuple[int, int, int, int, int]  # type, flags, stream id, offset of its 9-byte header, payload length


def scan_frames(data: bytes, start: int, max_length: int, every: bool) -> tuple[list[Frame], int]:
    """The whole frames of ``data`` from ``start``: those the relay must look at (all of them if ``every``;
    else not DATA without END_STREAM, WINDOW_UPDATE or PRIORITY), and the offset after the last whole
    frame, or -1 at a frame longer than ``max_length``."""
    frames: list[Frame] = []
    at = start
    n = len(data)
    while n - at >= 9:
        length = int.from_bytes(data[at:at + 3], "big")
        if length > max_length:
            return frames, -1
        if n - at - 9 < length:
            break
        ftype = data[at + 3]
        flags = data[at + 4]
        if every or not ((ftype == DATA and not flags & END_STREAM) or ftype in (WINDOW_UPDATE, PRIORITY)):
            frames.append((ftype, flags, int.from_bytes(data[at + 5:at + 9], "big") & 0x7FFFFFFF, at, length))
        at += 9 + length
    return frames, at


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big") + payload


def rst_stream(sid: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, sid, code.to_bytes(4, "big"))


def goaway(last_sid: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, last_sid.to_bytes(4, "big") + code.to_bytes(4, "big") + debug)


def window_update(sid: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, sid, increment.to_bytes(4, "big"))


def fragment(data: bytes, ftype: int, flags: int, at: int, length: int) -> bytes | None:
    """The header block fragment of a HEADERS or CONTINUATION frame (padding and priority removed), or
    None if its padding is longer than the frame."""
    start, end = at + 9, at + 9 + length
    if ftype == HEADERS:
        if flags & PADDED:
            if length < 1:
                return None
            end -= data[start]
            start += 1
        if flags & PRIORITY_FLAG:
            start += 5
        if end < start:
            return None
    return data[start:end]


def _hpack_int(n: int) -> bytes:
    """An HPACK integer with a 7-bit prefix (RFC 7541 5.1), the prefix bits left 0."""
    if n < 127:
        return bytes((n,))
    out = bytearray((127,))
    n -= 127
    while n >= 128:
        out.append(n & 127 | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def literal_block(fields: list[tuple[bytes, bytes]]) -> bytes:
    """``fields`` as HPACK literals without indexing, new names, no Huffman (RFC 7541 6.2.2): a block that
    leaves the receiver's dynamic table as it was, so it can be put into a connection whose table the two
    ends keep without us."""
    out = bytearray()
    for name, value in fields:
        out += b"\x00" + _hpack_int(len(name)) + name + _hpack_int(len(value)) + value
    return bytes(out)


def settings(payload: bytes) -> list[tuple[int, int]]:
    return [(int.from_bytes(payload[i:i + 2], "big"), int.from_bytes(payload[i + 2:i + 6], "big"))
            for i in range(0, len(payload) - 5, 6)]


def capped_settings(payload: bytes, caps: dict[int, int], required: tuple[int, ...] = (),
                    dropped: tuple[int, ...] = ()) -> tuple[bytes, dict[int, int]]:
    """A SETTINGS frame with every value in ``caps`` lowered to its cap (and the ``required`` ones stated
    even when the sender left them out), ``dropped`` ones removed; and the values it now carries."""
    out: dict[int, int] = {}
    for ident, value in settings(payload):
        if ident in dropped:
            continue
        cap = caps.get(ident)
        out[ident] = value if cap is None else min(value, cap)
    for ident in required:
        out.setdefault(ident, caps[ident])
    body = b"".join(ident.to_bytes(2, "big") + value.to_bytes(4, "big") for ident, value in out.items())
    return frame(SETTINGS, 0, 0, body), out


def setting(ident: int, value: int) -> bytes:
    """One SETTINGS parameter as it goes in the frame's payload."""
    return ident.to_bytes(2, "big") + value.to_bytes(4, "big")


# RFC 9113 8.2.2: fields that are HTTP/1.1's connection management and have no place in HTTP/2
CONNECTION_FIELDS = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"))
_PSEUDO_BITS = {b":method": 1, b":scheme": 2, b":path": 4, b":authority": 8}
# a field name: lowercase token characters (RFC 9110 5.1, RFC 9113 8.2.1)
_NAME_BYTES = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_BAD_VALUE_BYTES = frozenset(b"\x00\r\n")
_METHOD_BYTES = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TARGET_BYTES = frozenset(range(0x21, 0x7F)) | frozenset(range(0x80, 0x100))  # no space, control byte or DEL


def request_problem(fields: list[tuple[bytes, bytes, bool]], trailers: bool) -> bytes:
    """What makes a request's header block (or its trailers) malformed under RFC 9113 8.2-8.3, or b"" if
    nothing does: names that are not lowercase tokens, values with NUL, CR or LF or surrounding
    whitespace, connection-specific fields, TE other than "trailers", pseudo-header fields unknown,
    repeated, after a regular field, in trailers, or missing (:method; :scheme and a non-empty :path
    unless CONNECT); a :method that is not a token, a :path that is not origin-form ("/...", or "*" for
    OPTIONS) or holds a space or control byte, an :authority with one, a Host that differs from the
    :authority, a second Host. _frames.pyx has the same function in C; the relay and the full stack
    check with it, so nothing that could split or redirect an HTTP/1.1 request line or head reaches an
    app."""
    seen = 0
    regular = False
    method = path = authority = host = b""
    hosts = 0
    for name, value, _ in fields:
        if not name:
            return b"empty field name"
        if name[0] == 58:  # ":"
            bit = _PSEUDO_BITS.get(name, 0)
            if trailers or regular or not bit or seen & bit:
                return b"misplaced, unknown or repeated pseudo-header field " + name
            seen |= bit
            if bit == 1:
                method = value
            elif bit == 4:
                path = value
            elif bit == 8:
                authority = value
        else:
            regular = True
            if not _NAME_BYTES.issuperset(name):
                return b"field name not a lowercase token"
            if name in CONNECTION_FIELDS or (name == b"te" and value != b"trailers"):
                return b"connection-specific field " + name
            if name == b"host":
                host = value
                hosts += 1
        if value and (not _BAD_VALUE_BYTES.isdisjoint(value) or value[0] in b" \t" or value[-1] in b" \t"):
            return b"field value with NUL, CR, LF or surrounding whitespace in " + name
    if trailers:
        return b""
    if not seen & 1:
        return b"no :method"
    if not method or not _METHOD_BYTES.issuperset(method):
        return b":method not a token"
    if not _TARGET_BYTES.issuperset(authority) or not _TARGET_BYTES.issuperset(path):
        return b"space or control byte in :authority or :path"
    if hosts > 1 or (hosts and seen & 8 and host != authority):
        return b"a second Host, or a Host that differs from :authority"
    if method == b"CONNECT":
        return b"" if seen == 9 else b"CONNECT with :scheme or :path, or without :authority"
    if seen & 6 != 6 or not path:
        return b"no :scheme or :path"
    if path[0] != 47 and not (path == b"*" and method == b"OPTIONS"):  # "/"
        return b":path not origin-form"
    return b""
