"""Fixtures for the hostile-input tests: the real proxy on real sockets in front of a recording upstream.

The raw clients are in tests/harness/clients.py, the recorder in tests/harness/recorder.py; the admin
API's fake cluster fixtures come from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.harness.proxy import RunningProxy, app_backend, recording_proxy
from tests.harness.recorder import Recorder


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
