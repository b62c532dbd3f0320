"""No password leaves a process: each of proxy, scaler and dev runs with a bus URL that holds one, and the
password appears in none of its log lines (both formats), metrics, pages or errors.

Two paths. Unreachable: the URL points at a closed port, so every process reports "bus unavailable"
with the URL in the error. Reachable: a real redis-server (requirepass) or nats-server (user and
password) that the process logs in to, which proves the credentials are passed on while not shown; the
server is then killed so the connection-lost errors are checked too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness.servers import NatsServer, RedisServer, free_port, wait_port

pytestmark = pytest.mark.timeout(90)

PASSWORD = "hunter2-Zq8vX"
USER = "kedahttp-user"
DEV_CONFIG = """
apps:
  - name: hello
    hosts: [hello.localhost]
    sample: {startupSeconds: 0.1}
"""


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    log: Path  # stderr: the log lines
    stdout: Path  # dev's plain view writes there
    pages: dict[str, int]  # what to fetch: name -> port
    texts: list[str] = field(default_factory=list)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def everything(self) -> list[str]:
        return [self.output(), self.stdout.read_text(errors="replace"), *self.texts]

    def wait_for(self, pattern: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.output()):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r}:\n{self.output()[-3000:]}")

    def fetch(self, port: int, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            text: str = response.read().decode()
        self.texts.append(text)
        return text

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.output()


def free_pair() -> int:
    """A free port whose next port is free too: dev's scaler serves /metrics on the port after the proxy's."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def start(process: str, bus: str, log_format: str, tmp: Path) -> Running:
    ports = {name: free_port() for name in ("proxy", "admin", "scaler")} | {"metrics": free_pair()}
    args = [f"--bus={bus}", f"--log-format={log_format}", "--log-level=info",
            f"--metrics-addr=127.0.0.1:{ports['metrics']}"]
    pages = {"/metrics": ports["metrics"]}
    if process in ("proxy", "dev"):
        args += [f"--proxy-addr=127.0.0.1:{ports['proxy']}", f"--admin-addr=127.0.0.1:{ports['admin']}",
                 "--report-interval-seconds=0.1"]
        pages |= {"/healthz": ports["admin"], "/readyz": ports["admin"]}
    if process in ("scaler", "dev"):
        args += [f"--scaler-addr=127.0.0.1:{ports['scaler']}"]
    if process == "proxy":
        routes = tmp / "routes.yaml"
        routes.write_text('backends:\n  - {name: app, hosts: ["app.test"], upstream: "http://127.0.0.1:9"}\n')
        args += [f"--routes={routes}", "--shutdown-delay-seconds=0"]
    if process == "scaler":
        args += ["--shutdown-delay-seconds=0"]
    if process == "dev":
        (tmp / "dev.yaml").write_text(DEV_CONFIG)
        args += [f"--config={tmp / 'dev.yaml'}", "--no-view"]
    log, stdout = tmp / f"{process}.log", tmp / f"{process}.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEDAHTTP_")} | {"PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as err, open(stdout, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kedahttp", process, *args], stdout=out, stderr=err, env=env)
    running = Running(proc, log, stdout, pages)
    running.wait_for(r"serving\W+components", timeout=60.0)  # the lifecycle started every component
    wait_port(ports["metrics"], 5.0)
    return running


def assert_no_password(running: Running, output: str, log_format: str) -> None:
    for text in running.everything():
        assert PASSWORD not in text, f"the password leaked:\n{text[-3000:]}"
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines
    if log_format == "json":
        for line in lines:
            json.loads(line)  # the process wrote only log lines, all in the format asked
    # The settings dump is there, with the bus URL shown without its credentials.
    assert any("***@127.0.0.1" in line and "settings" in line for line in lines), output[-3000:]


def scrape_all(running: Running) -> None:
    for path, port in running.pages.items():
        running.fetch(port, path)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def _run(process: str, bus: str, log_format: str) -> Running:
        running = start(process, bus, log_format, tmp_path)
        started.append(running)
        return running

    yield _run
    for running in started:
        running.stop()


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.parametrize("process", ["proxy", "scaler", "dev"])
def test_an_unreachable_bus_is_reported_without_its_password(
    process: str, log_format: str, run: Callable[..., Running]
) -> None:
    port = free_port()  # nothing listens there
    scheme = "nats" if process == "scaler" and log_format == "text" else "redis"
    bus = (f"nats://{USER}:{PASSWORD}@127.0.0.1:{port}" if scheme == "nats"
           else f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    running = run(process, bus, log_format)
    running.wait_for("bus unavailable")
    scrape_all(running)
    output = running.stop()
    assert_no_password(running, output, log_format)
    assert re.search(rf"{scheme}://\*\*\*@127\.0\.0\.1:{port}", output), "the error names the bus, masked"


@pytest.mark.parametrize("process", ["proxy", "scaler", "dev"])
def test_a_bus_with_a_password_is_used_and_never_shown(process: str, run: Callable[..., Running]) -> None:
    server = RedisServer(password=PASSWORD)
    server.start()
    try:
        running = run(process, server.url, "json")
        metrics_port = running.pages["/metrics"]
        connected = "kedahttp_scaler_feed_connected 1.0" if process == "scaler" else "kedahttp_proxy_bus_connected 1.0"
        deadline = time.monotonic() + 30
        while connected not in running.fetch(metrics_port, "/metrics"):  # logged in: the password was used
            assert time.monotonic() < deadline, f"never connected:\n{running.output()[-3000:]}"
            time.sleep(0.2)
        server.stop()  # the connection-lost path, with the URL in its error
        running.wait_for("bus unavailable")
        scrape_all(running)
        output = running.stop()
    finally:
        server.cleanup()
    assert_no_password(running, output, "json")


def test_nats_credentials_are_used_and_never_shown(run: Callable[..., Running]) -> None:
    server = NatsServer(user=USER, password=PASSWORD)
    server.start()
    try:
        running = run("scaler", server.url, "text")
        running.wait_for("activity feed caught up")
        scrape_all(running)
        assert "kedahttp_scaler_feed_connected 1.0" in running.texts[-1]
        server.stop()
        running.wait_for("bus unavailable")
        output = running.stop()
    finally:
        server.cleanup()
    assert_no_password(running, output, "text")
    assert USER not in output  # a NATS user may be a token: masked with the password
