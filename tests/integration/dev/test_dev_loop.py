"""`kedahttp dev` end to end, as a user runs it: a real process with the proxy, the scaler, the KEDA
emulator and sample-app replicas as local processes, driven over real sockets.

The loop: the first request to an app at zero is held and answered 200 with the cold-start header;
sustained concurrent load takes it to the replica count the HPA formula predicts (ceil(total / target),
the total bounded by the number of concurrent clients); idleness brings it back to zero after the
cooldown. The same over the in-memory bus, real Redis and real NATS. Emulator timings are short so the
three runs take a few seconds each.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kedahttp.dev.load import run_load
from tests.harness.servers import NatsServer, RedisServer, free_port, wait_port

pytestmark = pytest.mark.timeout(90)

CLIENTS = 8
TARGET_CONCURRENCY = 2
PREDICTED = math.ceil(CLIENTS / TARGET_CONCURRENCY)  # each client keeps one request in flight: total 8

CONFIG = f"""
apps:
  - name: hello
    hosts: [hello.localhost]
    sample: {{startupSeconds: 0.2}}
    maxReplicas: 6
    targetConcurrency: {TARGET_CONCURRENCY}
    activityWindowSeconds: 1
keda:
  pollingInterval: 0.5
  cooldownPeriod: 2
  streamBackoffInitialSeconds: 0.5
  streamBackoffMaxSeconds: 2
hpa:
  syncPeriodSeconds: 0.5
  scaleDown:
    stabilizationWindowSeconds: 1
"""

SCALED = re.compile(r"scaling default/hello (\d+) -> (\d+) \((\w+): ")
READY_PORT = re.compile(r"replica ready .* port=(\d+)")


@dataclass
class Dev:
    process: subprocess.Popen[bytes]
    proxy_port: int
    stderr: Path
    stdout: Path

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def scalings(self) -> list[tuple[int, int, str]]:
        return [(int(a), int(b), by) for a, b, by in SCALED.findall(self.log())]

    async def wait_log(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        regex = re.compile(pattern)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = regex.search(self.log())
            if found:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"kedahttp dev exited ({self.process.returncode}):\n{self.log()[-3000:]}")
            if loop.time() > deadline:
                raise AssertionError(f"no {pattern!r} after {timeout}s:\n{self.log()[-3000:]}")
            await asyncio.sleep(0.05)

    async def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.process.wait, 20)


@pytest.fixture
async def start_dev(tmp_path: Path) -> AsyncIterator:  # type: ignore[type-arg]
    started: list[Dev] = []

    async def start(bus: str, config: str = CONFIG) -> Dev:
        config_path = tmp_path / "dev.yaml"
        config_path.write_text(config)
        proxy_port, admin_port, scaler_port = free_port(), free_port(), free_port()
        stderr, stdout = tmp_path / "dev.err", tmp_path / "dev.out"
        command = [
            str(Path(sys.executable).parent / "kedahttp"), "dev", "--config", str(config_path), "--no-view",
            "--bus", bus, "--proxy-addr", f"127.0.0.1:{proxy_port}", "--admin-addr", f"127.0.0.1:{admin_port}",
            "--metrics-addr", "127.0.0.1:0", "--scaler-addr", f"127.0.0.1:{scaler_port}",
            "--report-interval-seconds", "0.1", "--concurrency-window-seconds", "1", "--log-format", "text",
        ]
        process = await asyncio.to_thread(_spawn, command, stdout, stderr)
        dev = Dev(process, proxy_port, stderr, stdout)
        started.append(dev)
        await asyncio.to_thread(wait_port, proxy_port, 30.0)
        await dev.wait_log(r"serving components=.*keda-emulator")
        return dev

    yield start
    for dev in started:
        if dev.process.poll() is None:
            dev.process.kill()
            dev.process.wait(10)


def _spawn(command: list[str], stdout: Path, stderr: Path) -> subprocess.Popen[bytes]:
    with open(stderr, "wb") as err, open(stdout, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def curl(port: int, host: str, path: str = "/") -> tuple[int, dict[str, str], str]:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-s", "-i", "--max-time", "30", "-H", f"Host: {host}", f"http://127.0.0.1:{port}{path}",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    head, _, body = out.decode(errors="replace").partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def scale_from_zero_out_and_back(dev: Dev) -> None:
    # 1. the first request finds the app at zero: held, then answered by the replica KEDA started
    status, headers, body = await curl(dev.proxy_port, "hello.localhost")
    assert status == 200, body
    assert headers.get("x-kedahttp-cold-start") == "true"
    assert headers.get("x-replica-id") == "hello-1" and "hello from hello-1" in body
    assert dev.scalings()[0] == (0, 1, "keda")  # activation by KEDA, not by the HPA
    status, headers, _ = await curl(dev.proxy_port, "hello.localhost")
    assert status == 200 and "x-kedahttp-cold-start" not in headers

    # 2. sustained load: CLIENTS slow requests always in flight -> ceil(CLIENTS / target) replicas
    stop = asyncio.Event()
    load = asyncio.create_task(run_load(f"http://127.0.0.1:{dev.proxy_port}/", "hello.localhost", CLIENTS,
                                        duration_seconds=40, sleep_ms=300, stop=stop))
    try:
        await dev.wait_log(rf"scaling default/hello \d+ -> {PREDICTED} \(hpa", timeout=30)
        await dev.wait_log(rf"replica ready .*replica=hello-{PREDICTED}")
        await asyncio.sleep(1.5)  # a few more HPA syncs at the predicted count: it must hold there
    finally:
        stop.set()
        result = await load
    assert result.errors == 0 and set(result.statuses) == {200}, result.summary()
    peak = max(new for _, new, _ in dev.scalings())
    assert peak == PREDICTED, dev.scalings()
    assert len(result.replicas) == PREDICTED, result.summary()  # every replica took traffic

    # 3. idle: KEDA scales to 0 after the cooldown, from whatever count the HPA has reached by then (as
    # KEDA does: with a short cooldown that can be before the HPA's scale-down has come down to 1)
    await dev.wait_log(r"scaling default/hello \d+ -> 0 \(keda: inactive for cooldownPeriod", timeout=30)
    last = dev.scalings()[-1]
    assert last[1:] == (0, "keda") and last[0] >= 1, dev.scalings()
    ports = [int(p) for p in READY_PORT.findall(dev.log())]
    await asyncio.sleep(0.5)
    assert not [p for p in ports if _listening(p)], "replicas still listening after scaling to zero"

    assert await dev.stop() == 0


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_dev_loop_on_the_memory_bus(start_dev) -> None:  # type: ignore[no-untyped-def]
    dev = await start_dev("memory://dev")
    banner = dev.stdout.read_text()
    assert f"curl -i -H 'Host: hello.localhost' http://127.0.0.1:{dev.proxy_port}/" in banner
    assert "kedahttp.dev.load" in banner
    await scale_from_zero_out_and_back(dev)


async def test_dev_loop_over_redis(start_dev, redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    await scale_from_zero_out_and_back(await start_dev(redis_server.url))


async def test_dev_loop_over_nats(start_dev, nats_server: NatsServer) -> None:  # type: ignore[no-untyped-def]
    await scale_from_zero_out_and_back(await start_dev(nats_server.url))


async def test_shutdown_stops_every_replica(start_dev) -> None:  # type: ignore[no-untyped-def]
    config = CONFIG.replace("maxReplicas: 6", "minReplicas: 2\n    maxReplicas: 6")
    dev = await start_dev("memory://dev", config)
    await dev.wait_log(r"replica ready .*replica=hello-1")
    await dev.wait_log(r"replica ready .*replica=hello-2")
    ports = [int(p) for p in READY_PORT.findall(dev.log())]
    assert len(ports) == 2 and all(_listening(p) for p in ports)
    assert await dev.stop() == 0
    assert not [p for p in ports if _listening(p)]


GREETER_CONFIG = """
apps:
  - name: greeter
    hosts: [greeter.localhost]
    command: greeter
    sample: {startupSeconds: 0.3}
    maxReplicas: 2
keda:
  pollingInterval: 0.5
  cooldownPeriod: 30
hpa:
  syncPeriodSeconds: 0.5
"""


async def test_grpc_greeter_wakes_from_zero_on_its_first_call(start_dev) -> None:  # type: ignore[no-untyped-def]
    dev = await start_dev("memory://dev-greeter", GREETER_CONFIG)
    assert "replica ready" not in dev.log()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kedahttp.dev.greeter", "--call", f"127.0.0.1:{dev.proxy_port}",
        "--authority", "greeter.localhost", "--name", "dev", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode == 0, err.decode()
    assert re.fullmatch(r"Hello, dev! \(from greeter-\S+\)\n", out.decode()), out
    assert re.search(r"scaling default/greeter 0 -> 1 \(keda", dev.log())  # woken by the held call
    assert await dev.stop() == 0
