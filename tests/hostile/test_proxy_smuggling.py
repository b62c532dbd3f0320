"""Request smuggling against the real proxy: every framing trick ends in 400 and a closed connection, with
nothing of it reaching the upstream, and the lawful-but-unusual forms are framed exactly as a strict server
frames them. Each case is followed, in the same write, by a second request: if the proxy and the upstream
ever disagree on where the first request ends, that second request (or part of the first body) reaches
the upstream as a request of its own, and the recording upstream shows it."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness.clients import TWICE, VALID, VALID_LAST, send
from tests.harness.proxy import RunningProxy, proxy_to
from tests.harness.recorder import Recorder
from tests.harness.upstreams import FixedUpstream
from tests.harness.wire import read_responses

pytestmark = pytest.mark.timeout(60)

HOST = b"Host: app.test\r\n"
NEXT = b"GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n"  # the request a desync would smuggle
NEXT_LAST = b"GET /next HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"  # the same, ending the test


def post(headers: bytes, body: bytes) -> bytes:
    return b"POST /a HTTP/1.1\r\n" + HOST + headers + b"\r\n" + body


CHUNKED = b"Transfer-Encoding: chunked\r\n"
HELLO_CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"

# Each must be answered 400 and closed. (name -> (head-and-framing headers, body))
REJECTED: dict[str, bytes] = {
    # Content-Length and Transfer-Encoding together, either order
    "CL then TE": post(b"Content-Length: 5\r\n" + CHUNKED, b"0\r\n\r\n"),
    "TE then CL": post(CHUNKED + b"Content-Length: 5\r\n", b"0\r\n\r\n"),
    "CL then TE not chunked": post(b"Content-Length: 5\r\nTransfer-Encoding: identity\r\n", b"hello"),
    # Content-Length values
    "two differing CL": post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
    "CL list": post(b"Content-Length: 5, 6\r\n", b"hello!"),
    "CL with plus sign": post(b"Content-Length: +5\r\n", b"hello"),
    "CL negative": post(b"Content-Length: -5\r\n", b"hello"),
    "CL hex": post(b"Content-Length: 0x5\r\n", b"hello"),
    "CL inner space": post(b"Content-Length: 1 5\r\n", b"hello"),
    "CL empty": post(b"Content-Length: \r\n", b"hello"),
    "CL overflow": post(b"Content-Length: 99999999999999999999999\r\n", b"hello"),
    "CL decimal": post(b"Content-Length: 5.0\r\n", b"hello"),
    # Transfer-Encoding values
    "TE chunked, identity": post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
    "TE chunked twice": post(b"Transfer-Encoding: chunked, chunked\r\n", HELLO_CHUNKED),
    "TE identity": post(b"Transfer-Encoding: identity\r\n", b"0\r\n\r\n"),
    "TE xchunked": post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
    "TE chunkedx": post(b"Transfer-Encoding: chunkedx\r\n", b"0\r\n\r\n"),
    "TE empty": post(b"Transfer-Encoding: \r\n", b""),
    "TE vertical tab": post(b"Transfer-Encoding:\x0bchunked\r\n", HELLO_CHUNKED),
    "TE line starts with space": post(b" Transfer-Encoding: chunked\r\n", HELLO_CHUNKED),
    "TE space before colon": post(b"Transfer-Encoding : chunked\r\n", HELLO_CHUNKED),
    "TE folded": post(b"Transfer-Encoding:\r\n chunked\r\n", HELLO_CHUNKED),
    # chunk framing
    "chunk size not hex": post(CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n"),
    "chunk size negative": post(CHUNKED, b"-5\r\nhello\r\n0\r\n\r\n"),
    "chunk size 0x": post(CHUNKED, b"0x5\r\nhello\r\n0\r\n\r\n"),
    "chunk size overflow": post(CHUNKED, b"1ffffffffffffffff5\r\nhello\r\n0\r\n\r\n"),
    "chunk size trailing space": post(CHUNKED, b"5 \r\nhello\r\n0\r\n\r\n"),
    "chunk data longer than size": post(CHUNKED, b"3\r\nhello\r\n0\r\n\r\n"),
    "chunk size bare LF": post(CHUNKED, b"5\nhello\r\n0\r\n\r\n"),
    "chunk data bare LF": post(CHUNKED, b"5\r\nhello\n0\r\n\r\n"),
    "last chunk bare LF": post(CHUNKED, b"5\r\nhello\r\n0\n\n"),
    # the head itself
    "request line bare LF": b"GET /a HTTP/1.1\nHost: app.test\n\n",
    "header bare LF": b"GET /a HTTP/1.1\r\nHost: app.test\nX-A: 1\r\n\r\n",
    "header bare CR": b"GET /a HTTP/1.1\r\nHost: app.test\rX-A: 1\r\n\r\n",
    "obs-fold": b"GET /a HTTP/1.1\r\n" + HOST + b"X-A: a\r\n b\r\n\r\n",
    "NUL in value": b"GET /a HTTP/1.1\r\n" + HOST + b"X-A: a\x00b\r\n\r\n",
    "CR in value": b"GET /a HTTP/1.1\r\n" + HOST + b"X-A: a\rb\r\n\r\n",
    "DEL in value": b"GET /a HTTP/1.1\r\n" + HOST + b"X-A: a\x7fb\r\n\r\n",
    "space before colon": b"GET /a HTTP/1.1\r\n" + HOST + b"X-A : a\r\n\r\n",
    "tab before colon": b"GET /a HTTP/1.1\r\n" + HOST + b"X-A\t: a\r\n\r\n",
    "space in name": b"GET /a HTTP/1.1\r\n" + HOST + b"X A: a\r\n\r\n",
    "empty name": b"GET /a HTTP/1.1\r\n" + HOST + b": a\r\n\r\n",
    "no colon": b"GET /a HTTP/1.1\r\n" + HOST + b"X-A a\r\n\r\n",
    "CL with space before colon": post(b"Content-Length : 5\r\n", b"hello"),
}

# Lawful forms the proxy must frame exactly as a strict server does: (request, body the upstream gets).
ACCEPTED: dict[str, tuple[bytes, bytes]] = {
    "CL with leading OWS": (post(b"Content-Length: \t 5\r\n", b"hello"), b"hello"),
    "CL with leading zeros": (post(b"Content-Length: 005\r\n", b"hello"), b"hello"),
    "TE with leading OWS": (post(b"Transfer-Encoding: \tchunked\r\n", HELLO_CHUNKED), b"hello"),
    "TE upper case": (post(b"Transfer-Encoding: CHUNKED\r\n", HELLO_CHUNKED), b"hello"),
    "chunk size leading zeros": (post(CHUNKED, b"00000000000000005\r\nhello\r\n0\r\n\r\n"), b"hello"),
    "chunk extensions": (post(CHUNKED, b"5;a=b;c=\"d;e\"\r\nhello\r\n0;z\r\n\r\n"), b"hello"),
    "trailer fields": (post(CHUNKED, b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"), b"hello"),
    "upper-case hex size": (post(CHUNKED, b"A\r\nhellohello\r\n0\r\n\r\n"), b"hellohello"),
    "GET with a body": (b"GET /a HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n\r\nhello", b"hello"),
    "empty line before the request": (b"\r\n" + post(b"Content-Length: 5\r\n", b"hello"), b"hello"),
    "body that looks like a request": (post(b"Content-Length: %d\r\n" % len(NEXT), NEXT), NEXT),
}


def assert_upstream_clean(recorder: Recorder) -> None:
    assert recorder.malformed == [], recorder.malformed
    assert "/next" not in recorder.paths(), "a smuggled request reached the upstream"


@pytest.mark.parametrize("case", list(REJECTED))
async def test_rejected_alone(proxy: RunningProxy, recorder: Recorder, case: str) -> None:
    out = await send(proxy.port, REJECTED[case] + NEXT)
    assert out.closed, "the proxy must close the connection"
    assert out.statuses() == [400], out.data[:300]
    await asyncio.sleep(0.05)
    assert recorder.requests == []
    assert_upstream_clean(recorder)


@pytest.mark.parametrize("case", list(REJECTED))
async def test_rejected_after_a_valid_request(proxy: RunningProxy, recorder: Recorder, case: str) -> None:
    out = await send(proxy.port, VALID + REJECTED[case] + NEXT)
    assert out.closed
    assert out.statuses() == [200, 400], out.data[:600]
    await asyncio.sleep(0.05)
    assert recorder.paths() == ["/first"]
    assert_upstream_clean(recorder)


@pytest.mark.parametrize("case", [c for c in REJECTED if REJECTED[c].startswith(b"POST")])
async def test_rejected_body_arriving_after_the_head_was_forwarded(proxy: RunningProxy, recorder: Recorder,
                                                                   case: str) -> None:
    # The head goes out alone first, so the proxy may have sent it upstream before the bad framing shows.
    data = REJECTED[case] + NEXT
    cut = data.index(b"\r\n\r\n") + 4
    out = await send(proxy.port, data[:cut], data[cut:], pause=0.1)
    assert out.closed
    statuses = out.statuses()
    assert statuses in ([400], [502]), out.data[:300]  # 502: the upstream gave up on the cut request first
    await asyncio.sleep(0.05)
    assert recorder.requests == [], "a request with bad framing was completed upstream"
    assert_upstream_clean(recorder)


@pytest.mark.parametrize("case", list(ACCEPTED))
async def test_lawful_framing_agrees_with_a_strict_server(proxy: RunningProxy, recorder: Recorder,
                                                          case: str) -> None:
    request, body = ACCEPTED[case]
    out = await send(proxy.port, request + NEXT_LAST)
    assert out.closed
    assert out.statuses() == [200, 200], out.data[:600]
    assert [r.path for r in recorder.requests] == ["/a", "/next"]
    assert recorder.requests[0].message.body == body
    assert recorder.requests[1].message.body == b""
    assert recorder.malformed == []


async def test_a_body_holding_a_request_is_a_body_even_byte_by_byte(proxy: RunningProxy, recorder: Recorder) -> None:
    data = post(CHUNKED, b"%x\r\n%s\r\n0\r\n\r\n" % (len(NEXT), NEXT)) + VALID_LAST
    out = await send(proxy.port, *[data[i:i + 1] for i in range(len(data))], pause=0.0)
    assert out.closed
    assert out.statuses() == [200, 200]
    assert recorder.paths() == ["/a", "/first"]
    assert recorder.requests[0].message.body == NEXT
    assert_upstream_clean(recorder)


async def test_trailer_fields_never_join_the_next_request(proxy: RunningProxy, recorder: Recorder) -> None:
    # Fixed with issue 19's request reader: the trailer lines of a chunked body were kept with the headers
    # of the request after it, which then reached the upstream with them (or was refused for a second Host).
    trailers = b"X-Trailer: 1\r\nHost: evil.test\r\n"
    out = await send(proxy.port, post(CHUNKED, b"5\r\nhello\r\n0\r\n" + trailers + b"\r\n") + NEXT_LAST)
    assert out.statuses() == [200, 200], out.data[:600]
    assert recorder.paths() == ["/a", "/next"]
    second = recorder.requests[1].message
    assert second.values(b"x-trailer") == [] and second.values(b"host") == [b"app.test"]
    assert recorder.requests[0].message.trailers == []  # not passed on: the body ends with the last chunk


# -- bugs found here (see the reason of each) -------------------------------------------------------------


async def test_connection_naming_content_length_cannot_unframe_the_body(proxy: RunningProxy,
                                                                        recorder: Recorder) -> None:
    out = await send(proxy.port, post(b"Content-Length: %d\r\nConnection: content-length\r\n" % len(NEXT), NEXT)
                     + VALID_LAST)
    await asyncio.sleep(0.05)
    assert_upstream_clean(recorder)
    assert out.statuses() in ([400], [200, 200])
    if out.statuses() == [200, 200]:
        assert recorder.paths() == ["/a", "/first"] and recorder.requests[0].message.body == NEXT


async def test_connection_naming_host_keeps_the_host(proxy: RunningProxy, recorder: Recorder) -> None:
    out = await send(proxy.port, b"GET /a HTTP/1.1\r\nHost: app.test\r\nConnection: host, close\r\n\r\n")
    assert out.statuses() == [200]
    assert recorder.requests[0].message.values(b"host") == [b"app.test"]


@pytest.mark.parametrize("codings", [b"Transfer-Encoding: gzip, chunked\r\n",
                                     b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"],
                         ids=["one field", "two fields"])
async def test_transfer_codings_other_than_chunked_are_refused(proxy: RunningProxy, recorder: Recorder,
                                                               codings: bytes) -> None:
    out = await send(proxy.port, post(codings, HELLO_CHUNKED) + NEXT_LAST)
    assert out.closed
    assert out.statuses() in ([400], [501])
    assert recorder.requests == []


@pytest.mark.parametrize("upgrade", [b"Connection: upgrade\r\nUpgrade: websocket\r\n",
                                     b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                                     b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"], ids=["websocket", "h2c"])
async def test_bytes_after_a_declined_upgrade_never_reach_the_upstream(proxy: RunningProxy, recorder: Recorder,
                                                                       upgrade: bytes) -> None:
    out = await send(proxy.port, b"GET /ws HTTP/1.1\r\n" + HOST + upgrade + b"\r\n" + NEXT)
    assert out.statuses()[:1] == [200]
    await asyncio.sleep(0.1)
    assert recorder.paths() == ["/ws"]
    assert_upstream_clean(recorder)


async def test_a_refused_request_with_a_body_then_another_gives_no_internal_error(
    proxy: RunningProxy, recorder: Recorder, caplog: pytest.LogCaptureFixture,
) -> None:
    refused = b"POST /a HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\n\r\n"
    out = await send(proxy.port, refused + NEXT)
    assert out.closed
    assert out.statuses() in ([404], [404, 200])
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


# -- the response side ---------------------------------------------------------------------------------------


async def test_upstream_connection_header_cannot_unframe_a_response(stopping: list[RunningProxy]) -> None:
    async with FixedUpstream(b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello") as up:
        proxy = await proxy_to(up.port)
        stopping.append(proxy)
        out = await send(proxy.port, VALID + NEXT_LAST)
        responses = read_responses(out.data, eof=True)
        assert [r.body for r in responses] == [b"hello", b"hello"]


async def test_an_upstream_answering_twice_never_mixes_up_responses(stopping: list[RunningProxy]) -> None:
    async with FixedUpstream(TWICE) as up:
        proxy = await proxy_to(up.port)
        stopping.append(proxy)
        for _ in range(3):  # the extra response must never be handed to the next request
            out = await send(proxy.port, VALID, VALID_LAST, pause=0.05)
            assert [r.body for r in out.responses()] == [b"one", b"one"]


async def test_an_upstream_answering_twice_is_handled_without_a_traceback(
    stopping: list[RunningProxy], caplog: pytest.LogCaptureFixture,
) -> None:
    async with FixedUpstream(TWICE) as up:
        proxy = await proxy_to(up.port)
        stopping.append(proxy)
        out = await send(proxy.port, VALID_LAST)
        assert [r.body for r in out.responses()] == [b"one"]
        await asyncio.sleep(0.05)
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []
