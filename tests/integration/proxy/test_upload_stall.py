"""The idle timeout covers the request body too: an app that stops reading an upload ends the exchange.

Real sockets both ways: a client streams a large body through the proxy to an upstream (a raw asyncio
server) that stops reading it (its receive window closes, the proxy's write buffer to it stays full).
With no byte taken for the idle timeout, the exchange ends: 504 when no response began, a cut connection
when one did, counted as an upstream timeout and error with an event line. An upstream that reads slowly
but steadily is never cut, however long the upload takes. Timeouts come from the server's sweep
(deadlines.py): the bounds are the timeout plus two sweep periods and a margin for a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kedahttp.proxy.forward import UPSTREAM_TIMEOUT_BODY
from kedahttp.proxy.sources import Backend
from tests.harness.proxy import RunningProxy, make_settings, metric
from tests.harness.reluctant_upstream import ReluctantUpstream
from tests.harness.static_source import StaticSource
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(60)

IDLE = 0.8
CHUNK = b"u" * 65536


async def proxy_for(proxy_factory: Any, upstream: ReluctantUpstream) -> RunningProxy:
    backend = Backend("default/app", ("app.test",))
    running: RunningProxy = await proxy_factory(StaticSource([backend], {"default/app": [upstream.endpoint]}),
                                                make_settings(upstream_idle_timeout_seconds=IDLE))
    return running


class Upload:
    """A POST of ``length`` bytes on a raw socket, streamed as fast as the proxy takes it, while the response
    is read to the end; sending stops once an answer arrives (as a client that sees an early response does)
    unless ``keep_sending``."""

    def __init__(self, port: int, length: int, keep_sending: bool = False) -> None:
        self.port = port
        self.length = length
        self.keep_sending = keep_sending
        self.sent = 0
        self.response = b""
        self.answered_at = 0.0  # when the first byte of the response arrived
        self.ended_at = 0.0  # when the proxy closed or cut the connection

    async def run(self) -> Upload:
        """In threads, with blocking sockets: one sends, one reads to the end (the proxy's close or cut)."""
        await asyncio.to_thread(self._run)
        return self

    def _run(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.settimeout(20)
        answered = threading.Event()

        def send() -> None:
            with contextlib.suppress(OSError):
                sock.sendall(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n"
                             b"Content-Length: %d\r\n\r\n" % self.length)
                while self.sent < self.length and (self.keep_sending or not answered.is_set()):
                    piece = CHUNK[:self.length - self.sent]
                    sock.sendall(piece)
                    self.sent += len(piece)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            with contextlib.suppress(ConnectionError):
                while data := sock.recv(65536):
                    if not self.response:
                        self.answered_at = time.monotonic()
                        answered.set()
                    self.response += data
            self.ended_at = time.monotonic()
            sender.join(5)
        finally:
            sock.close()


@pytest.fixture
async def make_upstream() -> AsyncIterator[Any]:
    made: list[ReluctantUpstream] = []

    async def make(mode: str, **kw: Any) -> ReluctantUpstream:
        made.append(await ReluctantUpstream(mode, **kw).start())
        return made[-1]

    yield make
    for upstream in made:
        await upstream.stop()


async def test_an_upstream_that_stops_reading_the_body_gets_the_request_a_504(
        proxy_factory: Any, make_upstream: Any, caplog: pytest.LogCaptureFixture) -> None:
    upstream = await make_upstream("stall")
    running = await proxy_for(proxy_factory, upstream)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="kedahttp.proxy.events"):
        done = await Upload(running.port, 1 << 30).run()
    response, took, sent = done.response, done.answered_at - started, done.sent
    assert response.startswith(b"HTTP/1.1 504 "), response[:200]
    assert response.endswith(UPSTREAM_TIMEOUT_BODY)
    # the stall begins once the kernel buffers between proxy and upstream are full (milliseconds here);
    # the 504 comes an idle timeout later, plus up to two sweep periods
    assert IDLE <= took < IDLE + 1.5, took
    assert sent < 1 << 30  # the upload never finished: the upstream took almost none of it
    assert upstream.received < 8 << 20
    await until(upstream.peer_closed, 5, "the proxy closed its connection to the app")
    page = await running.metrics()
    assert metric(page, "kedahttp_proxy_upstream_timeouts_total") == 1
    assert metric(page, "kedahttp_proxy_upstream_errors_total") == 1
    assert metric(page, "kedahttp_proxy_requests_total", namespace="default", app="app", code="5xx") == 1
    lines = [r for r in caplog.records if getattr(r, "event", "") == "upstream_error"]
    assert len(lines) == 1
    assert getattr(lines[0], "backend", "") == "default/app"
    assert "stopped reading the request body" in getattr(lines[0], "reason", "")
    assert getattr(lines[0], "status", 0) == 504


async def test_a_stalled_upload_cuts_a_response_that_began(proxy_factory: Any, make_upstream: Any) -> None:
    # the app answers and keeps the response moving (a piece every 0.1 s, well inside the idle timeout)
    # but never reads the rest of the body: only the upload side can end this exchange
    upstream = await make_upstream("stall", drip=True, every=0.1)
    running = await proxy_for(proxy_factory, upstream)
    started = time.monotonic()
    done = await Upload(running.port, 1 << 30, keep_sending=True).run()
    response, took = done.response, done.answered_at - started
    assert response.startswith(b"HTTP/1.1 200 OK\r\n"), response[:200]
    assert b"piece\n" in response  # the response was under way ...
    assert not response.endswith(b"0\r\n\r\n")  # ... and was cut, never passed off as complete
    cut_after = done.ended_at - started
    assert IDLE <= cut_after < IDLE + 1.5, cut_after
    assert took < IDLE  # the head arrived at once
    page = await running.metrics()
    assert metric(page, "kedahttp_proxy_upstream_timeouts_total") == 1
    assert metric(page, "kedahttp_proxy_upstream_errors_total") == 1
    assert metric(page, "kedahttp_proxy_requests_total", namespace="default", app="app", code="2xx") == 0


async def test_a_slow_but_steady_upload_is_never_cut(proxy_factory: Any, make_upstream: Any) -> None:
    # the app takes one socket read every 0.05 s: the proxy's buffer towards it stays full (the client
    # sends faster), yet bytes keep moving, far more often than the idle timeout
    upstream = await make_upstream("steady", every=0.05)
    running = await proxy_for(proxy_factory, upstream)
    length = 24 << 20
    started = time.monotonic()
    done = await Upload(running.port, length).run()
    response, took = done.response, done.answered_at - started
    assert done.sent == length
    assert response.startswith(b"HTTP/1.1 200 OK\r\n"), response[:200]
    assert response.endswith(b"\r\n\r\n%d" % length)  # the app got every byte
    assert took > 3 * IDLE, took  # the upload lasted well past the idle timeout: it was throttled, not quick
    page = await running.metrics()
    assert metric(page, "kedahttp_proxy_upstream_errors_total") == 0
    assert metric(page, "kedahttp_proxy_upstream_timeouts_total") == 0
    assert metric(page, "kedahttp_proxy_requests_total", namespace="default", app="app", code="2xx") == 1
