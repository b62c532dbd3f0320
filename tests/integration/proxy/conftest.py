"""Fixtures for proxy tests: a real upstream (aiohttp) and the proxy in-process on real sockets.

The classes and clients behind them are in tests/harness/ (proxy.py, upstreams.py, clients.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from kedahttp.process.settings import Settings
from tests.harness.faulty_upstream import FaultyUpstream
from tests.harness.h2_upstream import H2App
from tests.harness.proxy import RunningProxy, app_backend, make_settings, start_proxy
from tests.harness.slow_upstream import SlowUpstream
from tests.harness.static_source import StaticSource
from tests.harness.upstreams import Upstream


@pytest.fixture
async def proxy_factory() -> AsyncIterator[Any]:
    started: list[RunningProxy] = []

    async def factory(source: Any, settings: Settings | None = None, transport: Any = None) -> RunningProxy:
        running = await start_proxy(source, settings, transport)
        started.append(running)
        return running

    yield factory
    for running in reversed(started):
        await running.stop()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = await Upstream().start()
    yield server
    await server.stop()


@pytest.fixture
async def faulty() -> AsyncIterator[FaultyUpstream]:
    """An HTTP/1.1 app whose faults each request chooses (faulty_upstream.py); it counts its connections."""
    server = await FaultyUpstream().start()
    yield server
    await server.stop()


@pytest.fixture
async def h2app() -> AsyncIterator[H2App]:
    """An h2c app (plain HTTP/2, not gRPC) named "web"."""
    app = await H2App("web").start()
    yield app
    await app.stop()


@pytest.fixture
async def slow() -> AsyncIterator[SlowUpstream]:
    """An HTTP/1.1 app that hangs, stalls or drips, for the timeout tests."""
    server = SlowUpstream()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def proxied(upstream: Upstream, proxy_factory: Any) -> RunningProxy:
    """The proxy in front of the upstream, as backend default/app on host app.test."""
    running: RunningProxy = await proxy_factory(StaticSource([app_backend()], {"default/app": [upstream.endpoint]}))
    return running


@pytest.fixture
def proxy_settings() -> Any:
    """``make_settings`` as a fixture, for test modules that import nothing from a conftest."""
    return make_settings
