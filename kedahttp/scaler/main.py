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
from kedahttp.process.lifecycle import Component, Lifecycle, run
from kedahttp.process.logs import configure
from kedahttp.process.settings import Settings
from kedahttp.scaler.keepalive_store import open_store
from kedahttp.scaler.service import GrpcServer
from kedahttp.scaler.state import ScalerState
from kedahttp.scaler.telemetry import MetricsServer, Telemetry

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
        GrpcServer(state, telemetry, settings.scaler_addr),
    ]


async def serve(settings: Settings) -> None:
    lifecycle = Lifecycle(
        build_scaler(settings),
        shutdown_delay_seconds=settings.shutdown_delay_seconds,
        drain_timeout_seconds=settings.drain_timeout_seconds,
    )
    await lifecycle.run()


def main(settings: Settings) -> int:
    configure(settings.log_format, settings.log_level, settings.secret_values())
    log.info("starting scaler", extra={"settings": settings.redacted()})
    run(serve(settings))  # failures go to the command line, which logs them and picks the exit code
    return 0
