"""Session fixtures: private redis-server and nats-server (with JetStream) on free ports.

Function-scoped wrappers flush them before each test, so tests see an empty bus and can stop/restart the
server freely (a test that stops one restarts it, or the next use restarts it).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kedahttp.proxy import compiled
from tests.harness.servers import NatsServer, RedisServer


def pytest_report_header(config: pytest.Config) -> str:
    return f"kedahttp data path: {compiled.data_path()}"


def pytest_sessionstart(session: pytest.Session) -> None:
    # Tests must run the code as it is now: a compiled module older than its source would test an old build.
    stale = compiled.stale_modules()
    if stale:
        pytest.exit(f"compiled data path is older than its source ({', '.join(stale)}): run `make compile`",
                    returncode=4)
    if compiled.data_path() == "mixed":
        pytest.exit("the data path is partly compiled: run `make compile`", returncode=4)


@pytest.fixture(scope="session")
def redis_server_session() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def nats_server_session() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_server(redis_server_session: RedisServer) -> RedisServer:
    redis_server_session.start()
    redis_server_session.flush()
    return redis_server_session


@pytest.fixture
def nats_server(nats_server_session: NatsServer) -> NatsServer:
    nats_server_session.start()
    nats_server_session.flush()
    return nats_server_session


@pytest.fixture(params=["redis", "nats"])
def bus_server(request: pytest.FixtureRequest) -> RedisServer | NatsServer:
    """Runs a test once over real Redis and once over real NATS."""
    server: RedisServer | NatsServer = request.getfixturevalue(f"{request.param}_server")
    return server
