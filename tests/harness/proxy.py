"""The proxy in-process on real sockets, as tests drive it: settings on free ports, start and stop.

``build`` (the production assembly) wires it exactly as ``kedahttp proxy`` does; ``RunningProxy`` runs its
components without a Lifecycle, so a test can start several and stop them in any order.
"""

from __future__ import annotations

import itertools
from typing import Any

from kedahttp.activity.bus import open_transport
from kedahttp.activity.codec import decode
from kedahttp.activity.memory_bus import _log_for
from kedahttp.process import settings as settings_mod
from kedahttp.process.settings import Settings
from kedahttp.proxy.assembly import Proxy, build
from kedahttp.proxy.sources import Backend
from tests.harness.clients import curl
from tests.harness.recorder import Recorder
from tests.harness.static_source import StaticSource

SWEEP_SECONDS = 0.1

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


def metric(page: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 when absent); the labels given must match."""
    for line in page.splitlines():
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


def published_wakes(proxy: Proxy) -> list[str]:
    """Backends of the wake events this proxy published on its memory bus, in order."""
    messages = (decode(p) for _, p in _log_for(proxy.settings.bus).entries)
    return [m.backend for m in messages if hasattr(m, "at")]  # type: ignore[union-attr]


async def start_proxy(source: Any, settings: Settings | None = None, transport: Any = None) -> RunningProxy:
    settings = settings or make_settings()
    proxy = build(settings, source, transport or open_transport(settings.bus))
    return await RunningProxy(proxy).start()


def proxy_settings(**overrides: Any) -> Settings:
    """Settings for the fault tests: reports every 0.25 s, a cold start may take a minute."""
    return make_settings(**{"report_interval_seconds": 0.25, "cold_start_timeout_seconds": 60.0, **overrides})


def app_backend(**kw: Any) -> Backend:
    defaults: dict[str, Any] = {"key": "default/app", "hosts": ("app.test",)}
    defaults.update(kw)
    return Backend(**defaults)


async def proxy_to(port: int) -> RunningProxy:
    """The proxy with backend default/app (host app.test) on an upstream at 127.0.0.1:``port``."""
    return await start_proxy(StaticSource([app_backend()], {"default/app": [f"127.0.0.1:{port}"]}))


async def recording_proxy(*routes: tuple[Any, Recorder]) -> RunningProxy:
    """The real proxy with ``routes`` (backend, its recording upstream), its sweep every 0.1 s."""
    source = StaticSource([b for b, _ in routes], {b.key: [r.endpoint] for b, r in routes})
    running = await start_proxy(source)
    running.proxy.server.sweep_interval_seconds = SWEEP_SECONDS  # from the next sweep on (within 1 s)
    return running
