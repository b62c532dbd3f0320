"""``kedahttp scaler``: the process that serves KEDA's external scaler from the activity bus.

Three lifecycle components, started in order and closed in reverse: the view of the bus (feed,
aggregator, push hub), the Prometheus endpoint, and the gRPC listener. ``build_scaler`` returns them so
``kedahttp dev`` can run the scaler inside its own process on the in-memory bus.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kedahttp.activity.bus import Transport, open_transport
from kedahttp.process.gcfreeze import FreezeWhenSettled
from kedahttp.process.lifecycle import Component, Lifecycle, run
from kedahttp.process.logs import configure
from kedahttp.process.settings import Settings
from kedahttp.scaler.keepalive_store import open_store
from kedahttp.scaler.service import GrpcServer
from kedahttp.scaler.state import ScalerState
from kedahttp.scaler.telemetry import MetricsServer, Telemetry
from kedahttp.scaler.tls import tls_files

log = logging.getLogger("kedahttp.scaler")


def build_scaler(settings: Settings, transport: Transport | None = None,
                 clock: Callable[[], float] = time.time) -> list[Component]:
    """The scaler's components for ``settings``; ``transport`` replaces the one BUS names (the feed owns
    it either way and closes it when it stops); ``clock`` is the wall clock its answers are computed at."""
    if transport is None:
        transport = open_transport(settings.bus)
    state = ScalerState(transport, concurrency_window_seconds=settings.concurrency_window_seconds,
                        store=open_store(settings.bus), clock=clock)
    telemetry = Telemetry(state)
    return [
        state,
        MetricsServer(telemetry, settings.metrics_addr),
        GrpcServer(state, telemetry, settings.scaler_addr, tls_files(
            settings.scaler_tls_cert_file, settings.scaler_tls_key_file, settings.scaler_tls_client_ca_file)),
    ]


async def serve(settings: Settings) -> None:
    components = build_scaler(settings)
    state = next(c for c in components if isinstance(c, ScalerState))
    # a process of its own: the per-backend windows, once their set settles, stay out of full collections
    freezer = FreezeWhenSettled(lambda: state.aggregator.backends + state.keepalive.backends)
    lifecycle = Lifecycle(
        [freezer, *components],
        shutdown_delay_seconds=settings.shutdown_delay_seconds,
        drain_timeout_seconds=settings.drain_timeout_seconds,
    )
    await lifecycle.run()


def main(settings: Settings) -> int:
    configure(settings.log_format, settings.log_level, settings.secret_values())
    log.info("starting scaler", extra={"settings": settings.redacted()})
    run(serve(settings))  # failures go to the command line, which logs them and picks the exit code (TLS: 2)
    return 0
