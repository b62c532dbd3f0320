"""HTTP/2 attacks on the proxy: too many streams, oversized header lists, rapid reset (CVE-2023-44487),
CONTINUATION flood (2024), PING and SETTINGS floods. Each attack ends in GOAWAY for the attacking
connection, bounded work for the app behind, and the proxy keeps answering another client meanwhile."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, RemoteSettingsChanged, ResponseReceived, StreamEnded
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame

from tests.harness.clients import Collector
from tests.harness.h2_upstream import H2App

pytestmark = pytest.mark.timeout(60)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize()
ENHANCE_YOUR_CALM = 11


def request_block(encoder: Encoder, path: bytes = b"/", extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
    return encoder.encode([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"h2.test"),
                           (b":path", path), *(extra or [])])


def headers(sid: int, block: bytes, *flags: str) -> bytes:
    frame = HeadersFrame(sid, block)
    for flag in flags:
        frame.flags.add(flag)
    return frame.serialize()


async def attack(port: int, payload: bytes, timeout: float = 5.0) -> tuple[list[Any], float]:
    """Sends the preface and ``payload``; returns the events the proxy answered with, and how long the
    proxy took to close the connection."""
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_connection(Collector, "127.0.0.1", port)
    t0 = time.monotonic()
    transport.write(PREFACE + payload)
    try:
        await asyncio.wait_for(asyncio.shield(collector.lost), timeout)
    except TimeoutError:
        pytest.fail(f"the proxy kept the attacking connection open for {timeout} s")
    finally:
        transport.close()
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    try:
        events = client.receive_data(bytes(collector.data))
    except Exception:  # what came before the error is enough
        events = []
    return events, time.monotonic() - t0


def goaway(events: list[Any]) -> ConnectionTerminated:
    found = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert found, f"no GOAWAY in {len(events)} events, the last {events[-3:]}"
    return found[0]


async def one_request(port: int, path: bytes = b"/ok") -> tuple[int, float]:
    """A well-behaved client's request: its status and how long it took."""
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"h2.test"),
                            (b":path", path)], end_stream=True)
    writer.write(conn.data_to_send())
    status = 0
    try:
        async with asyncio.timeout(5):
            while True:
                data = await reader.read(65536)
                assert data
                for event in conn.receive_data(data):
                    if isinstance(event, ResponseReceived):
                        status = int(dict(event.headers)[b":status"])
                    if isinstance(event, StreamEnded):
                        return status, time.monotonic() - t0
                writer.write(conn.data_to_send())
    finally:
        writer.close()


async def during(port: int, attack_coro: Any) -> Any:
    """Runs the attack while another client makes requests; they must all be answered promptly."""
    task = asyncio.ensure_future(attack_coro)
    slowest = 0.0
    took_all: list[float] = []
    while not task.done():
        status, took = await one_request(port)
        assert status == 200
        slowest = max(slowest, took)
        took_all.append(round(took, 3))
        await asyncio.sleep(0.02)
    assert slowest < 1.0, f"another client waited {slowest:.2f} s during the attack ({took_all})"
    return task.result()


async def test_settings_advertise_the_limits(h2_proxy: tuple[Any, H2App]) -> None:
    proxy, _ = h2_proxy
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(PREFACE)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    events = conn.receive_data(await asyncio.wait_for(reader.read(65536), 5))
    changed = next(e for e in events if isinstance(e, RemoteSettingsChanged)).changed_settings
    assert changed[SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 128
    assert changed[SettingCodes.MAX_HEADER_LIST_SIZE].new_value == 65536
    writer.close()


async def test_more_streams_than_advertised(h2_proxy: tuple[Any, H2App]) -> None:
    proxy, app = h2_proxy
    encoder = Encoder()
    # 200 open streams (no END_STREAM: the app answers none of them), 128 allowed
    payload = b"".join(headers(2 * i + 1, request_block(encoder), "END_HEADERS") for i in range(200))
    events, _ = await during(proxy.port, attack(proxy.port, payload))
    assert goaway(events).error_code != 0
    assert len(app.requests) <= 128 + 50  # the ones before the limit, and the other client's
    counters = proxy.counters("default/h2")
    await asyncio.sleep(0.2)
    assert counters.in_flight == 0  # the streams of the closed connection are over


async def test_header_list_past_the_limit(h2_proxy: tuple[Any, H2App]) -> None:
    proxy, app = h2_proxy
    block = request_block(Encoder(), extra=[(b"x-big", b"v" * 70_000)])
    chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    payload = headers(1, chunks[0], "END_STREAM")
    for i, chunk in enumerate(chunks[1:], 2):
        frame = ContinuationFrame(1, chunk)
        if i == len(chunks):
            frame.flags.add("END_HEADERS")
        payload += frame.serialize()
    events, _ = await during(proxy.port, attack(proxy.port, payload))
    assert goaway(events).error_code != 0
    assert not [r for r in app.requests if b"x-big" in r]


async def test_rapid_reset(h2_proxy: tuple[Any, H2App]) -> None:
    proxy, app = h2_proxy
    encoder = Encoder()
    payload = b"".join(
        headers(2 * i + 1, request_block(encoder, b"/r"), "END_HEADERS", "END_STREAM")
        + RstStreamFrame(2 * i + 1, error_code=8).serialize()
        for i in range(5000))
    events, took = await during(proxy.port, attack(proxy.port, payload))
    assert goaway(events).error_code == ENHANCE_YOUR_CALM
    assert took < 2.0
    assert len([r for r in app.requests if r[b":path"] == b"/r"]) <= 300  # not 5000: cut off near the limit


async def test_continuation_flood(h2_proxy: tuple[Any, H2App]) -> None:
    proxy, _ = h2_proxy
    payload = headers(1, request_block(Encoder()))  # no END_HEADERS: CONTINUATION frames follow ...
    payload += b"".join(ContinuationFrame(1, b"\x40\x01a\x01b").serialize() for _ in range(20_000))  # without end
    events, took = await during(proxy.port, attack(proxy.port, payload))
    assert goaway(events).error_code != 0
    assert took < 2.0


@pytest.mark.parametrize("frame", [PingFrame(0, b"12345678"), SettingsFrame(0, {SettingCodes.ENABLE_PUSH: 0})],
                         ids=["ping", "settings"])
async def test_control_frame_flood(h2_proxy: tuple[Any, H2App], frame: Any) -> None:
    proxy, _ = h2_proxy
    payload = frame.serialize() * 20_000
    events, took = await during(proxy.port, attack(proxy.port, payload))
    assert goaway(events).error_code == ENHANCE_YOUR_CALM
    assert took < 2.0
