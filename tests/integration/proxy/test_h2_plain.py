"""Plain HTTP/2 through the proxy: curl --http2-prior-knowledge and h2load against an h2c app.

Also the hand-over itself: HTTP/1.1 and HTTP/2 clients on the same port, a preface split across reads,
flow control on a large body, trailers, and graceful drain (GOAWAY, open streams finish); and HTTP/2
clients of HTTP/1.1 apps, over keep-alive connections (counted on the app's side).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from typing import Any

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
from hyperframe.frame import DataFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame

from kedahttp.process.settings import parse_networks
from kedahttp.proxy.sources import Backend
from tests.harness.bus_log import aggregated, messages_on
from tests.harness.faulty_upstream import FaultyUpstream, body_for
from tests.harness.h2_upstream import H2App
from tests.harness.static_source import StaticSource
from tests.harness.upstreams import FixedUpstream
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["full", "relay"])
async def proxied(request: Any, h2app: H2App, upstream: Any, proxy_factory: Any, proxy_settings: Any) -> Any:
    """web.test: an h2c app; old.test: an HTTP/1.1 app (the proxy suite's aiohttp upstream). Each test
    runs with the full stack and with the relay on (H2_RELAY, docs/http2.md)."""
    backends = [Backend("default/web", ("web.test",), protocol="h2c"),
                Backend("default/old", ("old.test",))]
    return await proxy_factory(StaticSource(backends, {"default/web": [h2app.endpoint],
                                                       "default/old": [upstream.endpoint]}),
                               proxy_settings(h2_relay=request.param == "relay"))


async def run(*args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode("latin-1"), err.decode("latin-1")


async def test_curl_prior_knowledge(proxied: Any, h2app: H2App, tmp_path: Any) -> None:
    url = f"http://127.0.0.1:{proxied.port}"
    code, out, err = await run("curl", "-sS", "-i", "--http2-prior-knowledge", "-H", "Host: web.test",
                               f"{url}/hello?x=1")
    assert code == 0, err
    assert out.startswith("HTTP/2 200")
    assert out.endswith("web GET /hello?x=1")
    assert h2app.requests[-1][b":authority"] == b"web.test"
    # a body larger than every window on the way, echoed back whole
    body = "y" * (3 * 1024 * 1024)
    (tmp_path / "body").write_text(body)
    code, out, err = await run("curl", "-sS", "--http2-prior-knowledge", "-H", "Host: web.test",
                               "--data-binary", f"@{tmp_path / 'body'}", f"{url}/echo")
    assert code == 0, err
    assert out == body
    code, out, err = await run("curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w",
                               "%{http_code} %{size_download}", "-H", "Host: web.test", f"{url}/big?n=20000000")
    assert (code, out) == (0, "200 20000000"), err
    # the same port still serves HTTP/1.1
    code, out, err = await run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: nope.test", url)
    assert out == "404"


async def h2load(port: int, authority: str, path: str, requests: int, connections: int, streams: int) -> str:
    """Runs h2load (``requests`` on ``connections`` with ``streams`` each); every request must succeed."""
    binary = shutil.which("h2load")
    if binary is None:
        pytest.fail("h2load missing: `make bench-tools` installs nghttp2-client")
    code, out, err = await run(binary, "-n", str(requests), "-c", str(connections), "-m", str(streams),
                               "-H", f":authority: {authority}", f"http://127.0.0.1:{port}{path}")
    assert code == 0, err
    assert f"{requests} succeeded, 0 failed, 0 errored" in out, out
    return out


async def test_h2load_many_streams_on_few_connections(proxied: Any, h2app: H2App) -> None:
    await h2load(proxied.port, "web.test", "/x", 2000, 2, 20)
    counters = proxied.counters("default/web")
    assert counters.completed == 2000 and counters.in_flight == 0
    assert h2app.connections <= 4  # streams were multiplexed onto shared upstream connections


async def test_streams_in_flight_under_load_match_the_aggregator(proxied: Any, h2app: H2App) -> None:
    """h2load keeps 4 x 25 streams open on an app that answers each after 300 ms: the scaler's aggregator,
    folding the proxy's reports from the bus, sees 100 in flight while the load runs and never more, and
    every stream started and completed exactly once in the reports."""
    load = asyncio.ensure_future(h2load(proxied.port, "web.test", "/sleep?ms=300", 800, 4, 25))
    bus = proxied.proxy.settings.bus
    seen: list[int] = []
    while not load.done():
        await asyncio.sleep(0.25)
        seen.append((await aggregated(bus)).metrics("default/web", time.time()).in_flight)
    await load  # every call succeeded
    assert max(seen) == 100 and seen.count(100) >= 3, seen  # 2.4 s of load, sampled every 0.25 s
    await asyncio.sleep(0.4)  # a few report intervals
    assert (await aggregated(bus)).metrics("default/web", time.time()).in_flight == 0
    reports = [m for m in await messages_on(bus) if hasattr(m, "seq")]
    started = sum(b.started for r in reports for b in r.backends if b.backend == "default/web")
    completed = sum(b.completed for r in reports for b in r.backends if b.backend == "default/web")
    assert (started, completed) == (800, 800)


def _h2_client() -> H2Connection:
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    return conn


def _request(conn: H2Connection, host: bytes, path: bytes) -> int:
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", host),
                            (b":path", path)], end_stream=True)
    return sid


async def _collect(reader: asyncio.StreamReader, conn: H2Connection, writer: Any, want: int) -> dict[int, Any]:
    """Reads until ``want`` streams ended: stream -> [headers, body, trailers]."""
    out: dict[int, Any] = {}
    ended = 0
    while ended < want:
        data = await reader.read(65536)
        assert data, "the proxy closed the connection"
        for event in conn.receive_data(data):
            if isinstance(event, ResponseReceived):
                out[event.stream_id] = [dict(event.headers), b"", None]
            elif isinstance(event, DataReceived):
                out[event.stream_id][1] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, TrailersReceived):
                out[event.stream_id][2] = dict(event.headers)
            elif isinstance(event, StreamEnded):
                ended += 1
        writer.write(conn.data_to_send())
    return out


async def test_preface_split_across_reads_trailers_and_routing_per_stream(proxied: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = _h2_client()
    first = conn.data_to_send()
    for cut in (3, 16, 20):  # "PRI", inside the request line's CRLFs, inside "SM"
        writer.write(first[:cut])
        await writer.drain()
        await asyncio.sleep(0.05)
        first = first[cut:]
    writer.write(first)
    a = _request(conn, b"web.test", b"/trailers")
    b = _request(conn, b"old.test", b"/")  # an HTTP/1.1 app
    c = _request(conn, b"none.test", b"/")
    writer.write(conn.data_to_send())
    got = await asyncio.wait_for(_collect(reader, conn, writer, 3), 10)
    assert got[a][0][b":status"] == b"200" and got[a][1] == b"web GET /trailers"
    assert got[a][2] == {b"x-trailer": b"yes"}
    assert got[b][0][b":status"] == b"200" and b'"path": "/"' in got[b][1]  # the HTTP/1.1 app answers
    assert got[c][0][b":status"] == b"404"
    writer.close()


async def test_drain_sends_goaway_and_lets_open_streams_finish(proxied: Any, h2app: H2App) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    conn = _h2_client()
    sid = _request(conn, b"web.test", b"/big?n=3000000")
    writer.write(conn.data_to_send())
    # read the first bytes only, so the stream is still open when the drain begins
    events = conn.receive_data(await reader.read(65536))
    writer.write(conn.data_to_send())
    await until(lambda: proxied.counters("default/web").in_flight == 1, 5, "the stream in flight")
    component = proxied.proxy.components[-1]
    await component.stop_accepting()
    drain = asyncio.ensure_future(component.drain(asyncio.get_running_loop().time() + 10))
    size = sum(len(e.data) for e in events if isinstance(e, DataReceived))
    goaway = None
    ended = False
    while not ended:
        data = await asyncio.wait_for(reader.read(65536), 5)
        assert data, "closed before the stream ended"
        for event in conn.receive_data(data):
            if isinstance(event, ConnectionTerminated):
                goaway = event
                conn.state_machine.state = type(conn.state_machine.state).CLIENT_OPEN  # keep reading
            elif isinstance(event, DataReceived):
                size += len(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                ended = True
        writer.write(conn.data_to_send())
    assert goaway is not None and goaway.error_code == 0 and goaway.last_stream_id == sid
    assert size == 3000000
    await asyncio.wait_for(drain, 5)
    assert await reader.read(100) == b""  # closed once its last stream ended
    writer.close()


@pytest.mark.parametrize("proxied", ["full"], indirect=True)  # the shared upstream pool: the full stack's
async def test_idle_connections_are_closed_both_sides(proxied: Any, h2app: H2App) -> None:
    side = proxied.proxy.h2
    side.idle_timeout_seconds = 0.5
    side.pool.idle_timeout_seconds = 0.5
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    conn = _h2_client()
    _request(conn, b"web.test", b"/x")
    writer.write(conn.data_to_send())
    got = await asyncio.wait_for(_collect(reader, conn, writer, 1), 5)
    assert next(iter(got.values()))[0][b":status"] == b"200"
    assert side.pool.conns  # an upstream connection, now idle
    t0 = time.monotonic()
    goaway = None
    while goaway is None:
        data = await asyncio.wait_for(reader.read(65536), 5)
        assert data, "closed without a GOAWAY"
        goaway = next((e for e in conn.receive_data(data) if isinstance(e, ConnectionTerminated)), None)
    assert goaway.error_code == 0
    assert await asyncio.wait_for(reader.read(100), 5) == b""
    assert 0.4 < time.monotonic() - t0 < 3
    await until(lambda: not side.pool.conns, 5, "the idle upstream connection closed")
    writer.close()


@pytest.mark.parametrize("proxied", ["full"], indirect=True)  # relayed, the app's GOAWAY is the client's
async def test_app_reset_reaches_the_client_and_app_goaway_moves_to_a_new_connection(
        proxied: Any, h2app: H2App) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    conn = _h2_client()
    sid = _request(conn, b"web.test", b"/reset")
    writer.write(conn.data_to_send())
    reset = None
    while reset is None:
        data = await asyncio.wait_for(reader.read(65536), 5)
        assert data
        reset = next((e for e in conn.receive_data(data) if isinstance(e, StreamReset)), None)
    assert (reset.stream_id, reset.error_code) == (sid, 8)
    first = h2app.connections
    bye = _request(conn, b"web.test", b"/goaway")
    writer.write(conn.data_to_send())
    got = await asyncio.wait_for(_collect(reader, conn, writer, 1), 5)
    assert got[bye][1] == b"bye"
    after = _request(conn, b"web.test", b"/after")  # the app's GOAWAY is not the client's: it goes on
    writer.write(conn.data_to_send())
    got = await asyncio.wait_for(_collect(reader, conn, writer, 1), 5)
    assert got[after][1] == b"web GET /after"
    assert h2app.connections == first + 1  # on a new upstream connection
    counters = proxied.counters("default/web")
    assert counters.in_flight == 0 and counters.completed == 3
    writer.close()


async def test_stream_and_header_limits_come_from_the_settings(h2app: H2App, proxy_factory: Any,
                                                               proxy_settings: Any) -> None:
    settings = proxy_settings(h2_max_concurrent_streams=16, h2_max_header_list_bytes=8192,
                              h2_stream_window_bytes=100_000, h2_connection_window_bytes=1_000_000,
                              h2_resets_per_second=20, h2_control_frames_per_second=30)
    running = await proxy_factory(StaticSource([Backend("default/web", ("web.test",), protocol="h2c")],
                                               {"default/web": [h2app.endpoint]}), settings)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    conn = _h2_client()
    writer.write(conn.data_to_send())
    events = conn.receive_data(await asyncio.wait_for(reader.read(65536), 5))
    changed = next(e for e in events if isinstance(e, RemoteSettingsChanged)).changed_settings
    assert changed[SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 16
    assert changed[SettingCodes.MAX_HEADER_LIST_SIZE].new_value == 8192
    assert changed[SettingCodes.INITIAL_WINDOW_SIZE].new_value == 100_000
    assert conn.outbound_flow_control_window == 1_000_000
    writer.close()

    async def goaway_code(payload: bytes) -> int:
        """What the proxy's GOAWAY says after a fresh connection sends ``payload`` (0 if it sent none)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        client = _h2_client()
        writer.write(client.data_to_send() + payload)
        data = b""
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                data += chunk
        writer.close()
        found = [e for e in client.receive_data(data) if isinstance(e, ConnectionTerminated)]
        return (found[0].error_code or 0) if found else 0

    pings = b"".join(PingFrame(0, b"%08d" % i).serialize() for i in range(40))
    assert await goaway_code(pings) == 11  # ENHANCE_YOUR_CALM past 30 a second, not the default 200
    block = Encoder().encode([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"web.test"),
                              (b":path", b"/")])
    pairs = b""
    for sid in range(1, 61, 2):
        frame = HeadersFrame(sid, block)
        frame.flags.add("END_HEADERS")
        pairs += frame.serialize() + RstStreamFrame(sid, 8).serialize()
    assert await goaway_code(pairs) == 11  # 30 resets, past 20 a second


async def test_http2_client_to_an_http1_app(proxied: Any, tmp_path: Any) -> None:
    url = f"http://127.0.0.1:{proxied.port}"
    code, out, err = await run("curl", "-sS", "--http2-prior-knowledge", "-H", "Host: old.test",
                               "-H", "X-User: ann", f"{url}/headers?q=1")
    assert code == 0, err
    seen = json.loads(out)
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert seen["path"] == "/headers?q=1" and seen["method"] == "GET"
    assert headers["host"] == "old.test" and headers["x-user"] == "ann"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    body = tmp_path / "body"
    body.write_bytes(b"z" * (3 * 1024 * 1024))
    code, out, err = await run("curl", "-sS", "--http2-prior-knowledge", "-H", "Host: old.test",
                               "--data-binary", f"@{body}", f"{url}/sink")
    assert (code, out) == (0, str(3 * 1024 * 1024)), err
    code, out, err = await run("curl", "-sS", "-i", "--http2-prior-knowledge", "-o", "/dev/null", "-w",
                               "%{http_code} %{size_download}", "-H", "Host: old.test", f"{url}/big?n=20000000")
    assert (code, out) == (0, "200 20000000"), err
    counters = proxied.counters("default/old")
    assert counters.completed == 3 and counters.in_flight == 0


async def test_forwarded_headers_over_http2_follow_trusted_proxies(upstream: Any, proxy_factory: Any,
                                                                   proxy_settings: Any) -> None:
    """An HTTP/2 client gets the same forwarded-header rule as an HTTP/1.1 one: from an untrusted peer every
    X-Forwarded-*/Forwarded header is replaced; from a trusted one, kept and appended to."""
    source = StaticSource([Backend("default/old", ("old.test",))], {"default/old": [upstream.endpoint]})
    forged = ("-H", "X-Forwarded-For: 6.6.6.6", "-H", "X-Forwarded-Proto: https", "-H", "X-Real-IP: 6.6.6.6",
              "-H", "Forwarded: for=6.6.6.6;proto=https")
    for trusted, expected in (("", {"x-forwarded-for": "127.0.0.1", "x-forwarded-proto": "http"}),
                              ("127.0.0.0/8", {"x-forwarded-for": "6.6.6.6, 127.0.0.1", "x-forwarded-proto": "https",
                                               "x-real-ip": "6.6.6.6"})):
        running = await proxy_factory(source, proxy_settings(trusted_proxies=parse_networks(trusted)) if trusted else None)
        code, out, err = await run("curl", "-sS", "--http2-prior-knowledge", "-H", "Host: old.test", *forged,
                                   f"http://127.0.0.1:{running.port}/headers")
        assert code == 0, err
        seen: dict[str, list[str]] = {}
        for k, v in json.loads(out)["headers"]:
            seen.setdefault(k.lower(), []).append(v)
        for name, value in expected.items():
            assert seen.get(name) == [value], (trusted, name, seen.get(name))
        if not trusted:
            assert "x-real-ip" not in seen and "forwarded" not in seen


async def test_malformed_fields_are_reset_and_never_reach_an_http1_app(proxied: Any, upstream: Any) -> None:
    """A field that could split an HTTP/1.1 head (CR LF in a value), an uppercase name or a connection-specific
    field: the stream is reset with PROTOCOL_ERROR before any app sees it, and the connection goes on."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    base = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"old.test"), (b":path", b"/headers")]
    bad = [[*base, (b"x-a", b"b\r\nx-injected: 1")], [*base, (b"X-Upper", b"1")], [*base, (b"connection", b"close")]]
    raw = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize()
    for i, fields in enumerate(bad):
        frame = HeadersFrame(2 * i + 1, Encoder().encode(fields))
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        raw += frame.serialize()
    writer.write(raw)
    resets: dict[int, int] = {}
    async with asyncio.timeout(5):
        data = b""
        while len(resets) < 3:
            chunk = await reader.read(65536)
            assert chunk
            data += chunk
            # read the proxy's frames by their headers: the h2 client did not open these streams itself
            at = 0
            while len(data) - at >= 9:
                length = int.from_bytes(data[at:at + 3], "big")
                if len(data) - at - 9 < length:
                    break
                if data[at + 3] == 3:  # RST_STREAM
                    sid = int.from_bytes(data[at + 5:at + 9], "big")
                    resets[sid] = int.from_bytes(data[at + 9:at + 13], "big")
                at += 9 + length
    assert resets == {1: 1, 3: 1, 5: 1}  # PROTOCOL_ERROR each
    assert upstream.requests == []
    writer.close()
    code, out, err = await run("curl", "-sS", "--http2-prior-knowledge", "-H", "Host: old.test",
                               f"http://127.0.0.1:{proxied.port}/headers")
    assert code == 0 and json.loads(out)["path"] == "/headers", err
    assert len(upstream.requests) == 1


# -- HTTP/2 clients of HTTP/1.1 apps: keep-alive connections (h1_leg.py) ---------------------------------

async def _h1_app(proxy_factory: Any, endpoint: str) -> Any:
    """The proxy in front of an HTTP/1.1 app at ``endpoint``, as old.test."""
    return await proxy_factory(StaticSource([Backend("default/old", ("old.test",))], {"default/old": [endpoint]}))


async def _streams(reader: asyncio.StreamReader, writer: Any, conn: H2Connection, *paths: bytes,
                   method: bytes = b"GET", body: bytes | None = None) -> list[Any]:
    """Sends one stream per path to old.test at once and waits for them all: [headers, body, trailers] each."""
    sids = []
    for path in paths:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(b":method", method), (b":scheme", b"http"), (b":authority", b"old.test"),
                                (b":path", path)], end_stream=body is None)
        if body is not None:
            conn.send_data(sid, body, end_stream=True)
        sids.append(sid)
    writer.write(conn.data_to_send())
    got = await asyncio.wait_for(_collect(reader, conn, writer, len(sids)), 10)
    return [got[sid] for sid in sids]


async def test_http2_streams_to_an_http1_app_reuse_keep_alive_connections(faulty: FaultyUpstream,
                                                                           proxy_factory: Any) -> None:
    running = await _h1_app(proxy_factory, faulty.endpoint)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    conn = _h2_client()
    for i in range(20):  # one after another: one connection to the app
        (got,) = await _streams(reader, writer, conn, b"/ok/seq-%d?n=3000" % i)
        assert got[0][b":status"] == b"200" and got[1] == body_for(f"seq-{i}", 3000)
    assert faulty.connections == 1
    for r in range(5):  # eight at once (the app takes 20 ms each): eight connections, reused round after round
        got = await _streams(reader, writer, conn, *(b"/ok/par-%d-%d?n=3000&delay=20" % (r, i) for i in range(8)))
        assert [g[1] for g in got] == [body_for(f"par-{r}-{i}", 3000) for i in range(8)]
    assert faulty.connections == 8
    await h2load(running.port, "old.test", "/ok/load?n=100", 600, 2, 4)
    assert faulty.connections == 8  # never more streams at once than idle connections
    counters = running.counters("default/old")
    assert counters.completed == 20 + 40 + 600 and counters.in_flight == 0
    side = running.proxy.h2
    side.h1_pool.idle_timeout_seconds = 0.5  # the idle ones close after the (h2c pool's) idle timeout
    await until(lambda: not side.h1_pool.idle and faulty.open_connections == 0, 5, "the idle connections closed")
    writer.close()


async def test_an_http1_app_closing_an_idle_connection_loses_no_request(faulty: FaultyUpstream,
                                                                        proxy_factory: Any) -> None:
    running = await _h1_app(proxy_factory, faulty.endpoint)
    side = running.proxy.h2
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    conn = _h2_client()
    # the app closes its connection, unread, as the next request arrives (its keep-alive timeout firing just
    # then): that request goes again, on a new connection
    await _streams(reader, writer, conn, b"/ok/warm?close_next=1")
    (got,) = await _streams(reader, writer, conn, b"/ok/again?n=500")
    assert got[0][b":status"] == b"200" and got[1] == body_for("again", 500)
    assert (faulty.discarded, faulty.processed("again"), faulty.connections) == (1, 1, 2)
    # the app closes connections idle for 0.3 s: the proxy sees it and opens a new one for the next request
    faulty.idle_close_seconds = 0.3
    await _streams(reader, writer, conn, b"/ok/before-idle")
    await until(lambda: not any(side.h1_pool.idle.values()), 5, "the closed idle connection forgotten")
    (got,) = await _streams(reader, writer, conn, b"/ok/after-idle?n=500")
    assert got[0][b":status"] == b"200" and got[1] == body_for("after-idle", 500)
    assert faulty.connections == 3
    assert running.counters("default/old").completed == 4
    writer.close()


async def test_a_request_the_app_may_have_acted_on_is_not_sent_twice(faulty: FaultyUpstream,
                                                                     proxy_factory: Any) -> None:
    """A reused connection closed before any byte of the response: only an idempotent request whose body
    was not written yet goes again (the app may have acted on the request before closing)."""
    running = await _h1_app(proxy_factory, faulty.endpoint)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    conn = _h2_client()
    await _streams(reader, writer, conn, b"/ok/warm-1")
    # drop_first: the app reads the whole request, then closes without a byte (a crash after acting on it)
    (got,) = await _streams(reader, writer, conn, b"/drop_first/get-1?n=100")
    assert got[0][b":status"] == b"200" and got[1] == body_for("get-1", 100)
    assert faulty.processed("get-1") == 2  # a GET may be: it is sent again
    await _streams(reader, writer, conn, b"/ok/warm-2")
    (got,) = await _streams(reader, writer, conn, b"/drop_first/post-1", method=b"POST", body=b"order=1")
    assert got[0][b":status"] == b"502" and faulty.processed("post-1") == 1  # a POST is never sent twice
    await _streams(reader, writer, conn, b"/ok/warm-3?close_next=1")
    (got,) = await _streams(reader, writer, conn, b"/ok/put-1", method=b"PUT", body=b"p" * 1000)
    assert got[0][b":status"] == b"502"  # its body was written and given back to the client: not kept
    assert faulty.discarded == 1 and faulty.processed("put-1") == 0
    writer.close()


@pytest.mark.parametrize(("response", "connections"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 3),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 3),  # HTTP/1.0 without keep-alive
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbad", 3),
])
async def test_a_connection_is_not_reused_after_a_response_that_ends_it(proxy_factory: Any, response: bytes,
                                                                 connections: int) -> None:
    """``Connection: close``, HTTP/1.0, or a second response to one request (which never reaches a stream)."""
    async with FixedUpstream(response) as app:  # keeps every connection open and answers every request on it
        running = await _h1_app(proxy_factory, app.endpoint)
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        conn = _h2_client()
        for _ in range(3):
            (got,) = await _streams(reader, writer, conn, b"/x")
            assert got[0][b":status"] == b"200" and got[1] == b"ok"
        assert app.connections == connections
        writer.close()


async def test_an_http1_body_that_ends_with_the_connection_reaches_the_http2_client_whole(proxy_factory: Any) -> None:
    """An HTTP/1.1 app that answers without a length or chunks and closes (RFC 9112 6.3): the close is the
    end of the body, and the HTTP/2 client gets all of it and a clean end of stream, not a reset."""
    body = bytes(range(256)) * 400

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    endpoint = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    running = await proxy_factory(StaticSource([Backend("default/eof", ("eof.test",))], {"default/eof": [endpoint]}))
    try:
        for _ in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
            conn = _h2_client()
            _request(conn, b"eof.test", b"/")
            writer.write(conn.data_to_send())
            out = await asyncio.wait_for(_collect(reader, conn, writer, 1), 5)
            writer.close()
            head, got, _ = out[1]
            assert head[b":status"] == b"200" and got == body
        assert running.counters("default/eof").completed == 10
    finally:
        server.close()


async def test_a_body_longer_than_its_content_length_never_reaches_an_http1_app(proxied: Any, upstream: Any) -> None:
    """Request smuggling through the HTTP/1.1 leg: content-length 5 and a DATA frame carrying 5 bytes and a
    second request. Passed on as it came, the app would read two requests; the stream is reset
    (PROTOCOL_ERROR, RFC 9113 8.1.1) and the app sees neither."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxied.port)
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"old.test"), (b":path", b"/headers"),
              (b"content-length", b"5")]
    head = HeadersFrame(1, Encoder().encode(fields))
    head.flags.add("END_HEADERS")
    body = DataFrame(1, b"hello" + b"GET /smuggled HTTP/1.1\r\nhost: old.test\r\n\r\n")
    body.flags.add("END_STREAM")
    writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize() + head.serialize()
                 + body.serialize())
    data = b""
    async with asyncio.timeout(5):
        while b"\x00\x00\x04\x03\x00\x00\x00\x00\x01" not in data:  # RST_STREAM on stream 1
            chunk = await reader.read(65536)
            assert chunk, "closed without a reset"
            data += chunk
    at = data.index(b"\x00\x00\x04\x03\x00\x00\x00\x00\x01")
    assert int.from_bytes(data[at + 9:at + 13], "big") == 1  # PROTOCOL_ERROR
    writer.close()
    await asyncio.sleep(0.3)
    assert not [r for r in upstream.requests if "smuggled" in r["path"]]
