"""Holding requests through a cold start: release on readiness, wake once, timeout, limit, clients leaving."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kedahttp.proxy.file_source import FileSource
from tests.harness.clients import curl, raw_exchange, read_response
from tests.harness.proxy import RunningProxy, app_backend, make_settings
from tests.harness.proxy import published_wakes as wakes
from tests.harness.servers import free_port
from tests.harness.static_source import StaticSource
from tests.harness.upstreams import Upstream

pytestmark = pytest.mark.timeout(60)


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


async def test_upstream_starting_late_gets_held_requests_with_cold_start_header(
        tmp_path: Path, proxy_factory: Any) -> None:
    port = free_port()
    routes = tmp_path / "routes.yaml"
    routes.write_text(f"""
backends:
  - name: app
    hosts: ["app.test"]
    upstream: "http://127.0.0.1:{port}"
""")
    running: RunningProxy = await proxy_factory(FileSource(str(routes)))
    requests = [asyncio.ensure_future(curl("-i", "-H", "Host: app.test", f"{running.url}/headers"))
                for _ in range(3)]
    await wait_for(lambda: running.counters().held == 3)
    await asyncio.sleep(1.0)
    upstream = Upstream()
    upstream.port = port
    await upstream.start()
    try:
        results = await asyncio.gather(*requests)
        for code, out, err in results:
            assert code == 0, err
            assert out.startswith("HTTP/1.1 200")
            assert "X-KEDAHTTP-Cold-Start: true" in out
        counters = running.counters()
        assert counters.held == 0 and counters.in_flight == 0 and counters.completed == 3
        assert counters.cold_starts == 1
        await wait_for(lambda: wakes(running.proxy) != [])
        assert wakes(running.proxy) == ["default/app"]  # one wake for the episode, not one per request
        # warm now: no header, no further wake
        _, out, _ = await curl("-i", "-H", "Host: app.test", f"{running.url}/headers")
        assert out.startswith("HTTP/1.1 200") and "Cold-Start" not in out
        assert wakes(running.proxy) == ["default/app"]
    finally:
        await upstream.stop()


async def test_held_past_timeout_is_504_with_retry_after(proxy_factory: Any) -> None:
    running: RunningProxy = await proxy_factory(
        StaticSource([app_backend(cold_start_timeout_seconds=0.3)], {}))
    started = asyncio.get_running_loop().time()
    _, out, _ = await curl("-i", "-H", "Host: app.test", f"{running.url}/")
    assert out.startswith("HTTP/1.1 504")
    assert "Retry-After:" in out
    assert asyncio.get_running_loop().time() - started >= 0.3
    counters = running.counters()
    assert (counters.held, counters.completed, counters.held_timeouts) == (0, 1, 1)


async def test_held_limit_answers_503(proxy_factory: Any) -> None:
    running: RunningProxy = await proxy_factory(
        StaticSource([app_backend()], {}), make_settings(max_held_requests=2))
    held = [asyncio.ensure_future(raw_exchange(running.port, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"))
            for _ in range(2)]
    await wait_for(lambda: running.counters().held == 2)
    _, out, _ = await curl("-i", "-H", "Host: app.test", f"{running.url}/")
    assert out.startswith("HTTP/1.1 503") and "Retry-After:" in out
    assert running.counters().held == 2
    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    await wait_for(lambda: running.counters().held == 0)


async def test_client_gone_while_held_is_removed_at_once(proxy_factory: Any, upstream: Upstream) -> None:
    running: RunningProxy = await proxy_factory(StaticSource([app_backend()], {}))
    _, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
    await wait_for(lambda: running.counters().held == 1)
    writer.close()
    await wait_for(lambda: running.counters().held == 0, timeout=1.0)
    counters = running.counters()
    assert counters.completed == 1 and counters.in_flight == 0
    assert len(running.proxy.routes.get("default/app").state.queue) == 0  # type: ignore[union-attr]
    # readiness later releases nothing stale
    running.proxy.routes.set_endpoints("default/app", [upstream.endpoint])
    await asyncio.sleep(0.05)
    assert upstream.requests == []


async def test_removed_backend_answers_held_requests_404(proxy_factory: Any) -> None:
    running: RunningProxy = await proxy_factory(StaticSource([app_backend()], {}))
    task = asyncio.ensure_future(raw_exchange(running.port, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n",
                                              read_until_close=False))
    await wait_for(lambda: running.counters().held == 1)
    running.proxy.routes.replace_backends([])
    out = await task
    assert out.startswith(b"HTTP/1.1 404")


async def test_refused_after_ready_is_502(proxy_factory: Any) -> None:
    dead = f"127.0.0.1:{free_port()}"
    running: RunningProxy = await proxy_factory(StaticSource([app_backend()], {"default/app": [dead]}))
    _, out, _ = await curl("-i", "-H", "Host: app.test", f"{running.url}/")
    assert out.startswith("HTTP/1.1 502")
    counters = running.counters()
    assert counters.upstream_errors >= 1 and counters.completed == 1 and counters.in_flight == 0


async def test_stale_keep_alive_connection_is_retried_once_fresh(proxy_factory: Any) -> None:
    """An upstream that answers one request per connection and drops the next: the keep-alive race."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next request on this connection: closed unanswered
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    endpoint = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        running: RunningProxy = await proxy_factory(StaticSource([app_backend()], {"default/app": [endpoint]}))
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        for _ in range(3):
            writer.write(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
            status, _, body = await read_response(reader)
            assert (status, body) == (200, b"ok")
        writer.close()
        assert connections == 3
    finally:
        server.close()


async def test_held_request_body_is_buffered_then_forwarded_whole(proxy_factory: Any, upstream: Upstream) -> None:
    running: RunningProxy = await proxy_factory(StaticSource([app_backend()], {}))
    payload = b"z" * 20_000
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"POST /sink HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))
    await wait_for(lambda: running.counters().held == 1)
    running.proxy.routes.set_endpoints("default/app", [upstream.endpoint])
    status, headers, body = await read_response(reader)
    assert (status, body) == (200, b"20000")
    assert headers["x-kedahttp-cold-start"] == "true"
    writer.close()
    counters = running.counters()
    assert counters.cold_wait_buckets != [0] * len(counters.cold_wait_buckets)  # the wait was observed
