"""Fixtures for fault tests: the scriptable upstream and the proxy in-process in front of it.

Subprocess bookkeeping (``procs``) is in tests/conftest.py, shared with the soak; the classes behind
these fixtures are in tests/harness/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from kedahttp.activity.bus import open_transport
from kedahttp.proxy.assembly import build
from kedahttp.proxy.sources import Backend
from tests.harness.faulty_upstream import FaultyUpstream
from tests.harness.proxy import RunningProxy, proxy_settings
from tests.harness.static_source import StaticSource


@pytest.fixture
async def upstream() -> AsyncIterator[FaultyUpstream]:
    server = await FaultyUpstream().start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy_for(upstream: FaultyUpstream) -> AsyncIterator[Any]:
    """A factory: the in-process proxy in front of ``upstream`` (or ``target``) as backend default/app on
    host app.test."""
    started: list[RunningProxy] = []

    async def make(target: FaultyUpstream | None = None, **overrides: Any) -> RunningProxy:
        settings = proxy_settings(**overrides)
        source = StaticSource([Backend(key="default/app", hosts=("app.test",))],
                              {"default/app": [(target or upstream).endpoint]})
        running = await RunningProxy(build(settings, source, open_transport(settings.bus))).start()
        started.append(running)
        return running

    yield make
    for running in reversed(started):
        await running.stop()
