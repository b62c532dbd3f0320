"""Fixtures for the hostile-input tests: the real proxy on real sockets in front of a recording upstream.

The raw clients are in tests/harness/clients.py, the recorder in tests/harness/recorder.py; the admin
API's fake cluster fixtures come from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kedahttp.proxy.sources import Backend
from tests.harness.h2_upstream import H2App
from tests.harness.proxy import RunningProxy, app_backend, make_settings, recording_proxy, start_proxy
from tests.harness.recorder import Recorder
from tests.harness.static_source import StaticSource


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    server = await Recorder().start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy(recorder: Recorder) -> AsyncIterator[RunningProxy]:
    """The proxy in front of the recorder, as backend default/app on host app.test."""
    running = await recording_proxy((app_backend(), recorder))
    yield running
    await running.stop()


@pytest.fixture
async def stopping() -> AsyncIterator[list[RunningProxy]]:
    """Proxies the test starts; stopped at its end."""
    running: list[RunningProxy] = []
    yield running
    for p in running:
        await p.stop()


@pytest.fixture(params=["full", "relay"])
async def h2_proxy(request: pytest.FixtureRequest) -> AsyncIterator[tuple[RunningProxy, H2App]]:
    """The proxy in front of an HTTP/2 app, as backend default/h2 (protocol h2c) on host h2.test; with the
    full stack, and with the relay on (H2_RELAY), which takes the connections whose first requests go to
    one h2c app: the attacks that send requests."""
    app = await H2App("h2").start()
    source = StaticSource([Backend("default/h2", ("h2.test",), protocol="h2c")], {"default/h2": [app.endpoint]})
    running = await start_proxy(source, make_settings(h2_relay=request.param == "relay"))
    yield running, app
    await running.stop()
    await app.stop()
