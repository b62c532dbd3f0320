"""Regression tests for the issue-8 fixes that the xfail tests elsewhere in tests/hostile do not reach: an
upstream answering twice to pipelined requests, an accepted upgrade with bytes sent before its 101, the
lingering close after a refused request, a half-close after the response began, and the pure rules of
http1.py (Connection tokens, transfer codings)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kedahttp.proxy import http1
from kedahttp.proxy.http1 import BadRequest
from tests.harness.clients import TWICE, VALID, VALID_LAST, Collector, send
from tests.harness.proxy import RunningProxy, proxy_to
from tests.harness.recorder import Recorder
from tests.harness.upstreams import FixedUpstream, ScriptedUpstream
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)


# -- an upstream answering twice, with the next request already waiting --------------------------------------


async def test_pipelined_requests_never_get_the_extra_answer_of_an_upstream_answering_twice(
    stopping: list[RunningProxy], caplog: pytest.LogCaptureFixture,
) -> None:
    # The first answer completes, the next pipelined request takes the pooled connection within the same
    # read, and the extra response follows in that read: it must not become the next request's answer.
    async with FixedUpstream(TWICE) as up:
        proxy = await proxy_to(up.port)
        stopping.append(proxy)
        for _ in range(3):
            out = await send(proxy.port, VALID + VALID + VALID_LAST)
            assert [r.body for r in out.responses()] == [b"one", b"one", b"one"]
        assert proxy.counters().upstream_errors >= 3
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []


# -- upgrades ---------------------------------------------------------------------------------------------------


async def test_bytes_sent_before_the_101_reach_an_upstream_that_accepts(stopping: list[RunningProxy]) -> None:
    async def accept_late_then_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.1)  # the client's early bytes are at the proxy by now
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
        while data := await reader.read(65536):
            writer.write(data)

    async with ScriptedUpstream(accept_late_then_echo) as up:
        proxy = await proxy_to(up.port)
        stopping.append(proxy)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nearly")
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            assert await reader.readexactly(5) == b"early"
            writer.write(b"later")
            assert await reader.readexactly(5) == b"later"
        writer.close()


# -- lingering close --------------------------------------------------------------------------------------------


class KeepsReading(Collector):
    """A client that goes on after the proxy's EOF (a half-close), as one still sending a body does."""

    def eof_received(self) -> bool:
        self.eof = True
        return True


@pytest.mark.parametrize(("head", "status"), [
    (b"POST /a HTTP/1.1\r\nHost: app.test\r\nBad Header\r\nContent-Length: 100000\r\n\r\n", b"400"),
    (b"POST /a HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: 100000\r\n\r\n", b"404"),  # body unread
], ids=["malformed", "no route"])
async def test_a_refused_request_closes_lingering(proxy: RunningProxy, recorder: Recorder, head: bytes,
                                                  status: bytes) -> None:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(KeepsReading, "127.0.0.1", proxy.port)
    server = proxy.proxy.server
    transport.write(head + b"x" * 20_000)
    await until(lambda: getattr(client, "eof", False), 5, "the answer, then EOF")
    assert bytes(client.data).startswith(b"HTTP/1.1 " + status + b" ")
    await asyncio.sleep(0.2)
    assert len(server.connections) == 1 and not client.lost.done()  # still reading: no reset for the client
    transport.write(b"x" * 70_000)  # past the 64 KiB the proxy drains
    await until(lambda: not server.connections, 5, "closed once the drain budget is spent")
    transport.close()
    assert recorder.requests == []


# -- half-close -------------------------------------------------------------------------------------------------


async def test_a_client_half_closing_after_the_response_began_gets_all_of_it(stopping: list[RunningProxy]) -> None:
    async def slow_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        await asyncio.sleep(0.2)
        writer.write(b"world")
        await writer.drain()

    async with ScriptedUpstream(slow_body) as up:
        proxy = await proxy_to(up.port)
        stopping.append(proxy)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n")
        async with asyncio.timeout(5):
            await reader.readuntil(b"\r\n\r\n")
            writer.write_eof()
            assert await reader.read(-1) == b"helloworld"
        writer.close()
        counters = proxy.counters()
        await until(lambda: counters.in_flight == 0, 5, "in-flight back to 0")
        assert counters.by_class[2] == 1


async def test_a_client_half_closing_before_the_response_leaves(stopping: list[RunningProxy]) -> None:
    gone = asyncio.Event()

    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read(1)  # returns when the proxy closes the connection
        gone.set()

    async with ScriptedUpstream(never_answers) as up:
        proxy = await proxy_to(up.port)
        stopping.append(proxy)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"GET /stall HTTP/1.1\r\nHost: app.test\r\n\r\n")
        await until(lambda: up.heads, 5, "the request reached the upstream")
        writer.write_eof()
        async with asyncio.timeout(5):
            assert await reader.read(-1) == b""
            await gone.wait()
        writer.close()
        counters = proxy.counters()
        await until(lambda: counters.in_flight == 0, 5, "in-flight back to 0")
        assert counters.by_class[0] == 1  # counted as 499 (its own series), the client left


# -- http1.py rules ---------------------------------------------------------------------------------------------


def rewrite(*headers: tuple[bytes, bytes]) -> http1.RequestHead:
    return http1.rewrite_request(b"POST", b"/a", [(b"Host", b"app.test"), *headers], b"10.0.0.1", False)


def test_connection_tokens_never_remove_framing_or_host() -> None:
    head, host, _, body, _, _ = rewrite((b"Content-Length", b"5"), (b"X-Hop", b"1"),
                                        (b"Connection", b"content-length, host, transfer-encoding, x-hop"))
    assert body == http1.LENGTH and host == b"app.test"
    assert b"\r\nContent-Length: 5\r\n" in head and b"\r\nHost: app.test\r\n" in head
    assert b"X-Hop" not in head  # the other names listed are still hop-by-hop


def test_an_upstream_connection_token_never_removes_the_content_length() -> None:
    head, body, _, _ = http1.rewrite_response(
        200, b"HTTP/1.1 200 OK\r\nConnection: content-length, x-hop\r\nX-Hop: 1\r\nContent-Length: 5\r\n",
        bodiless=False, client_http10=False, keep_alive=True, cold=False)
    assert body == http1.LENGTH and b"Content-Length: 5\r\n" in head and b"X-Hop" not in head


@pytest.mark.parametrize(("codings", "status"), [
    ([b"gzip, chunked"], 501), ([b"gzip", b"chunked"], 501), ([b"chunked", b"chunked"], 400),
    ([b"identity"], 400), ([b"chunked, gzip"], 400),
])
def test_transfer_codings_other_than_one_chunked_are_refused(codings: list[bytes], status: int) -> None:
    with pytest.raises(BadRequest) as caught:
        rewrite(*[(b"Transfer-Encoding", c) for c in codings])
    assert caught.value.status == status


def test_chunked_in_any_case_and_padding_is_chunked() -> None:
    head, _, _, body, _, _ = rewrite((b"Transfer-Encoding", b"CHUNKED "))
    assert body == http1.CHUNKED and head.endswith(b"Transfer-Encoding: chunked\r\n\r\n")
