"""The soak runs on one bus server, chosen by KEDAHTTP_SOAK_BUS (redis or nats; default redis); its
subprocess bookkeeping (``procs``, logs on failure) is in tests/conftest.py."""

from __future__ import annotations

import os

import pytest

from tests.harness.servers import NatsServer, RedisServer


@pytest.fixture
def soak_bus(request: pytest.FixtureRequest) -> RedisServer | NatsServer:
    name = os.environ.get("KEDAHTTP_SOAK_BUS", "redis")
    if name not in ("redis", "nats"):
        raise pytest.UsageError(f"KEDAHTTP_SOAK_BUS must be redis or nats (got {name!r})")
    server: RedisServer | NatsServer = request.getfixturevalue(f"{name}_server")
    return server
