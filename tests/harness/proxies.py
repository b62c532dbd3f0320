"""The proxy in-process on real sockets for integration tests: settings for a test, start and stop, curl.

Shared by the proxy's test modules (they import it from here, never from each other or a conftest).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from kedahttp.activity.bus import open_transport
from kedahttp.activity.codec import decode
from kedahttp.activity.memory_bus import _log_for
from kedahttp.process import settings as settings_mod
from kedahttp.process.settings import Settings
from kedahttp.proxy.main import Proxy, build

_bus_names = itertools.count()


def make_settings(**overrides: Any) -> Settings:
    base = settings_mod.load({}, environ={
        "KEDAHTTP_BUS": f"memory://proxy-test-{next(_bus_names)}",
        "KEDAHTTP_PROXY_ADDR": "127.0.0.1:0",
        "KEDAHTTP_ADMIN_ADDR": "127.0.0.1:0",
        "KEDAHTTP_METRICS_ADDR": "127.0.0.1:0",
        "KEDAHTTP_ROUTES": "/nonexistent",
        "KEDAHTTP_COLD_START_TIMEOUT_SECONDS": "5",
        "KEDAHTTP_REPORT_INTERVAL_SECONDS": "0.1",
        "KEDAHTTP_SHUTDOWN_DELAY_SECONDS": "0",
    })
    return base.replace(**overrides)


class RunningProxy:
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    @property
    def port(self) -> int:
        return self.proxy.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counters(self, key: str = "default/app") -> Any:
        return self.proxy.counters.backends[key]

    async def start(self) -> RunningProxy:
        for component in self.proxy.components:
            await component.start()
        return self

    async def stop(self) -> None:
        for component in reversed(self.proxy.components):
            await component.close()

    async def metrics(self) -> str:
        """The proxy's /metrics page, scraped over HTTP as Prometheus would."""
        assert self.proxy.metrics is not None
        code, out, err = await curl(f"http://127.0.0.1:{self.proxy.metrics.port}/metrics")
        assert code == 0, err
        return out


async def start_proxy(source: Any, settings: Settings | None = None, transport: Any = None) -> RunningProxy:
    settings = settings or make_settings()
    proxy = build(settings, source, transport or open_transport(settings.bus))
    return await RunningProxy(proxy).start()


def published_wakes(proxy: Proxy) -> list[str]:
    """Backends of the wake events this proxy published on its memory bus, in order."""
    messages = (decode(p) for _, p in _log_for(proxy.settings.bus).entries)
    return [m.backend for m in messages if hasattr(m, "at")]


async def curl(*args: str, timeout: float = 20.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode("latin-1"), err.decode("latin-1")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 when absent); labels must all match."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        sample, _, label_text = series.partition("{")
        if sample != name:
            continue
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    return 0.0
