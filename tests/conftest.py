"""Fixtures shared across the test directories (fixtures live in conftests; shared code in tests/harness/).

Session fixtures: private redis-server and nats-server (with JetStream) on free ports; function-scoped
wrappers flush them before each test, so tests see an empty bus and can stop/restart the server freely
(a test that stops one restarts it, or the next use restarts it). Also: the fake Kubernetes API server
with a kubeconfig and the admin API on it (kube, cli and hostile tests), and ``procs``, the subprocess
bookkeeping of the fault and soak tests: processes started through it are killed at the end of the test
whatever happens, and their logs are printed when it failed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kedahttp.kube.cluster import Cluster
from kedahttp.proxy import compiled
from tests.harness.admin import TOKEN, Admin, AdminContext, admin_settings, start_admin
from tests.harness.fake_apiserver import FakeApiServer
from tests.harness.procs import KedahttpProcess
from tests.harness.servers import NatsServer, RedisServer, free_port


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


# -- the fake Kubernetes API server and the admin API on it ------------------------------------------------


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(apiserver: FakeApiServer, tmp_path: Path) -> Path:
    return apiserver.write_kubeconfig(tmp_path)


@pytest.fixture
def cluster(kubeconfig: Path) -> Iterator[Cluster]:
    connection = Cluster.from_kubeconfig(str(kubeconfig))
    yield connection
    connection.close()


@pytest.fixture
async def admin(cluster: Cluster) -> AsyncIterator[Admin]:
    port = free_port()
    context = AdminContext(admin_settings(port), cluster)
    runner, api = await start_admin(context, port)
    yield Admin(f"http://127.0.0.1:{port}", api, context, {"Authorization": f"Bearer {TOKEN}"})
    await runner.cleanup()


# -- subprocesses (fault and soak tests) -------------------------------------------------------------------


@pytest.fixture
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[KedahttpProcess]]:
    """Processes the test starts; all killed at the end, their logs shown if the test failed."""
    started: list[KedahttpProcess] = []
    yield started
    for proc in started:
        proc.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for proc in started:
            print(f"--- {proc.log.name} ---\n{proc.log_tail()}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
