"""The local runtime with real processes: replicas start, become ready when their port answers, reach the
route sink, are restarted when they die, and are stopped (SIGTERM, then SIGKILL) when scaled away."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterable, Sequence

import pytest

from kedahttp.dev.config import AppConfig
from kedahttp.dev.runtime import LocalRuntime
from kedahttp.proxy.sources import Backend

pytestmark = pytest.mark.timeout(60)


class RecordingSink:
    def __init__(self) -> None:
        self.backends: dict[str, Backend] = {}
        self.endpoints: dict[str, list[str]] = {}
        self.changed = asyncio.Event()

    def replace_backends(self, backends: Iterable[Backend]) -> None:
        self.backends = {b.key: b for b in backends}

    def upsert_backend(self, backend: Backend) -> None:
        self.backends[backend.key] = backend

    def remove_backend(self, key: str) -> None:
        self.backends.pop(key, None)

    def set_endpoints(self, key: str, endpoints: Sequence[str]) -> None:
        self.endpoints[key] = list(endpoints)
        self.changed.set()

    async def wait_for(self, key: str, count: int, timeout: float = 15.0) -> list[str]:
        async def changed_to() -> list[str]:
            while len(self.endpoints.get(key, [])) != count:
                self.changed.clear()
                await self.changed.wait()
            return self.endpoints[key]

        return await asyncio.wait_for(changed_to(), timeout)


def get(endpoint: str) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://{endpoint}/", timeout=5) as response:
        return response.headers.get("X-Replica-Id", ""), response.read().decode()


HELLO = AppConfig(name="hello", hosts=("hello.localhost",), termination_grace_seconds=2.0)


@pytest.fixture
async def runtime(tmp_path: os.PathLike[str]) -> AsyncIterator[LocalRuntime]:
    rt = LocalRuntime([HELLO], workdir=str(tmp_path))
    await rt.start()
    yield rt
    await rt.close()


async def test_scale_up_serves_and_scale_down_stops(runtime: LocalRuntime) -> None:
    sink = RecordingSink()
    source_task = asyncio.create_task(runtime.source().run(sink))
    await asyncio.sleep(0)
    assert sink.backends["default/hello"].hosts == ("hello.localhost",)
    assert sink.endpoints["default/hello"] == []

    await runtime.scale("default/hello", 2)
    endpoints = await sink.wait_for("default/hello", 2)
    ids = {(await asyncio.to_thread(get, e))[0] for e in endpoints}
    assert ids == {"hello-1", "hello-2"}
    status = runtime.status("default/hello")
    assert (status.desired, status.replicas, status.ready) == (2, 2, 2)

    processes = [r.process for r in runtime.apps["default/hello"].replicas]
    await runtime.scale("default/hello", 0)
    assert runtime.status("default/hello").replicas == 0
    await sink.wait_for("default/hello", 0)
    for process in processes:
        assert process is not None
        await asyncio.wait_for(process.wait(), 10)
        assert process.returncode == 0  # stopped by SIGTERM, exited cleanly
    source_task.cancel()


async def test_a_replica_that_dies_is_restarted(runtime: LocalRuntime) -> None:
    sink = RecordingSink()
    source_task = asyncio.create_task(runtime.source().run(sink))
    await runtime.scale("default/hello", 1)
    await sink.wait_for("default/hello", 1)
    replica = runtime.apps["default/hello"].replicas[0]
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGKILL)
    await sink.wait_for("default/hello", 0)
    [after] = await sink.wait_for("default/hello", 1)
    assert runtime.status("default/hello").restarts == 1
    replica_id, body = await asyncio.to_thread(get, after)
    assert replica_id == "hello-1" and "hello from hello-1" in body
    source_task.cancel()


async def test_a_command_app_and_sigkill_after_grace(tmp_path: os.PathLike[str]) -> None:
    # A process that ignores SIGTERM: the runtime must SIGKILL it after the grace period.
    stubborn = (
        "import signal,socket,time,sys; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(600)"
    )
    app = AppConfig(name="stubborn", hosts=("s.localhost",), command=(sys.executable, "-c", stubborn, "{port}"),
                    termination_grace_seconds=0.5)
    rt = LocalRuntime([app], workdir=str(tmp_path))
    sink = RecordingSink()
    rt.attach(sink)
    await rt.scale("default/stubborn", 1)
    await sink.wait_for("default/stubborn", 1)
    process = rt.apps["default/stubborn"].replicas[0].process
    assert process is not None
    await rt.scale("default/stubborn", 0)
    await asyncio.wait_for(process.wait(), 10)
    assert process.returncode == -signal.SIGKILL
    await rt.close()


async def test_close_stops_everything(tmp_path: os.PathLike[str]) -> None:
    app = AppConfig(name="hello", hosts=("hello.localhost",), min_replicas=2)
    rt = LocalRuntime([app], workdir=str(tmp_path))
    sink = RecordingSink()
    rt.attach(sink)
    await rt.start()  # minReplicas are started at once
    await sink.wait_for("default/hello", 2)
    processes = [r.process for r in rt.apps["default/hello"].replicas]
    await rt.close()
    for process in processes:
        assert process is not None and process.returncode is not None
