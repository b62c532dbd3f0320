"""Fixtures for the bus tests: transports opened on the test's server and closed after it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kedahttp.activity.bus import Transport, open_transport
from tests.harness.servers import NatsServer, RedisServer, TransportFactory


@pytest.fixture
async def transports(bus_server: RedisServer | NatsServer) -> AsyncIterator[TransportFactory]:
    """Opens transports on ``bus_server`` (Redis, then NATS); closes them all after the test."""
    opened: list[Transport] = []

    def factory() -> Transport:
        transport = open_transport(bus_server.url)
        opened.append(transport)
        return transport

    yield factory
    bus_server.start()  # a test that stopped the server leaves it running for the next one
    for transport in opened:
        await transport.close()


