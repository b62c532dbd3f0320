"""Fixtures for the hostile-input tests: the real proxy on real sockets in front of a recording upstream,
raw clients that report whether the proxy closed the connection, and the admin API's fake cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from kedahttp.proxy.sources import Backend
from tests.harness.h2_upstream import H2App
from tests.hostile.recorder import Recorder
from tests.hostile.wire import Malformed, Message, read_responses
from tests.integration.kube.fixtures import admin, apiserver, cluster, kubeconfig
from tests.integration.proxy.conftest import RunningProxy, StaticSource, app_backend, start_proxy

__all__ = ["admin", "apiserver", "cluster", "kubeconfig"]

SWEEP_SECONDS = 0.1


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    server = await Recorder().start()
    yield server
    await server.stop()


async def proxy_for(*routes: tuple[Any, Recorder]) -> RunningProxy:
    """The real proxy with ``routes`` (backend, its recording upstream), its sweep every 0.1 s."""
    source = StaticSource([b for b, _ in routes], {b.key: [r.endpoint] for b, r in routes})
    running = await start_proxy(source)
    running.proxy.server.sweep_interval_seconds = SWEEP_SECONDS  # from the next sweep on (within 1 s)
    return running


@pytest.fixture
async def proxy(recorder: Recorder) -> AsyncIterator[RunningProxy]:
    """The proxy in front of the recorder, as backend default/app on host app.test."""
    running = await proxy_for((app_backend(), recorder))
    yield running
    await running.stop()


@pytest.fixture
async def h2_proxy() -> AsyncIterator[tuple[RunningProxy, H2App]]:
    """The proxy in front of an HTTP/2 app, as backend default/h2 (protocol h2c) on host h2.test."""
    app = await H2App("h2").start()
    source = StaticSource([Backend("default/h2", ("h2.test",), protocol="h2c")], {"default/h2": [app.endpoint]})
    running = await start_proxy(source)
    yield running, app
    await running.stop()
    await app.stop()


@dataclass
class Outcome:
    data: bytes  # everything the proxy sent
    closed: bool  # the proxy closed the connection (else the read timed out)

    def responses(self, heads: int = 0) -> list[Message]:
        """The responses, read strictly; raises Malformed if the proxy sent anything else."""
        return read_responses(self.data, eof=self.closed, heads=heads)

    def statuses(self) -> list[int]:
        return [r.status for r in self.responses()]

    def well_formed(self) -> bool:
        try:
            self.responses()
        except Malformed:
            return False
        return True


class Collector(asyncio.Protocol):
    """Keeps every byte received, even when the connection then ends in a reset (a StreamReader would
    raise the reset and hide the response that came before it)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def send(port: int, *pieces: bytes, pause: float = 0.05, timeout: float = 3.0,
               source_ip: str | None = None) -> Outcome:
    """Writes ``pieces`` (pausing between them) and reads until the proxy closes or ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    local = (source_ip, 0) if source_ip else None
    transport, collector = await loop.create_connection(Collector, "127.0.0.1", port, local_addr=local)
    try:
        for i, piece in enumerate(pieces):
            if i and pause:
                await asyncio.sleep(pause)
            if collector.lost.done():
                break
            transport.write(piece)
        try:
            await asyncio.wait_for(asyncio.shield(collector.lost), timeout)
        except TimeoutError:
            pass
    finally:
        transport.close()
    return Outcome(bytes(collector.data), collector.lost.done())

