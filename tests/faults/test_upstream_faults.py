"""An upstream that resets, stalls, or drops pooled keep-alive connections: the client gets a correct error
(502, or its connection cut mid-body) or a retried request where a retry is safe, and never a response
that is corrupt or belongs to another request. Bodies are unique per request id, so a mix-up shows.

The proxy runs in-process (real sockets, real pool); the upstream is tests/faults/upstream.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from typing import Any

import pytest

from tests.harness.fault_clients import (
    DISCONNECTED,
    OK,
    STATUS,
    TIMEOUT,
    TRUNCATED,
    HttpConnection,
    Traffic,
    send,
    until,
)
from tests.harness.faulty_upstream import FaultyUpstream, body_for

pytestmark = pytest.mark.timeout(60)

HOST = "app.test"


async def settled(proxy: Any) -> None:
    """Every exchange has ended: nothing counted in flight or held."""
    await until(lambda: proxy.counters().in_flight == 0 and proxy.counters().held == 0, 5, "counters settle")


@pytest.mark.parametrize("mode", ["reset_mid", "reset_mid_chunked"])
async def test_reset_mid_response_cuts_the_client_connection(upstream: FaultyUpstream, proxy_for: Any,
                                                             mode: str) -> None:
    proxy = await proxy_for()
    conn = HttpConnection(proxy.port)
    outcome = await send(conn, "GET", mode, "cut-1", HOST, n=200_000)
    assert outcome.kind == TRUNCATED, outcome  # head and part of the body, then the connection ends
    # the proxy keeps serving, on a new connection, with the right body
    assert (await send(conn, "GET", "ok", "after-1", HOST, n=100_000)).kind == OK
    await settled(proxy)


async def test_a_reset_mid_response_is_counted_as_an_upstream_error(upstream: FaultyUpstream,
                                                                    proxy_for: Any) -> None:
    proxy = await proxy_for()
    outcome = await send(HttpConnection(proxy.port), "GET", "reset_mid", "cut-count", HOST, n=200_000)
    assert outcome.kind == TRUNCATED
    await settled(proxy)
    counters = proxy.counters()
    assert counters.upstream_errors == 1
    assert counters.by_class[2] == 0  # a cut response is not a success


async def test_a_cut_is_seen_by_curl_as_a_partial_transfer(upstream: FaultyUpstream, proxy_for: Any) -> None:
    proxy = await proxy_for()
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-o", "/dev/null", "-H", f"Host: {HOST}",
        f"http://127.0.0.1:{proxy.port}/reset_mid/curl-1?n=200000",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode in (18, 56), err  # 18: partial file; 56: failure receiving data


async def test_a_body_that_ends_with_the_connection_arrives_whole(upstream: FaultyUpstream, proxy_for: Any) -> None:
    proxy = await proxy_for()
    outcome = await send(HttpConnection(proxy.port), "GET", "until_close", "uc-1", HOST, n=150_000)
    assert outcome.kind == OK, outcome
    assert outcome.headers.get("transfer-encoding") == "chunked"  # re-framed for the HTTP/1.1 client


async def test_a_body_that_ends_with_a_reset_is_not_passed_off_as_complete(upstream: FaultyUpstream,
                                                                           proxy_for: Any) -> None:
    proxy = await proxy_for()
    outcome = await send(HttpConnection(proxy.port), "GET", "until_close_reset", "ucr-1", HOST, n=150_000)
    assert outcome.kind in (TRUNCATED, STATUS), outcome  # never a 200 whose body is half of the real one


async def test_a_pooled_connection_closed_as_the_request_arrives_is_retried(upstream: FaultyUpstream,
                                                                            proxy_for: Any) -> None:
    proxy = await proxy_for()
    conn = HttpConnection(proxy.port)
    # the first answer leaves the upstream connection pooled, and the upstream closes it without
    # reading the next request that arrives on it (its keep-alive timeout won the race)
    assert (await send(conn, "GET", "ok", "ka-1", HOST, query="close_next=1")).kind == OK
    outcome = await send(conn, "GET", "ok", "ka-2", HOST, n=5000)
    assert outcome.kind == OK, outcome
    assert upstream.discarded == 1
    assert upstream.processed("ka-2") == 1
    assert proxy.counters().upstream_errors == 1  # it failed once, then went to a fresh connection


async def test_keep_alive_timeout_races_are_retried_invisibly(proxy_for: Any) -> None:
    """An upstream that closes connections idle for 30 ms, and clients pausing about that long: some
    requests land on a pooled connection as the upstream closes it. Every one comes back whole."""
    racy = await FaultyUpstream(idle_close_seconds=0.03).start()
    try:
        proxy = await proxy_for(racy)
        traffic = Traffic(proxy.port, HOST, concurrency=4, prefix="race", pace=0.03, n=3000).start()
        await until(lambda: len(traffic.outcomes) >= 300, 20, "300 requests")
        await traffic.stop()
        assert traffic.by_kind() == {OK: len(traffic.outcomes)}
        assert sorted(r.rid for r in racy.received) == sorted(o.rid for o in traffic.outcomes)
        print(f"keep-alive races: {proxy.counters().upstream_errors} retried of {len(traffic.outcomes)}, "
              f"{racy.connections} upstream connections")
    finally:
        await racy.stop()


async def test_a_get_dropped_after_it_was_read_is_retried_only_on_a_reused_connection(
        upstream: FaultyUpstream, proxy_for: Any) -> None:
    proxy = await proxy_for()
    conn = HttpConnection(proxy.port)
    # a fresh upstream connection that closes without a byte: the upstream failed; 502
    fresh = await send(conn, "GET", "drop_first", "df-1", HOST)
    assert (fresh.kind, fresh.status) == (STATUS, 502), fresh
    assert upstream.processed("df-1") == 1
    # the same on a pooled connection looks like a stale keep-alive: an idempotent GET is sent again
    assert (await send(conn, "GET", "ok", "df-warm", HOST)).kind == OK
    reused = await send(conn, "GET", "drop_first", "df-2", HOST)
    assert reused.kind == OK, reused
    assert upstream.processed("df-2") == 2


async def test_a_post_is_never_sent_twice(upstream: FaultyUpstream, proxy_for: Any) -> None:
    proxy = await proxy_for()
    conn = HttpConnection(proxy.port)
    assert (await send(conn, "GET", "ok", "pd-warm", HOST)).kind == OK
    body = random.randbytes(3000)
    outcome = await send(conn, "POST", "drop_first", "pd-1", HOST, body=body)
    # the upstream read the POST (and may have acted on it): the client must hear 502, not a second try
    assert upstream.processed("pd-1") == 1
    assert (outcome.kind, outcome.status) == (STATUS, 502), outcome


async def test_pipelined_requests_behind_a_cut_response_are_not_answered_or_sent(
        upstream: FaultyUpstream, proxy_for: Any) -> None:
    proxy = await proxy_for()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    for mode, rid in (("ok", "pp-1"), ("reset_mid", "pp-2"), ("ok", "pp-3")):
        writer.write(f"GET /{mode}/{rid}?n=20000 HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    async with asyncio.timeout(10):
        data = await reader.read(-1)
    writer.close()
    first = body_for("pp-1", 20000)
    head_end = data.index(b"\r\n\r\n") + 4
    assert data[:head_end].startswith(b"HTTP/1.1 200") and data[head_end:head_end + len(first)] == first
    rest = data[head_end + len(first):]
    second_head_end = rest.index(b"\r\n\r\n") + 4
    assert rest.startswith(b"HTTP/1.1 200")
    partial = rest[second_head_end:]
    assert 0 < len(partial) < 20000 and body_for("pp-2", 20000).startswith(partial)  # cut, and its own bytes
    assert upstream.processed("pp-3") == 0  # never forwarded: the client knows it was not answered
    await settled(proxy)


async def _stalled_request(proxy: Any, upstream: FaultyUpstream, mode: str, rid: str) -> tuple[Any, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(f"GET /{mode}/{rid}?n=50000 HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    await until(lambda: rid in upstream.stalled, 5, "the upstream stalls")
    return reader, writer


@pytest.mark.parametrize("mode", ["stall_head", "stall_body"])
async def test_a_stalled_upstream_holds_only_its_own_request(upstream: FaultyUpstream, proxy_for: Any,
                                                            mode: str) -> None:
    proxy = await proxy_for()
    reader, writer = await _stalled_request(proxy, upstream, mode, "st-1")
    others = Traffic(proxy.port, HOST, concurrency=4, prefix="st-other", n=2000).start()
    await until(lambda: len(others.outcomes) >= 100, 10, "other requests served meanwhile")
    await others.stop()
    assert others.by_kind() == {OK: len(others.outcomes)}
    # the proxy has no response timeout (CONTRACT is silent), so the client gives up; this one resets
    received = b""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.3):
            while chunk := await reader.read(65536):
                received += chunk
    if mode == "stall_body":
        assert received.startswith(b"HTTP/1.1 200") and len(received) < 50000
    else:
        assert received == b""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    # the client's departure reaches the upstream: its connection is closed, nothing stays counted
    await until(lambda: "st-1" in upstream.gone, 5, "upstream connection closed after the client left")
    await settled(proxy)


async def test_a_client_that_closes_while_the_upstream_stalls_stops_counting(upstream: FaultyUpstream,
                                                                             proxy_for: Any) -> None:
    proxy = await proxy_for()
    _, writer = await _stalled_request(proxy, upstream, "stall_head", "st-fin")
    writer.close()  # what curl --max-time, browsers and most HTTP libraries do when they give up
    await until(lambda: "st-fin" in upstream.gone, 3, "upstream connection closed after the client left")
    await settled(proxy)


async def test_a_storm_of_upstream_faults_never_mixes_up_responses(upstream: FaultyUpstream,
                                                                   proxy_for: Any) -> None:
    """Eight clients, 320 requests: every answer is exact for its own id, or a correct error."""
    proxy = await proxy_for()
    rng = random.Random(8)
    modes = [("ok", ""), ("ok", "chunked=1"), ("ok", "close=1"), ("ok", "close_next=1"), ("until_close", ""),
             ("reset_mid", ""), ("reset_mid_chunked", ""), ("drop_first", "")]
    plan = []
    for i in range(320):
        mode, query = rng.choice(modes)
        method = "POST" if mode == "ok" and rng.random() < 0.3 else "GET"
        body = rng.randbytes(rng.choice([0, 100, 70_000])) if method == "POST" else b""
        sizes = [777, 40_000, 300_000] if mode.startswith("reset") else [0, 1, 777, 40_000, 300_000]
        plan.append((mode, query, method, f"s{i}", rng.choice(sizes), body))
    queue = list(reversed(plan))
    outcomes: dict[str, Any] = {}

    async def client() -> None:
        conn = HttpConnection(proxy.port)
        while queue:
            mode, query, method, rid, n, body = queue.pop()
            outcomes[rid] = await send(conn, method, mode, rid, HOST, n=n, query=query, body=body)
            if outcomes[rid].kind != OK:
                conn.close()
        conn.close()

    await asyncio.gather(*(client() for _ in range(8)))
    wrong = []
    for mode, _, method, rid, _, _ in plan:
        o = outcomes[rid]
        kind = o.kind if o.kind != STATUS else o.status
        if mode in ("reset_mid", "reset_mid_chunked"):
            allowed: set[Any] = {TRUNCATED, 502}
        elif mode == "drop_first" or method == "POST":
            allowed = {OK, 502}  # a POST on a pooled connection the upstream dropped is not retried
        else:
            allowed = {OK}
        if kind not in allowed:
            wrong.append((mode, method, rid, kind, o.detail))
        limit = 2 if (mode == "drop_first" and method == "GET") else 1
        if upstream.processed(rid) > limit:
            wrong.append((mode, method, rid, "processed", upstream.processed(rid)))
    assert not wrong, wrong[:20]
    kinds = [o.kind for o in outcomes.values()]
    assert DISCONNECTED not in kinds and TIMEOUT not in kinds
    assert kinds.count(OK) > 150
    await settled(proxy)
    counters = proxy.counters()
    assert counters.started == counters.completed == len(plan)
