"""The soak uses the fault tests' fixtures (subprocess bookkeeping, logs on failure) and one bus server,
chosen by KEDAHTTP_SOAK_BUS (redis or nats; default redis)."""

from __future__ import annotations

import os

import pytest

from tests.faults.conftest import procs, pytest_runtest_makereport  # noqa: F401
from tests.harness.servers import NatsServer, RedisServer


@pytest.fixture
def soak_bus(request: pytest.FixtureRequest) -> RedisServer | NatsServer:
    name = os.environ.get("KEDAHTTP_SOAK_BUS", "redis")
    if name not in ("redis", "nats"):
        raise pytest.UsageError(f"KEDAHTTP_SOAK_BUS must be redis or nats (got {name!r})")
    server: RedisServer | NatsServer = request.getfixturevalue(f"{name}_server")
    return server
