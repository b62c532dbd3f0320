"""The relay's frame work (kedahttp/proxy/h2/frames.py): the C frame scan (_frames.pyx) must give exactly
what the Python one gives, on any bytes; and the frames and HPACK literals the relay writes itself must
read back as meant, by an independent implementation (hyperframe and hpack, as the ``h2`` test client
uses them), leaving the receiver's HPACK table untouched.
"""

from __future__ import annotations

import pytest
from hpack import Decoder, Encoder
from hyperframe.frame import Frame as HyperFrame
from hyperframe.frame import SettingsFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from kedahttp.proxy.h2 import frames

try:
    from kedahttp.proxy import _frames
except ImportError:  # built without it (KEDAHTTP_COMPILE=0): only the Python scan is checked
    _frames = None  # type: ignore[assignment]
SCANS = [frames.scan_frames] + ([] if _frames is None else [_frames.scan_frames])
needs_c = pytest.mark.skipif(_frames is None, reason="built without the C frame scan")


def frame_bytes(ftype: int, flags: int, sid: int, payload: bytes, length: int | None = None) -> bytes:
    length = len(payload) if length is None else length
    return length.to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big") + payload


one_frame = st.builds(
    frame_bytes, st.integers(0, 12), st.integers(0, 255), st.integers(0, 2**32 - 1), st.binary(max_size=40),
    st.one_of(st.none(), st.integers(0, 60)))  # a stated length that may not match: cut or overlong frames


@needs_c
@given(st.lists(one_frame, max_size=12), st.binary(max_size=12), st.integers(0, 30), st.integers(0, 64),
       st.booleans())
@settings(max_examples=400, deadline=None)
def test_c_and_python_scans_agree(parts: list[bytes], tail: bytes, start: int, max_length: int, every: bool) -> None:
    data = b"".join(parts) + tail
    start = min(start, len(data))
    assert _frames.scan_frames(data, start, max_length, every) == frames.scan_frames(data, start, max_length, every)


def test_scan_reports_what_the_relay_looks_at() -> None:
    data = (frame_bytes(frames.DATA, 0, 1, b"abc") + frame_bytes(frames.WINDOW_UPDATE, 0, 0, b"\0\0\0\1")
            + frame_bytes(frames.HEADERS, frames.END_HEADERS, 3, b"x") + frame_bytes(frames.DATA, frames.END_STREAM, 3, b"")
            + frame_bytes(frames.PING, 0, 0, b"12345678")[:10])  # a cut frame: left for the next read
    for scan in SCANS:
        found, end = scan(data, 0, 16384, False)
        assert [(t, s) for t, _, s, _, _ in found] == [(frames.HEADERS, 3), (frames.DATA, 3)]
        assert end == len(data) - 10
        assert len(scan(data, 0, 16384, True)[0]) == 4
        assert scan(data, 0, 2, False)[1] == -1  # a frame over the size limit
        # the reserved bit of the stream id is not part of it
        assert scan(frame_bytes(frames.RST_STREAM, 0, 2**31 + 5, b"\0\0\0\0"), 0, 16, False)[0][0][2] == 5


def test_frames_written_by_the_relay_parse() -> None:
    parsed, _ = HyperFrame.parse_frame_header(memoryview(frames.goaway(7, frames.ENHANCE_YOUR_CALM, b"why")[:9]))
    parsed.parse_body(memoryview(frames.goaway(7, frames.ENHANCE_YOUR_CALM, b"why")[9:]))
    assert (parsed.last_stream_id, parsed.error_code, parsed.additional_data) == (7, 11, b"why")
    rst = frames.rst_stream(9, frames.REFUSED_STREAM)
    parsed, _ = HyperFrame.parse_frame_header(memoryview(rst[:9]))
    parsed.parse_body(memoryview(rst[9:]))
    assert (parsed.stream_id, parsed.error_code) == (9, 7)


def test_capped_settings() -> None:
    sent = SettingsFrame(0, {frames.MAX_CONCURRENT_STREAMS: 1000, frames.MAX_FRAME_SIZE: 1 << 20,
                             frames.INITIAL_WINDOW_SIZE: 1 << 20, frames.ENABLE_CONNECT_PROTOCOL: 1}).serialize()
    capped, values = frames.capped_settings(
        sent[9:], {frames.MAX_CONCURRENT_STREAMS: 128, frames.MAX_HEADER_LIST_SIZE: 65536, frames.MAX_FRAME_SIZE: 16384},
        required=(frames.MAX_CONCURRENT_STREAMS, frames.MAX_HEADER_LIST_SIZE), dropped=(frames.ENABLE_CONNECT_PROTOCOL,))
    assert values == {frames.MAX_CONCURRENT_STREAMS: 128, frames.MAX_FRAME_SIZE: 16384,
                      frames.INITIAL_WINDOW_SIZE: 1 << 20, frames.MAX_HEADER_LIST_SIZE: 65536}
    parsed, _ = HyperFrame.parse_frame_header(memoryview(capped[:9]))
    parsed.parse_body(memoryview(capped[9:]))
    assert dict(parsed.settings) == values


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=200).map(bytes.lower), st.binary(max_size=300)),
                max_size=8))
@settings(max_examples=200, deadline=None)
def test_literal_block_reads_back_and_leaves_the_table_alone(fields: list[tuple[bytes, bytes]]) -> None:
    encoder, decoder = Encoder(), Decoder()
    warm = [(b":path", b"/a"), (b"x-seen", b"1")]
    decoder.decode(encoder.encode(warm))  # entries in both tables
    assert decoder.decode(frames.literal_block(fields), raw=True) == fields
    # the encoder's next block still reads right: the literals did not move the decoder's table
    assert decoder.decode(encoder.encode(warm), raw=True) == warm
