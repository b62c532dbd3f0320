"""The full stack's HTTP/2 connection end (kedahttp/proxy/h2/wire.py) against an independent implementation:
the ``h2`` library plays the peer (a client for a server wire, a server for a client wire), and hpack and
hyperframe write what ``h2`` refuses to (malformed requests, protocol errors). Each test checks what the
wire reports to its owner and what the peer reads back from the wire's output.
"""

from __future__ import annotations

from typing import Any

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    TrailersReceived,
    WindowUpdated,
)
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from kedahttp.proxy.h2 import frames
from kedahttp.proxy.h2.wire import PREFACE, Wire, WireError

try:
    from kedahttp.proxy import _frames
except ImportError:  # built without it (KEDAHTTP_COMPILE=0): only the Python check is tested
    _frames = None  # type: ignore[assignment]
needs_c = pytest.mark.skipif(_frames is None, reason="built without the C request check")

PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 1, 3, 6, 9, 11
REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a.test"), (b":path", b"/svc.Echo/Unary"),
           (b"content-type", b"application/grpc"), (b"te", b"trailers")]


class Owner:
    """Records what the wire tells its owner."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_headers(self, sid: int, fields: Any, end: bool, first: bool) -> None:
        self.events.append(("headers", sid, [(n, v) for n, v, _ in fields], end, first))

    def on_data(self, sid: int, data: bytes, flow: int, end: bool) -> None:
        self.events.append(("data", sid, data, flow, end))

    def on_reset(self, sid: int, code: int) -> None:
        self.events.append(("reset", sid, code))

    def on_window(self, sid: int) -> None:
        self.events.append(("window", sid))

    def on_settings(self, window_changed: bool, streams_changed: bool) -> None:
        self.events.append(("settings", window_changed, streams_changed))

    def on_ping(self) -> None:
        self.events.append(("ping",))

    def on_goaway(self, last_sid: int, code: int) -> None:
        self.events.append(("goaway", last_sid, code))

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]


def server(**kw: Any) -> tuple[Wire, Owner, H2Connection]:
    """A server wire with an h2 client as its peer, past the connection start."""
    owner = Owner()
    wire = Wire(owner, False, max_streams=kw.get("max_streams", 128), max_header_list_bytes=kw.get("list_bytes", 65536),
                stream_window=kw.get("stream_window", 256 * 1024), connection_window=kw.get("conn_window", 4 << 20))
    peer = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    peer.initiate_connection()
    wire.initiate()
    peer.receive_data(wire.data_to_send())
    wire.receive(peer.data_to_send())
    peer.receive_data(wire.data_to_send())  # the ack of its SETTINGS
    owner.events.clear()
    return wire, owner, peer


def client() -> tuple[Wire, Owner, H2Connection]:
    owner = Owner()
    wire = Wire(owner, True, stream_window=256 * 1024, connection_window=16 << 20)
    peer = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    peer.initiate_connection()
    wire.initiate()
    peer.receive_data(wire.data_to_send())
    wire.receive(peer.data_to_send())
    peer.receive_data(wire.data_to_send())
    owner.events.clear()
    return wire, owner, peer


def raw_request(fields: list[tuple[bytes, bytes]], sid: int = 1, end: bool = True) -> bytes:
    frame = HeadersFrame(sid, Encoder().encode(fields))
    frame.flags.add("END_HEADERS")
    if end:
        frame.flags.add("END_STREAM")
    return frame.serialize()


def peer_events(peer: H2Connection, wire: Wire) -> list[Any]:
    return peer.receive_data(wire.data_to_send())


def out_frames(wire: Wire) -> list[Any]:
    """The wire's output as hyperframe frames (for streams the h2 peer did not open itself)."""
    data = wire.data_to_send()
    found = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9:9 + length]))
        found.append(frame)
        data = data[9 + length:]
    return found


# -- the connection start --------------------------------------------------------------------------


def test_settings_state_the_limits_and_the_connection_window_is_opened() -> None:
    owner = Owner()
    wire = Wire(owner, False, max_streams=77, max_header_list_bytes=9999, stream_window=200_000, connection_window=1 << 20)
    peer = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    peer.initiate_connection()
    wire.initiate()
    events = peer.receive_data(wire.data_to_send())
    changed = next(e for e in events if isinstance(e, RemoteSettingsChanged)).changed_settings
    assert changed[SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 77
    assert changed[SettingCodes.MAX_HEADER_LIST_SIZE].new_value == 9999
    assert changed[SettingCodes.INITIAL_WINDOW_SIZE].new_value == 200_000
    assert peer.outbound_flow_control_window == 1 << 20


def test_the_client_preface_may_come_in_pieces_and_must_be_right() -> None:
    owner = Owner()
    wire = Wire(owner, False)
    settings = SettingsFrame(0).serialize()
    data = PREFACE + settings
    for i in range(len(data)):
        wire.receive(data[i:i + 1])
    assert wire.settings_seen
    with pytest.raises(WireError) as err:
        Wire(owner, False).receive(b"GET / HTTP/1.1\r\n\r\n" + b"x" * 20)
    assert err.value.code == PROTOCOL_ERROR
    with pytest.raises(WireError, match="first frame"):
        Wire(owner, False).receive(PREFACE + PingFrame(0, b"12345678").serialize())


# -- a request and its answer ----------------------------------------------------------------------


def test_request_data_and_trailers_reach_the_owner_and_the_answer_reads_back() -> None:
    wire, owner, peer = server()
    peer.send_headers(1, REQUEST)
    peer.send_data(1, b"\x00\x00\x00\x00\x05world")
    peer.send_headers(1, [(b"x-trailer", b"t")], end_stream=True)
    wire.receive(peer.data_to_send())
    assert owner.events == [
        ("headers", 1, REQUEST, False, True),
        ("data", 1, b"\x00\x00\x00\x00\x05world", 10, False),
        ("headers", 1, [(b"x-trailer", b"t")], True, False),
    ]
    wire.send_headers(1, [(b":status", b"200", False), (b"content-type", b"application/grpc", False)])
    wire.send_data(1, b"\x00\x00\x00\x00\x05hello")
    wire.send_headers(1, [(b"grpc-status", b"0", False)], True)
    events = peer_events(peer, wire)
    assert isinstance(events[0], ResponseReceived) and dict(events[0].headers)[b":status"] == b"200"
    assert isinstance(events[1], DataReceived) and events[1].data == b"\x00\x00\x00\x00\x05hello"
    assert isinstance(events[2], TrailersReceived) and events[2].headers == [(b"grpc-status", b"0")]
    assert isinstance(events[3], StreamEnded)
    assert not wire.streams  # both ends ended: the stream is gone


def test_padded_data_is_passed_without_padding_and_counted_with_it() -> None:
    wire, owner, peer = server()
    peer.send_headers(1, REQUEST)
    wire.receive(peer.data_to_send())
    frame = DataFrame(1, b"abc", pad_length=6)
    frame.flags.add("PADDED")
    frame.flags.add("END_STREAM")
    wire.receive(frame.serialize())
    assert owner.events[-1] == ("data", 1, b"abc", 10, True)


def test_a_large_header_block_goes_out_in_continuation_frames_the_peer_reads() -> None:
    wire, _owner, peer = server()
    peer.send_headers(1, REQUEST, end_stream=True)
    wire.receive(peer.data_to_send())
    big = b"v" * 40_000
    wire.send_headers(1, [(b":status", b"200", False), (b"x-big", big, False)], True)
    out = wire.data_to_send()
    assert out[3] == frames.HEADERS and out.count(bytes((frames.CONTINUATION,))) >= 2
    peer.local_settings.max_header_list_size = 1 << 20
    events = peer.receive_data(out)
    assert isinstance(events[0], ResponseReceived) and dict(events[0].headers)[b"x-big"] == big


def test_headers_are_compressed_with_a_table_the_peer_keeps() -> None:
    wire, _owner, peer = server()
    sizes = []
    for sid in (1, 3, 5):
        peer.send_headers(sid, REQUEST, end_stream=True)
        wire.receive(peer.data_to_send())
        wire.send_headers(sid, [(b":status", b"200", False), (b"content-type", b"application/grpc", False),
                                (b"x-app-version", b"2026.12.06-abcdef", False)], True)
        out = wire.data_to_send()
        sizes.append(len(out))
        events = peer.receive_data(out)
        assert isinstance(events[0], ResponseReceived)
        assert dict(events[0].headers)[b"x-app-version"] == b"2026.12.06-abcdef"
    assert sizes[1] < sizes[0] // 2 and sizes[2] == sizes[1]  # indexed after the first time


def test_the_peers_table_size_is_followed() -> None:
    wire, _owner, peer = server()
    peer.update_settings({SettingCodes.HEADER_TABLE_SIZE: 0})
    wire.receive(peer.data_to_send())
    peer.receive_data(wire.data_to_send())
    for sid in (1, 3):
        peer.send_headers(sid, REQUEST, end_stream=True)
        wire.receive(peer.data_to_send())
        wire.send_headers(sid, [(b":status", b"200", False), (b"x-long-name", b"a long value", False)], True)
        events = peer_events(peer, wire)
        assert dict(events[0].headers)[b"x-long-name"] == b"a long value"


# -- requests checked field by field ---------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    [*REQUEST, (b"X-Upper", b"1")],
    [*REQUEST, (b"connection", b"keep-alive")],
    [*REQUEST, (b"transfer-encoding", b"chunked")],
    [*REQUEST, (b"te", b"gzip")],
    [*REQUEST, (b"x-a", b"b\r\nx-injected: 1")],
    [*REQUEST, (b"x-a", b"nul\x00")],
    [*REQUEST, (b"x-a", b" padded")],
    [*REQUEST, (b"bad name", b"1")],
    [*REQUEST, (b":foo", b"1")],
    [*REQUEST, (b":method", b"GET")],
    [(b"x-first", b"1"), *REQUEST],
    [f for f in REQUEST if f[0] != b":path"],
    [f for f in REQUEST if f[0] != b":method"],
    [(b":path", b"") if f[0] == b":path" else f for f in REQUEST],
    [(b":path", b"http://b.test/x") if f[0] == b":path" else f for f in REQUEST],
    [(b":path", b"/a b") if f[0] == b":path" else f for f in REQUEST],
    [(b":method", b"GET /x") if f[0] == b":method" else f for f in REQUEST],
    [*REQUEST, (b"host", b"b.test")],
], ids=["uppercase", "connection", "transfer-encoding", "te", "crlf", "nul", "space", "space-in-name", "unknown-pseudo",
        "repeated-pseudo", "pseudo-after-regular", "no-path", "no-method", "empty-path", "absolute-path",
        "space-in-path", "space-in-method", "host-differs"])
def test_malformed_requests_are_reset_and_never_reach_the_owner(fields: list[tuple[bytes, bytes]]) -> None:
    wire, owner, _peer = server()
    wire.receive(raw_request(fields))
    assert owner.events == []
    sent = out_frames(wire)
    assert [type(x) for x in sent] == [RstStreamFrame] and sent[0].error_code == PROTOCOL_ERROR
    wire.receive(raw_request(REQUEST, sid=3))  # the connection goes on
    assert owner.events == [("headers", 3, REQUEST, True, True)]


_names = st.sampled_from([b":method", b":scheme", b":path", b":authority", b":foo", b"te", b"connection", b"x-a",
                          b"X-A", b"a b", b"", b"content-type", b"keep-alive", b"upgrade", b"host"])
_values = st.one_of(st.sampled_from([b"GET", b"CONNECT", b"OPTIONS", b"/", b"*", b"/a b", b"h", b"", b"trailers", b"gzip",
                                     b" x", b"x\t", b"a\r\nb", b"\x00", b"http://h/", b"\x7f", b"G T"]),
                    st.binary(max_size=6))


@needs_c
@given(st.lists(st.tuples(_names, _values, st.booleans()), max_size=8), st.booleans())
@settings(max_examples=3000, deadline=None)
def test_python_and_c_request_checks_agree(fields: list[tuple[bytes, bytes, bool]], trailers: bool) -> None:
    assert _frames.request_problem(fields, trailers) == frames.request_problem(fields, trailers)


@needs_c
def test_the_c_request_check_finds_what_the_python_one_finds() -> None:
    """Not only agreement: the C check refuses each malformed case of the list above."""
    good = [(n, v, False) for n, v in REQUEST]
    assert _frames.request_problem(good, False) == b""
    for bad in ([*good, (b"x-a", b"b\r\nc", False)], [*good, (b"X", b"1", False)], good[1:],
                [*good, (b"te", b"gzip", False)], [*good, (b":path", b"/", False)], [*good, (b"host", b"b.test", False)],
                [(b":method", b"GE T", False), *good[1:]], [(b":path", b"http://b.test/", False) if f[0] == b":path"
                                                              else f for f in good]):
        assert _frames.request_problem(bad, False) != b""


POST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a.test"), (b":path", b"/up")]


@pytest.mark.parametrize(("declared", "chunks", "ok"), [
    (b"5", [b"hello"], True),
    (b"5", [b"he", b"llo"], True),
    (b"5", [b"hello", b"GET /smuggled HTTP/1.1\r\n\r\n"], False),  # more than declared: never passed on
    (b"5", [b"hell"], False),  # ends short
    (b"0", [b"x"], False),
    (b"-1", [b"x"], False),
    (b"5, 6", [b"hello"], False),
])
def test_a_body_must_match_its_content_length(declared: bytes, chunks: list[bytes], ok: bool) -> None:
    wire, owner, _ = server()
    wire.receive(raw_request([*POST, (b"content-length", declared)], end=False))
    for i, chunk in enumerate(chunks):
        frame = DataFrame(1, chunk)
        if i == len(chunks) - 1:
            frame.flags.add("END_STREAM")
        wire.receive(frame.serialize())
    passed = b"".join(e[2] for e in owner.events if e[0] == "data")
    if ok:
        assert passed == b"".join(chunks) and owner.events[-1][-1] is True
        return
    assert b"smuggled" not in passed
    sent = out_frames(wire)
    assert any(isinstance(x, RstStreamFrame) and x.error_code == PROTOCOL_ERROR for x in sent)


def test_repeated_content_length_fields_must_agree_and_trailers_cannot_cut_a_body_short() -> None:
    wire, owner, _ = server()
    wire.receive(raw_request([*POST, (b"content-length", b"3"), (b"content-length", b"3")], end=False))
    wire.receive(DataFrame(1, b"abc").serialize())
    assert owner.events[-1] == ("data", 1, b"abc", 3, False)
    wire.receive(raw_request([*POST, (b"content-length", b"3"), (b"content-length", b"4")], sid=3, end=False))
    assert [e[1] for e in owner.events if e[0] == "headers"] == [1]
    wire.receive(raw_request([*POST, (b"content-length", b"9")], sid=5, end=False))
    wire.receive(DataFrame(5, b"abc").serialize())
    trailers = HeadersFrame(5, Encoder().encode([(b"x-t", b"1")]))
    trailers.flags.add("END_HEADERS")
    trailers.flags.add("END_STREAM")
    wire.receive(trailers.serialize())
    assert owner.events[-1] == ("reset", 5, PROTOCOL_ERROR)
    wire, owner, _ = server()
    wire.receive(raw_request([*POST, (b"content-length", b"2")]))  # END_STREAM on HEADERS: no body at all
    assert owner.events == []


def test_trailers_with_a_pseudo_header_or_without_end_stream_reset_the_stream() -> None:
    wire, owner, _peer = server()
    wire.receive(raw_request(REQUEST, end=False))
    frame = HeadersFrame(1, Encoder().encode([(b":path", b"/x")]))
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    wire.receive(frame.serialize())
    assert owner.events[-1] == ("reset", 1, PROTOCOL_ERROR)


# -- flow control ----------------------------------------------------------------------------------


def test_window_updates_are_batched_to_half_a_window() -> None:
    wire, _owner, peer = server(stream_window=65536, conn_window=1 << 20)
    peer.send_headers(1, REQUEST)
    wire.receive(peer.data_to_send())
    for _ in range(4):
        peer.send_data(1, b"x" * 10_000)
    wire.receive(peer.data_to_send())
    wire.ack(30_000, 1)
    assert wire.data_to_send() == b""  # under half of either window: nothing yet
    wire.ack(3_000, 1)  # 33,000 >= 32,768: the stream's window comes back, the connection's not yet
    events = peer_events(peer, wire)
    assert [(type(e), e.stream_id, e.delta) for e in events] == [(WindowUpdated, 1, 33_000)]
    assert peer.local_flow_control_window(1) == 65536 - 40_000 + 33_000


def test_data_beyond_the_windows() -> None:
    wire, owner, _peer = server(stream_window=16384, conn_window=1 << 20)
    wire.receive(raw_request(REQUEST, end=False))
    wire.receive(DataFrame(1, b"x" * 16384).serialize())
    wire.receive(DataFrame(1, b"y").serialize())  # one past the stream's window: that stream ends
    assert owner.events[-1] == ("reset", 1, FLOW_CONTROL_ERROR)
    sent = out_frames(wire)
    assert isinstance(sent[-1], RstStreamFrame) and sent[-1].error_code == FLOW_CONTROL_ERROR
    small = Wire(Owner(), False)
    small.receive(PREFACE + SettingsFrame(0).serialize() + raw_request(REQUEST, end=False))
    with pytest.raises(WireError) as err:  # past the connection's window: the connection ends
        small.receive(b"".join(DataFrame(1, b"z" * 16384).serialize() for _ in range(5)))
    assert err.value.code == FLOW_CONTROL_ERROR


def test_send_window_follows_settings_and_window_updates() -> None:
    wire, owner, peer = server()
    peer.send_headers(1, REQUEST, end_stream=True)
    wire.receive(peer.data_to_send())
    assert wire.send_window(1) == 65535
    peer.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    wire.receive(peer.data_to_send())
    assert owner.events[-1] == ("settings", True, False) and wire.send_window(1) == 1000
    wire.send_headers(1, [(b":status", b"200", False)])
    wire.send_data(1, b"a" * 1000)
    assert wire.send_window(1) == 0
    peer_events(peer, wire)
    peer.increment_flow_control_window(500, stream_id=1)
    wire.receive(peer.data_to_send())
    assert owner.events[-1] == ("window", 1) and wire.send_window(1) == 500


def test_data_goes_out_in_frames_no_larger_than_the_peer_takes() -> None:
    wire, _owner, peer = server()
    peer.send_headers(1, REQUEST, end_stream=True)
    peer.increment_flow_control_window(1 << 20)
    peer.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    wire.receive(peer.data_to_send())
    wire.send_headers(1, [(b":status", b"200", False)])
    wire.send_data(1, b"d" * 40_000, True)
    out = wire.data_to_send()
    events = peer.receive_data(out)
    sizes = [len(e.data) for e in events if isinstance(e, DataReceived)]
    assert sizes == [16384, 16384, 40_000 - 32768] and isinstance(events[-1], StreamEnded)


# -- connection errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "code"), [
    (DataFrame(1, b"x").serialize(), PROTOCOL_ERROR),  # DATA on a stream never opened
    (b"\x00\x00\x01" + bytes((frames.DATA, 0)) + b"\x00\x00\x00\x00x", PROTOCOL_ERROR),  # DATA on stream 0
    (b"\x00\x00\x04" + bytes((frames.PING, 0)) + b"\x00\x00\x00\x00abcd", FRAME_SIZE_ERROR),
    (b"\x00\x00\x05" + bytes((frames.SETTINGS, 0)) + b"\x00\x00\x00\x00abcde", FRAME_SIZE_ERROR),
    (WindowUpdateFrame(0, 1).serialize()[:-4] + b"\x00\x00\x00\x00", PROTOCOL_ERROR),  # an increment of 0
    (WindowUpdateFrame(0, 2**31 - 1).serialize(), FLOW_CONTROL_ERROR),  # past 2^31-1
    (b"\x00\x40\x01" + bytes((frames.DATA, 0)) + b"\x00\x00\x00\x01", FRAME_SIZE_ERROR),  # over 16 KiB
    (ContinuationFrame(1, b"\x82").serialize(), PROTOCOL_ERROR),  # no block open
    (raw_request(REQUEST, sid=2), PROTOCOL_ERROR),  # an even stream id from a client
    (PushPromiseFrame(1, 2, Encoder().encode(REQUEST)).serialize(), PROTOCOL_ERROR),
    (RstStreamFrame(9, 8).serialize(), PROTOCOL_ERROR),  # a stream never opened
    (SettingsFrame(0, {SettingCodes.ENABLE_PUSH: 2}).serialize(), PROTOCOL_ERROR),
    (SettingsFrame(0, {SettingCodes.MAX_FRAME_SIZE: 100}).serialize(), PROTOCOL_ERROR),
    (SettingsFrame(0, {SettingCodes.INITIAL_WINDOW_SIZE: 2**31}).serialize(), FLOW_CONTROL_ERROR),
    (HeadersFrame(1, b"\xff\xff\xff\xff\xff").serialize(), PROTOCOL_ERROR),  # no END_HEADERS, then a PING
], ids=["data-idle", "data-0", "ping-size", "settings-size", "window-0", "window-overflow", "frame-size",
        "continuation-alone", "even-id", "push-promise", "rst-idle", "enable-push", "max-frame", "initial-window",
        "block-interrupted"])
def test_connection_errors(payload: bytes, code: int) -> None:
    wire, _owner, _peer = server()
    with pytest.raises(WireError) as err:
        wire.receive(payload + PingFrame(0, b"12345678").serialize())
    assert err.value.code == code


def test_undecodable_and_oversized_header_blocks_end_the_connection() -> None:
    wire, _, _ = server()
    frame = HeadersFrame(1, b"\xff\xff\xff\xff\xff\x7f")  # an index far past any table
    frame.flags.add("END_HEADERS")
    with pytest.raises(WireError) as err:
        wire.receive(frame.serialize())
    assert err.value.code == COMPRESSION_ERROR
    wire, _, _ = server(list_bytes=1000)
    with pytest.raises(WireError) as err:
        wire.receive(raw_request([*REQUEST, (b"x-big", b"v" * 2000)]))
    assert err.value.code == ENHANCE_YOUR_CALM


def test_concurrent_streams_past_the_limit_end_the_connection() -> None:
    wire, owner, _ = server(max_streams=3)
    for sid in (1, 3, 5):
        wire.receive(raw_request(REQUEST, sid=sid))
    with pytest.raises(WireError) as err:
        wire.receive(raw_request(REQUEST, sid=7))
    assert err.value.code == PROTOCOL_ERROR and len(owner.events) == 3


def test_continuation_frames_are_limited() -> None:
    wire, owner, _ = server()
    block = Encoder().encode(REQUEST)
    wire.receive(HeadersFrame(1, block[:3]).serialize())
    for _ in range(64):
        wire.receive(ContinuationFrame(1, b"").serialize())
    with pytest.raises(WireError) as err:
        wire.receive(ContinuationFrame(1, b"").serialize())
    assert err.value.code == ENHANCE_YOUR_CALM
    wire, owner, _ = server()  # within the limit, a block in pieces is one request
    wire.receive(HeadersFrame(1, block[:3]).serialize())
    end = ContinuationFrame(1, block[3:])
    end.flags.add("END_HEADERS")
    wire.receive(end.serialize())
    assert owner.events == [("headers", 1, REQUEST, False, True)]


def test_a_request_on_a_closed_stream_id_is_refused_not_left_waiting() -> None:
    wire, owner, _ = server()
    wire.receive(raw_request(REQUEST, sid=5))
    wire.send_headers(5, [(b":status", b"200", False)], True)
    out_frames(wire)
    wire.receive(raw_request(REQUEST, sid=3))  # below the highest id: that stream is closed (never opened)
    wire.receive(raw_request(REQUEST, sid=5))  # closed after its answer
    sent = out_frames(wire)
    assert [(type(x), x.stream_id, x.error_code) for x in sent] == [(RstStreamFrame, 3, 5), (RstStreamFrame, 5, 5)]
    assert [e[1] for e in owner.events if e[0] == "headers"] == [5]


def test_pings_are_answered_and_goaway_is_reported() -> None:
    wire, owner, _peer = server()
    wire.receive(PingFrame(0, b"abcdefgh").serialize() + GoAwayFrame(0, 5, 0).serialize())
    assert owner.kinds() == ["ping", "goaway"] and owner.events[1] == ("goaway", 5, 0)
    out = wire.data_to_send()
    assert out == b"\x00\x00\x08" + bytes((frames.PING, frames.ACK)) + b"\x00\x00\x00\x00abcdefgh"


def test_frames_of_a_reset_stream_are_dropped_with_their_window_given_back() -> None:
    wire, owner, _peer = server(conn_window=65535)
    wire.receive(raw_request(REQUEST, end=False))
    wire.reset(1, 8)
    wire.data_to_send()
    for _ in range(5):  # 80 KiB on a stream that is gone: more than the connection window, given back
        wire.receive(DataFrame(1, b"q" * 16000).serialize())
    assert ("data", 1) not in [e[:2] for e in owner.events]
    assert wire.recv_conn + wire.unacked_conn >= 65535 - 16000


# -- the client end (to an app) --------------------------------------------------------------------


def test_client_end_skips_informational_responses_and_reads_trailers() -> None:
    wire, owner, peer = client()
    sid = wire.open_stream()
    assert (sid, wire.open_stream()) == (1, 3)
    wire.send_headers(sid, [(n, v, False) for n, v in REQUEST])
    wire.send_data(sid, b"body", True)
    events = peer_events(peer, wire)
    assert isinstance(events[0], RequestReceived) and isinstance(events[-1], StreamEnded)
    peer.send_headers(sid, [(b":status", b"100")])
    peer.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    peer.send_data(sid, b"reply")
    peer.send_headers(sid, [(b"grpc-status", b"5"), (b"grpc-message", b"not found")], end_stream=True)
    wire.receive(peer.data_to_send())
    assert owner.events == [
        ("headers", 1, [(b":status", b"200"), (b"content-type", b"application/grpc")], False, True),
        ("data", 1, b"reply", 5, False),
        ("headers", 1, [(b"grpc-status", b"5"), (b"grpc-message", b"not found")], True, False),
    ]
    assert 1 not in wire.streams


def test_client_end_refuses_pushes_and_a_server_that_enables_them() -> None:
    wire, _, _ = client()
    with pytest.raises(WireError):
        wire.receive(SettingsFrame(0, {SettingCodes.ENABLE_PUSH: 1}).serialize())
    wire, _, _ = client()
    sid = wire.open_stream()
    wire.send_headers(sid, [(n, v, False) for n, v in REQUEST], True)
    with pytest.raises(WireError):
        wire.receive(raw_request(REQUEST, sid=2))  # HEADERS on a stream the client did not open


def test_client_end_learns_the_apps_stream_limit() -> None:
    wire, owner, peer = client()
    peer.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 7})
    wire.receive(peer.data_to_send())
    assert wire.peer_max_streams == 7 and owner.events[-1] == ("settings", False, True)
    events = peer_events(peer, wire)
    assert any(type(e).__name__ == "SettingsAcknowledged" for e in events)


def test_goaway_from_the_peer_with_an_error_code() -> None:
    wire, owner, peer = client()
    peer.close_connection(error_code=2, last_stream_id=0)
    wire.receive(peer.data_to_send())
    assert owner.events == [("goaway", 0, 2)]
