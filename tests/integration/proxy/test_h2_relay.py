"""The HTTP/2 relay (H2_RELAY, kedahttp/proxy/h2/relay.py): a client connection whose streams go to one h2c
app passed frame by frame to a connection of its own to that app.

What is checked here is what differs from the full stack: which connections it takes, what it adds to
a request (the forwarded headers) and to the app's SETTINGS (the proxy's limits), per-stream counting
from frame headers, and the way out when a connection turns out to carry streams for another app:
GOAWAY naming the streams taken so far, so a gRPC client sends the others again on a new connection,
which the full stack serves.
The gRPC, plain HTTP/2 and hostile-input suites run against the relay too (their fixtures).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes
from hpack import Encoder

from kedahttp.proxy.h2 import frames
from kedahttp.proxy.sources import Backend
from tests.harness.grpc_echo import EchoApp, EchoClient, channel
from tests.harness.h2_upstream import H2App
from tests.harness.static_source import StaticSource
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

@pytest.fixture
async def apps() -> AsyncIterator[tuple[H2App, H2App]]:
    web, other = await H2App("web").start(), await H2App("other").start()
    yield web, other
    await web.stop()
    await other.stop()


@pytest.fixture
async def relayed(apps: tuple[H2App, H2App], proxy_factory: Any, proxy_settings: Any) -> Any:
    web, other = apps
    source = StaticSource([Backend("default/web", ("web.test",), protocol="h2c"),
                           Backend("default/other", ("other.test",), protocol="h2c")],
                          {"default/web": [web.endpoint], "default/other": [other.endpoint]})
    return await proxy_factory(source, proxy_settings(h2_relay=True, h2_max_concurrent_streams=50))


def _client() -> H2Connection:
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    return conn


def _get(conn: H2Connection, host: bytes, path: bytes) -> int:
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", host),
                            (b":path", path)], end_stream=True)
    return sid


async def _goaway(reader: asyncio.StreamReader, conn: H2Connection) -> ConnectionTerminated:
    """Reads until the proxy's GOAWAY arrives (failing if the connection closes first)."""
    while True:
        data = await asyncio.wait_for(reader.read(65536), 5)
        assert data, "closed without a GOAWAY"
        goaway = next((e for e in conn.receive_data(data) if isinstance(e, ConnectionTerminated)), None)
        if goaway is not None:
            return goaway


async def _read(reader: asyncio.StreamReader, conn: H2Connection, writer: asyncio.StreamWriter,
                until_ended: set[int]) -> list[Any]:
    """Events until every stream of ``until_ended`` ended or was reset."""
    events: list[Any] = []
    while until_ended:
        data = await asyncio.wait_for(reader.read(65536), 5)
        assert data, f"closed with {until_ended} open"
        for event in conn.receive_data(data):
            events.append(event)
            if isinstance(event, StreamEnded | StreamReset):
                until_ended.discard(event.stream_id)
            elif isinstance(event, DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        writer.write(conn.data_to_send())
    return events


async def test_streams_are_relayed_with_forwarded_headers_limits_and_counts(
        relayed: Any, apps: tuple[H2App, H2App]) -> None:
    web, _ = apps
    reader, writer = await asyncio.open_connection("127.0.0.1", relayed.port)
    conn = _client()
    sids = [_get(conn, b"web.test", b"/x%d" % i) for i in range(3)] + [_get(conn, b"web.test", b"/trailers")]
    writer.write(conn.data_to_send())
    events = await _read(reader, conn, writer, set(sids))
    assert relayed.proxy.h2.relayed == 1 and web.connections == 1
    # the app's SETTINGS, capped by the proxy's limits on the way
    changed = next(e for e in events if isinstance(e, RemoteSettingsChanged)).changed_settings
    assert changed[SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 50
    assert changed[SettingCodes.MAX_HEADER_LIST_SIZE].new_value == 65536
    bodies = {e.stream_id: b"" for e in events if isinstance(e, ResponseReceived)}
    for e in events:
        if isinstance(e, DataReceived):
            bodies[e.stream_id] += e.data
    assert bodies[sids[0]] == b"web GET /x0" and bodies[sids[2]] == b"web GET /x2"
    assert any(isinstance(e, TrailersReceived) and e.stream_id == sids[3] for e in events)
    head = web.requests[0]
    assert head[b"x-forwarded-for"] == b"127.0.0.1"
    assert head[b"x-forwarded-proto"] == b"http" and head[b"x-forwarded-host"] == b"web.test"
    # the same HPACK contexts end to end: a second round (all fields now in the tables) still decodes
    again = _get(conn, b"web.test", b"/again")
    writer.write(conn.data_to_send())
    await _read(reader, conn, writer, {again})
    assert web.requests[-1][b":path"] == b"/again" and web.requests[-1][b"x-forwarded-for"] == b"127.0.0.1"
    counters = relayed.counters("default/web")
    assert counters.completed == 5 and counters.in_flight == 0 and counters.by_class[2] == 5
    # a long response is in flight until its end
    big = _get(conn, b"web.test", b"/big?n=2000000")
    writer.write(conn.data_to_send())
    await until(lambda: counters.in_flight == 1, 5, "the long stream in flight")
    await _read(reader, conn, writer, {big})
    assert counters.in_flight == 0 and counters.completed == 6
    writer.close()


async def test_a_stream_for_another_app_is_refused_and_the_client_gets_the_full_stack(
        relayed: Any, apps: tuple[H2App, H2App]) -> None:
    web, other = apps
    reader, writer = await asyncio.open_connection("127.0.0.1", relayed.port)
    conn = _client()
    first = _get(conn, b"web.test", b"/first")
    writer.write(conn.data_to_send())
    await _read(reader, conn, writer, {first})
    elsewhere = _get(conn, b"other.test", b"/y")
    writer.write(conn.data_to_send())
    goaway = await _goaway(reader, conn)
    # below the refused stream: it was not processed, and the client may send it again elsewhere
    assert goaway.error_code == 0 and goaway.last_stream_id == first < elsewhere
    assert await asyncio.wait_for(reader.read(100), 5) == b""  # then closed: no stream was left
    assert other.requests == []  # it reached no app
    assert b"127.0.0.1" in relayed.proxy.h2.mixed
    writer.close()
    # the same client again: the full stack, which routes every stream on its own
    reader, writer = await asyncio.open_connection("127.0.0.1", relayed.port)
    conn = _client()
    a, b = _get(conn, b"web.test", b"/a"), _get(conn, b"other.test", b"/b")
    writer.write(conn.data_to_send())
    await _read(reader, conn, writer, {a, b})
    assert web.requests[-1][b":path"] == b"/a" and other.requests[-1][b":path"] == b"/b"
    assert relayed.proxy.h2.relayed == 1
    assert relayed.counters("default/web").completed == 2 and relayed.counters("default/other").completed == 1
    writer.close()


async def test_grpc_calls_for_two_apps_on_one_channel_all_succeed(proxy_factory: Any, proxy_settings: Any) -> None:
    """grpcio (with its default transparent retries) sends a call the GOAWAY says was not processed again
    on a new connection: the switch to the full stack costs the caller nothing."""
    a_app, b_app = await EchoApp("a").start(), await EchoApp("b", service="other.Echo").start()
    try:
        source = StaticSource(
            [Backend("default/a", ("grpc.test",), ("/test.Echo",), protocol="h2c"),
             Backend("default/b", ("grpc.test",), ("/other.Echo",), protocol="h2c")],
            {"default/a": [a_app.endpoint], "default/b": [b_app.endpoint]})
        running = await proxy_factory(source, proxy_settings(h2_relay=True))
        ch = channel(f"127.0.0.1:{running.port}", "grpc.test", retries=True)
        a, b = EchoClient(ch), EchoClient(ch, "other.Echo")
        assert await a.unary(b"0") == b"a:0"
        assert running.proxy.h2.relayed == 1  # grpcio's first call came after our SETTINGS: relayed
        results = await asyncio.gather(*(c.unary(b"%d" % i) for i in range(1, 11) for c in (a, b)))
        assert sorted(results) == sorted([b"a:%d" % i for i in range(1, 11)] + [b"b:%d" % i for i in range(1, 11)])
        assert running.counters("default/a").completed == 11 and running.counters("default/b").completed == 10
        assert running.counters("default/a").in_flight == 0 and running.counters("default/b").in_flight == 0
        ch2 = channel(f"127.0.0.1:{running.port}", "grpc.test")
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await EchoClient(ch2).fail(b"x")
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        await ch.close()
        await ch2.close()
    finally:
        await a_app.stop()
        await b_app.stop()


async def test_a_relayed_connection_is_asked_to_go_after_its_max_age_and_the_next_takes_another_endpoint(
        apps: tuple[H2App, H2App], proxy_factory: Any, proxy_settings: Any) -> None:
    one, two = apps
    running = await proxy_factory(StaticSource([Backend("default/web", ("web.test",), protocol="h2c")],
                                               {"default/web": [one.endpoint, two.endpoint]}),
                                  proxy_settings(h2_relay=True))
    running.proxy.h2.relay_max_age_seconds = 0.5
    served = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        conn = _client()
        sid = _get(conn, b"web.test", b"/x")
        writer.write(conn.data_to_send())
        events = await _read(reader, conn, writer, {sid})
        served.append(next(e.data for e in events if isinstance(e, DataReceived)))
        goaway = None
        while goaway is None:  # the sweep runs every second
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data, "closed without a GOAWAY"
            goaway = next((e for e in conn.receive_data(data) if isinstance(e, ConnectionTerminated)), None)
        assert goaway.error_code == 0 and goaway.last_stream_id == sid
        assert await asyncio.wait_for(reader.read(100), 5) == b""
        writer.close()
    assert sorted(served) == [b"other GET /x", b"web GET /x"]  # one connection each: round robin
    assert running.proxy.h2.relayed == 2


async def test_a_forged_forwarded_header_is_never_relayed(relayed: Any, apps: tuple[H2App, H2App]) -> None:
    """The relay cannot drop a field from a block without re-encoding it: a request carrying a forwarded
    header goes to the full stack, which replaces it (the client is not in TRUSTED_PROXIES)."""
    web, _ = apps
    forged = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"web.test"), (b":path", b"/f"),
              (b"x-forwarded-for", b"6.6.6.6")]
    # in the first read: the full stack takes the connection
    reader, writer = await asyncio.open_connection("127.0.0.1", relayed.port)
    conn = _client()
    conn.send_headers(1, forged, end_stream=True)
    writer.write(conn.data_to_send())
    await _read(reader, conn, writer, {1})
    assert web.requests[-1][b"x-forwarded-for"] == b"127.0.0.1"
    assert relayed.proxy.h2.relayed == 0
    writer.close()
    # on a relayed connection: not passed on (GOAWAY below it), and the client's next connection, which
    # sends it first, is served by the full stack
    reader, writer = await asyncio.open_connection("127.0.0.1", relayed.port)
    conn = _client()
    first = _get(conn, b"web.test", b"/ok")
    writer.write(conn.data_to_send())
    await _read(reader, conn, writer, {first})
    assert relayed.proxy.h2.relayed == 1
    conn.send_headers(3, forged, end_stream=True)
    writer.write(conn.data_to_send())
    goaway = await _goaway(reader, conn)
    assert goaway.last_stream_id == first
    assert [r[b":path"] for r in web.requests].count(b"/f") == 1  # only the full stack's
    assert b"127.0.0.1" not in relayed.proxy.h2.mixed  # not another app: the next connection may be relayed
    writer.close()


async def test_a_ping_before_the_first_request_is_answered_at_once(relayed: Any, apps: tuple[H2App, H2App]) -> None:
    """A client that waits for our SETTINGS gets them from the relay, which waits for its first request;
    a keep-alive PING meanwhile wants its ACK now: the connection goes to the full stack, which answers
    (it used to leave an ACK of its own unsent until the connection had something else to send)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relayed.port)
    conn = _client()
    writer.write(conn.data_to_send())
    changed = next(e for e in conn.receive_data(await asyncio.wait_for(reader.read(65536), 5))
                   if isinstance(e, RemoteSettingsChanged)).changed_settings
    assert changed[SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 50  # the relay's own SETTINGS
    conn.ping(b"12345678")
    writer.write(conn.data_to_send())
    acked = []
    while not acked:
        data = await asyncio.wait_for(reader.read(65536), 5)
        assert data
        acked = [e for e in conn.receive_data(data) if type(e).__name__ == "PingAckReceived"]
    assert acked[0].ping_data == b"12345678"
    sid = _get(conn, b"web.test", b"/after-ping")
    writer.write(conn.data_to_send())
    await _read(reader, conn, writer, {sid})
    assert apps[0].requests[-1][b":path"] == b"/after-ping" and relayed.proxy.h2.relayed == 0
    writer.close()


async def test_streams_opened_after_the_goaway_are_counted_as_resets(relayed: Any) -> None:
    """A client that keeps a stream open after the relay's GOAWAY and opens streams anyway gets each
    refused, and past 200 a second GOAWAY ENHANCE_YOUR_CALM: refusing costs a decode each, so no flood."""
    encoder = Encoder()

    def headers(sid: int, host: bytes, end: bool) -> bytes:
        block = encoder.encode([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", host),
                                (b":path", b"/")])
        return frames.frame(frames.HEADERS, frames.END_HEADERS | (frames.END_STREAM if end else 0), sid, block)

    reader, writer = await asyncio.open_connection("127.0.0.1", relayed.port)
    writer.write(PREFACE + frames.frame(frames.SETTINGS, 0, 0) + headers(1, b"web.test", end=False))
    await until(lambda: relayed.proxy.h2.relayed == 1, 5, "the connection relayed")
    writer.write(headers(3, b"other.test", end=True)
                 + b"".join(headers(sid, b"web.test", end=True) for sid in range(5, 1005, 2)))
    data = b""
    async with asyncio.timeout(5):
        while chunk := await reader.read(65536):
            data += chunk
    found, _ = frames.scan_frames(data, 0, 1 << 24, True)
    codes = [int.from_bytes(data[at + 13:at + 17], "big") for t, _, _, at, _ in found if t == frames.GOAWAY]
    assert codes == [frames.NO_ERROR, frames.ENHANCE_YOUR_CALM]
    refused = [sid for t, _, sid, _, _ in found if t == frames.RST_STREAM]
    assert 150 < len(refused) <= 210
    writer.close()


async def test_a_client_trickling_before_its_first_request_goes_to_the_full_stack(relayed: Any,
                                                                                  apps: tuple[H2App, H2App]) -> None:
    """The relay plans over all it has read at each read: a client sending many small reads before its
    first request is handed to the full stack after 16, not planned over again for ever."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relayed.port)
    writer.write(PREFACE + frames.frame(frames.SETTINGS, 0, 0))
    for _ in range(40):  # reads, unless the kernel joins some: well over 16 either way
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(frames.window_update(0, 1))
    conn = _client()
    conn.data_to_send()  # its preface and SETTINGS went raw, above
    sid = _get(conn, b"web.test", b"/late")
    writer.write(conn.data_to_send())
    await _read(reader, conn, writer, {sid})
    assert apps[0].requests[-1][b":path"] == b"/late" and relayed.proxy.h2.relayed == 0
    writer.close()
