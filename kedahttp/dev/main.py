"""`kedahttp dev`: the whole scale-to-zero loop in one process, with nothing else installed.

Wires, in start order: the local runtime (apps as local processes), the scaler, the proxy (routes and
readiness from the runtime through the ordinary RouteSource interface), the KEDA emulator (a real gRPC
client of the scaler that scales the runtime), and the live view. Proxy and scaler share the in-memory
bus by default, or use ``BUS`` when it is redis:// or nats://, so the same demo runs over a real bus.

Dev has one METRICS_ADDR: the proxy serves /metrics there and the scaler on the next port (9102 and
9103 by default, as their own defaults); port 0 gives each a free port. Shutdown is the usual staged
one, without the load-balancer delay: the view lets go of the terminal, the emulator stops scaling,
the proxy drains, the scaler stops, and the runtime stops every replica last (SIGTERM, then SIGKILL
after its grace period).
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Callable, Sequence

from kedahttp.activity.bus import open_transport
from kedahttp.dev.config import DevConfig
from kedahttp.dev.config import load as load_config
from kedahttp.dev.emulator import KedaEmulator
from kedahttp.dev.runtime import LocalRuntime
from kedahttp.dev.view import LiveView
from kedahttp.process import lifecycle, logs
from kedahttp.process.lifecycle import Component, Lifecycle
from kedahttp.process.secrets import redact_url
from kedahttp.process.settings import Address, Settings
from kedahttp.scaler.metrics import DEFAULT_ACTIVITY_WINDOW_SECONDS

log = logging.getLogger("kedahttp.dev")

DEV_DRAIN_SECONDS = 10.0


def main(settings: Settings, config_path: str | None, view: bool | None) -> int:
    logs.configure(settings.log_format, settings.log_level, settings.secret_values())
    log.info("starting dev", extra={"settings": settings.redacted()})
    config = load_config(config_path)  # a ConfigError goes to the command line, which exits 2 naming the file
    tty = sys.stdout.isatty() if view is None else view
    return lifecycle.run(serve(settings, config, tty))


def scaler_settings(settings: Settings) -> Settings:
    """The scaler's copy of the settings: its /metrics on the port after the proxy's."""
    port = settings.metrics_addr.port
    return settings.replace(metrics_addr=Address(settings.metrics_addr.host, port + 1 if port else 0))


def local(address: Address) -> str:
    """Where a client on this machine reaches a listener bound to ``address``."""
    host = address.host
    if host in ("0.0.0.0", "", "::", "[::]"):
        host = "127.0.0.1"
    return str(Address(host, address.port))


def banner(settings: Settings, config: DevConfig) -> list[str]:
    proxy = f"http://{local(settings.proxy_addr)}"
    metrics = settings.metrics_addr.port
    lines = [
        f"kedahttp dev: proxy {proxy}  admin http://{local(settings.admin_addr)}/healthz  "
        f"scaler grpc://{local(settings.scaler_addr)}  bus {redact_url(settings.bus)}",
        f"  metrics: proxy :{metrics}/metrics, scaler :{metrics + 1 if metrics else 0}/metrics; "
        f"emulated KEDA: polling {config.emulator.polling_interval_seconds:g}s, "
        f"cooldown {config.emulator.cooldown_period_seconds:g}s, HPA sync {config.emulator.hpa_sync_period_seconds:g}s "
        f"(short dev timings; see {config.source})",
    ]
    for app in config.apps:
        targets = ", ".join(f"{k} {v}" for k, v in app.scaler_metadata().items() if k.startswith("target"))
        lines.append(f"  app {app.key}: hosts {', '.join(app.hosts)}; {app.min_replicas}..{app.max_replicas} "
                     f"replicas; {targets}")
    first = config.apps[0]
    host = first.hosts[0].lstrip("*.")
    python = shlex.quote(sys.executable)
    lines += [
        "try:",
        f"  curl -i -H 'Host: {host}' {proxy}/",
        f"  live page: http://{local(settings.admin_addr)}/live  (apps waking and sleeping as it happens)",
        *([f"  open http://{host}:{settings.proxy_addr.port}/ in a browser (*.localhost is this machine)"]
          if host.endswith(".localhost") else []),
        f"  {python} -m kedahttp.dev.load --url {proxy}/ --host {host} --concurrency 20 --duration 20 --sleep-ms 200",
        f"  wrk -t2 -c20 -d20s -H 'Host: {host}' '{proxy}/?sleep_ms=200'",
    ]
    return lines


def scale_down_after(config: DevConfig) -> Callable[[str], float | None]:
    """For the live page: an idle app scales to zero its activity window plus the cooldown after its last
    request (the scaler's activity rule, then KEDA's cooldown)."""
    cooldown = config.emulator.cooldown_period_seconds
    after = {app.key: (app.activity_window_seconds if app.activity_window_seconds is not None
                       else DEFAULT_ACTIVITY_WINDOW_SECONDS) + cooldown
             for app in config.apps if not app.min_replicas}
    return after.get


def build(settings: Settings, config: DevConfig, tty: bool) -> list[Component]:
    """Every component of `kedahttp dev`, in start order."""
    from kedahttp.proxy.assembly import build_proxy
    from kedahttp.scaler.main import build_scaler

    runtime = LocalRuntime(config.apps)
    scaler: Sequence[Component] = build_scaler(scaler_settings(settings))
    proxy: Sequence[Component] = build_proxy(settings, runtime.source(),
                                             scale_down_after=scale_down_after(config))
    emulator = KedaEmulator(config.apps, config.emulator, local(settings.scaler_addr), runtime)
    view = LiveView(
        config.apps, runtime, emulator, open_transport(settings.bus), banner(settings, config), tty=tty,
        concurrency_window_seconds=settings.concurrency_window_seconds,
    )
    return [runtime, *scaler, *proxy, emulator, view]


async def serve(settings: Settings, config: DevConfig, tty: bool) -> int:
    life = Lifecycle(build(settings, config, tty), shutdown_delay_seconds=0.0,
                     drain_timeout_seconds=min(settings.drain_timeout_seconds, DEV_DRAIN_SECONDS))
    await life.run()  # a failure to start goes to the command line, which logs it and exits 1
    return 0
