"""`kedahttp proxy` as a process: 100 MB both ways in bounded memory, WebSocket, SIGTERM drain, WORKERS=2."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from kedahttp import __version__
from kedahttp.proxy import compiled
from tests.harness.clients import curl
from tests.harness.servers import env_with, free_port, wait_port
from tests.harness.upstreams import Upstream

pytestmark = pytest.mark.timeout(90)

MB = 1024 * 1024


class ProxyProcess:
    def __init__(self, tmp: Path, upstream_port: int, **env: str) -> None:
        self.port, self.admin, self.metrics = free_port(), free_port(), free_port()
        routes = tmp / "routes.yaml"
        routes.write_text(f"""
backends:
  - name: app
    hosts: ["app.test"]
    upstream: "http://127.0.0.1:{upstream_port}"
""")
        self.log = tmp / "proxy.log"
        settings = {
            "KEDAHTTP_BUS": "memory://p", "KEDAHTTP_ROUTES": str(routes),
            "KEDAHTTP_PROXY_ADDR": f"127.0.0.1:{self.port}", "KEDAHTTP_ADMIN_ADDR": f"127.0.0.1:{self.admin}",
            "KEDAHTTP_METRICS_ADDR": f"127.0.0.1:{self.metrics}", "KEDAHTTP_LOG_FORMAT": "text",
            "KEDAHTTP_SHUTDOWN_DELAY_SECONDS": "0.5", "KEDAHTTP_DRAIN_TIMEOUT_SECONDS": "5",
        }
        settings.update(env)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "kedahttp", "proxy"], env=env_with(**settings),
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port)
        wait_port(self.admin)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def worker_pids(parent: int) -> list[int]:
    """The supervisor's spawned workers (not multiprocessing's resource tracker)."""
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)],
                              capture_output=True, text=True, check=True).stdout.split()
    return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.fixture
async def upstream_and_proxy(tmp_path: Path) -> Iterator[tuple[Upstream, ProxyProcess]]:  # type: ignore[misc]
    upstream = await Upstream().start()
    proxy = await asyncio.to_thread(ProxyProcess, tmp_path, upstream.port)
    yield upstream, proxy
    proxy.stop()
    await upstream.stop()


async def test_100mb_each_way_streams_in_bounded_memory(upstream_and_proxy: tuple[Upstream, ProxyProcess],
                                                        tmp_path: Path) -> None:
    _, proxy = upstream_and_proxy
    code, out, err = await curl("-H", "Host: app.test", f"{proxy.url}/headers")
    assert code == 0, err
    baseline = proxy.peak_rss_mb()
    code, out, err = await curl("-o", "/dev/null", "-w", "%{size_download}", "-H", "Host: app.test",
                                f"{proxy.url}/big?n={100 * MB}", timeout=60)
    assert (code, out) == (0, str(100 * MB)), err
    upload = tmp_path / "upload.bin"
    upload.touch()
    os.truncate(upload, 100 * MB)  # sparse: no disk I/O
    code, out, err = await curl("-H", "Host: app.test", "-T", str(upload), f"{proxy.url}/sink", timeout=60)
    assert (code, out) == (0, str(100 * MB)), err
    # chunked upload of the same size (curl streams stdin chunked)
    code, out, err = await curl("-H", "Host: app.test", "-H", "Transfer-Encoding: chunked",
                                "--data-binary", f"@{upload}", f"{proxy.url}/sink", timeout=60)
    assert (code, out) == (0, str(100 * MB)), err
    grown = proxy.peak_rss_mb() - baseline
    assert grown < 40, f"proxy peak RSS grew by {grown:.0f} MB while streaming 100 MB"


async def test_websocket_echo_through_the_proxy(upstream_and_proxy: tuple[Upstream, ProxyProcess]) -> None:
    _, proxy = upstream_and_proxy
    async with websockets.connect(f"ws://app.test:{proxy.port}/ws", host="127.0.0.1", port=proxy.port) as ws:
        await ws.send("hello")
        assert await ws.recv() == "echo:hello"
        payload = os.urandom(200_000)
        await ws.send(payload)
        assert await ws.recv() == payload
        _, out, _ = await curl(f"http://127.0.0.1:{proxy.metrics}/metrics")
        assert 'kedahttp_proxy_in_flight_requests{app="app",namespace="default"} 1.0' in out
    await asyncio.sleep(0.2)
    _, out, _ = await curl(f"http://127.0.0.1:{proxy.metrics}/metrics")
    assert 'kedahttp_proxy_in_flight_requests{app="app",namespace="default"} 0.0' in out
    assert 'kedahttp_proxy_requests_total{app="app",code="1xx",namespace="default"} 1.0' in out


async def test_sigterm_marks_not_ready_and_drains_in_flight(
        upstream_and_proxy: tuple[Upstream, ProxyProcess]) -> None:
    _, proxy = upstream_and_proxy
    slow = asyncio.ensure_future(curl("-H", "Host: app.test", f"{proxy.url}/slow?s=1.2&id=finished"))
    await asyncio.sleep(0.3)
    proxy.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.2)
    code, out, _ = await curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{proxy.admin}/readyz")
    assert out == "503"
    code, out, _ = await curl("-H", "Host: app.test", f"{proxy.url}/headers")  # still served during the delay
    assert code == 0 and '"method": "GET"' in out
    assert (await slow)[1] == "finished"
    assert await asyncio.to_thread(proxy.proc.wait, 10) == 0


async def test_two_workers_share_the_port_and_metrics_add_up(tmp_path: Path) -> None:
    upstream = await Upstream().start()
    proxy = await asyncio.to_thread(ProxyProcess, tmp_path, upstream.port, KEDAHTTP_WORKERS="2")
    try:
        await asyncio.sleep(1.0)  # both workers listening
        for _ in range(20):
            code, _, err = await curl("-H", "Host: app.test", f"{proxy.url}/headers")
            assert code == 0, err
        await asyncio.sleep(1.5)  # one stats interval
        code, out, _ = await curl(f"http://127.0.0.1:{proxy.metrics}/metrics")
        assert 'kedahttp_proxy_requests_total{app="app",code="2xx",namespace="default"} 20.0' in out
        # the proxy process runs the data path this suite was built with, and says so
        assert (f'kedahttp_build_info{{component="proxy",data_path="{compiled.data_path()}",'
                f'version="{__version__}"}} 1.0' in out)
        log = proxy.log.read_text()
        assert "worker=0" in log and "worker=1" in log
        assert f"data_path={compiled.data_path()}" in log
        # a worker that dies is replaced, and the port keeps serving meanwhile
        workers = await asyncio.to_thread(worker_pids, proxy.proc.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        for _ in range(10):
            code, _, err = await curl("-H", "Host: app.test", f"{proxy.url}/headers")
            assert code == 0, err
        async with asyncio.timeout(10):
            while True:
                if proxy.log.read_text().count("worker started") >= 3:
                    break
                await asyncio.sleep(0.1)
        proxy.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proxy.proc.wait, 15) == 0
    finally:
        proxy.stop()
        await upstream.stop()
