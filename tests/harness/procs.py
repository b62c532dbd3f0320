"""``kedahttp proxy`` and ``kedahttp scaler`` as real subprocesses, and what /proc says about them.

Fault tests kill these with real signals and read their memory and descriptors from /proc, so they run
as the operator runs them: ``python -m kedahttp <command>`` with settings in the environment, a routes
file for the proxy (CONTRACT section 5), logs in a file the test prints when it fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.harness.servers import env_with, free_port, wait_port


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (VmRSS)."""
    return _status_field(pid, "VmRSS")


def hwm_kb(pid: int) -> int:
    """Peak resident set size of ``pid`` in KiB (VmHWM)."""
    return _status_field(pid, "VmHWM")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(p) for p in f.read().split()]
    return out


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} for pid {pid}")


class KedahttpProcess:
    command = ""

    def __init__(self, tmp: Path, env: dict[str, str], name: str) -> None:
        self.log = tmp / f"{name}.log"
        with open(self.log, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kedahttp", self.command], env=env_with(**env),
                stdout=log, stderr=subprocess.STDOUT,
            )
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def fd_count(self) -> int:
        return fd_count(self.pid)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Ends the process and everything it started (workers live in their own process groups)."""
        if self.proc.poll() is None:
            kids = children(self.pid)
            self.proc.kill()
            self.proc.wait(10)
            for kid in kids:
                try:
                    os.kill(kid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def routes_yaml(backends: dict[str, int], cold_start_timeout_seconds: float | None = None) -> str:
    """A routes file: backend ``name`` on host ``name.test`` forwarding to ``127.0.0.1:port``."""
    lines = ["backends:"]
    for name, port in backends.items():
        lines += [f"  - name: {name}", f'    hosts: ["{name}.test"]', f'    upstream: "http://127.0.0.1:{port}"']
        if cold_start_timeout_seconds is not None:
            lines.append(f"    coldStartTimeoutSeconds: {cold_start_timeout_seconds}")
    return "\n".join(lines) + "\n"


class ProxyProcess(KedahttpProcess):
    """``kedahttp proxy`` with a routes file; ``settings`` are extra KEDAHTTP_* names without the prefix."""

    command = "proxy"

    def __init__(self, tmp: Path, backends: dict[str, int], bus: str, name: str = "proxy",
                 **settings: str) -> None:
        self.port, self.admin_port, self.metrics_port = free_port(), free_port(), free_port()
        self.routes = tmp / f"{name}-routes.yaml"
        self.routes.write_text(routes_yaml(backends))
        env = {
            "KEDAHTTP_BUS": bus, "KEDAHTTP_ROUTES": str(self.routes),
            "KEDAHTTP_PROXY_ADDR": f"127.0.0.1:{self.port}",
            "KEDAHTTP_ADMIN_ADDR": f"127.0.0.1:{self.admin_port}",
            "KEDAHTTP_METRICS_ADDR": f"127.0.0.1:{self.metrics_port}",
            "KEDAHTTP_LOG_FORMAT": "text", "KEDAHTTP_REPORT_INTERVAL_SECONDS": "0.25",
            "KEDAHTTP_SHUTDOWN_DELAY_SECONDS": "0", "KEDAHTTP_DRAIN_TIMEOUT_SECONDS": "5",
        }
        env.update({f"KEDAHTTP_{k.upper()}": v for k, v in settings.items()})
        super().__init__(tmp, env, name)

    def wait_listening(self, timeout: float = 20.0) -> None:
        try:
            wait_port(self.port, timeout)
            wait_port(self.admin_port, timeout)
        except TimeoutError as exc:
            raise AssertionError(f"proxy did not start:\n{self.log_tail()}") from exc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


class ScalerProcess(KedahttpProcess):
    command = "scaler"

    def __init__(self, tmp: Path, bus: str, name: str = "scaler", **settings: str) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        env = {
            "KEDAHTTP_BUS": bus, "KEDAHTTP_SCALER_ADDR": f"127.0.0.1:{self.port}",
            "KEDAHTTP_METRICS_ADDR": f"127.0.0.1:{self.metrics_port}", "KEDAHTTP_LOG_FORMAT": "text",
            "KEDAHTTP_SHUTDOWN_DELAY_SECONDS": "0", "KEDAHTTP_DRAIN_TIMEOUT_SECONDS": "2",
        }
        env.update({f"KEDAHTTP_{k.upper()}": v for k, v in settings.items()})
        super().__init__(tmp, env, name)

    def wait_listening(self, timeout: float = 20.0) -> None:
        try:
            wait_port(self.port, timeout)
        except TimeoutError as exc:
            raise AssertionError(f"scaler did not start:\n{self.log_tail()}") from exc

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def scrape(port: int, prefix: str = "kedahttp_") -> dict[str, float]:
    """A Prometheus /metrics page as {series: value}, for the series starting with ``prefix``."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out
