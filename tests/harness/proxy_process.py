"""`kedahttp proxy` as a child process on free ports, with a routes file the test writes.

Its output goes to ``proxy.log`` in the test's directory; with ``separate_stdout`` its stdout (the access
log) goes to ``proxy.out`` instead and only its stderr (its own logs) to ``proxy.log``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.harness.servers import env_with, free_port, wait_port


class ProxyProcess:
    def __init__(self, tmp: Path, routes_yaml: str, separate_stdout: bool = False, **env: str) -> None:
        self.port, self.admin, self.metrics = free_port(), free_port(), free_port()
        routes = tmp / "routes.yaml"
        routes.write_text(routes_yaml)
        self.log = tmp / "proxy.log"
        self.out = tmp / "proxy.out" if separate_stdout else self.log  # stdout
        settings = {
            "KEDAHTTP_BUS": "memory://p", "KEDAHTTP_ROUTES": str(routes),
            "KEDAHTTP_PROXY_ADDR": f"127.0.0.1:{self.port}", "KEDAHTTP_ADMIN_ADDR": f"127.0.0.1:{self.admin}",
            "KEDAHTTP_METRICS_ADDR": f"127.0.0.1:{self.metrics}", "KEDAHTTP_LOG_FORMAT": "text",
            "KEDAHTTP_SHUTDOWN_DELAY_SECONDS": "0.5", "KEDAHTTP_DRAIN_TIMEOUT_SECONDS": "5",
        }
        settings.update(env)
        command = [sys.executable, "-m", "kedahttp", "proxy"]
        with open(self.log, "wb") as log:  # the child keeps its own descriptors
            if separate_stdout:
                with open(self.out, "wb") as out:
                    self.proc = subprocess.Popen(command, env=env_with(**settings), stdout=out, stderr=log)
            else:
                self.proc = subprocess.Popen(command, env=env_with(**settings), stdout=log, stderr=subprocess.STDOUT)
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

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, as an orchestrator stops it; its exit code once it has shut down."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
