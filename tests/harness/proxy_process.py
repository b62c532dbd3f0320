"""`kedahttp proxy` as a child process on free ports, with a routes file the test writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness.servers import env_with, free_port, wait_port


class ProxyProcess:
    def __init__(self, tmp: Path, routes_yaml: str, **env: str) -> None:
        self.port, self.admin, self.metrics = free_port(), free_port(), free_port()
        routes = tmp / "routes.yaml"
        routes.write_text(routes_yaml)
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
