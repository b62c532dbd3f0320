"""``kedahttp controller``: the control plane process, the only one that writes to the cluster.

Three components: the controller (leader election, watches, reconciliation), its /metrics (build info,
process metrics, leadership) and the admin server (``/healthz``, ``/readyz`` and the apps API that
``kedahttp apps`` talks to). Every replica serves the
admin API (it only creates and deletes objects; the API server arbitrates) and keeps its caches warm;
only the Lease holder reconciles. The scaler address written into ScaledObjects defaults to the scaler
Service in the controller's own namespace, so an install with kustomize's ``namespace:`` needs no edit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from kedahttp.kube.apps_api import add_routes, check_admin_exposure
from kedahttp.kube.cluster import Cluster
from kedahttp.kube.controller import Controller, ControllerConfig
from kedahttp.kube.leader import LeaderElector
from kedahttp.kube.live import scaler_tls
from kedahttp.process import lifecycle, logs
from kedahttp.process.buildinfo import register_process_metrics
from kedahttp.process.health import HealthServer
from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.settings import Address, Settings
from kedahttp.process.sideserver import SideServer
from kedahttp.process.tasks import TaskOwner

log = logging.getLogger("kedahttp.controller")

LEASE_NAME = "kedahttp-controller"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
SCALER_SERVICE = "kedahttp-scaler"
SCALER_PORT = 9090


def own_namespace(settings: Settings, account_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    if settings.controller_namespace:
        return settings.controller_namespace
    with contextlib.suppress(OSError):
        text = account_file.read_text().strip()
        if text:
            return text
    return "default"


def scaler_address(settings: Settings, namespace: str) -> str:
    return settings.scaler_address or f"{SCALER_SERVICE}.{namespace}.svc:{SCALER_PORT}"


class ControllerComponent(BaseComponent):
    name = "controller"

    def __init__(self, settings: Settings, cluster: Cluster | None = None, identity: str | None = None) -> None:
        self.settings = settings
        self.namespace = own_namespace(settings)
        self.identity = identity or f"{socket.gethostname()}_{os.getpid()}"
        self._cluster = cluster
        self._tasks = TaskOwner("controller")
        self.controller: Controller | None = None
        self.elector: LeaderElector | None = None

    async def start(self) -> None:
        if self._cluster is None:
            self._cluster = await asyncio.to_thread(Cluster.from_environment)
        config = ControllerConfig(
            namespace=self.settings.watch_namespace or None,
            scaler_address=scaler_address(self.settings, self.namespace),
            trigger_authentication=self.settings.scaler_trigger_authentication,
            status_interval_seconds=self.settings.status_interval_seconds,
            scaler_tls=scaler_tls(self.settings),
        )
        controller = Controller(self._cluster, config, is_leader=lambda: elector.is_leader)
        elector = LeaderElector(self._cluster, self.namespace, LEASE_NAME, self.identity,
                                self.settings.lease_duration_seconds, on_change=controller.leadership_changed)
        self.controller, self.elector = controller, elector
        self._tasks.spawn(controller.run(), "kedahttp-controller")
        self._tasks.spawn(elector.run(), "kedahttp-leader-election")
        log.info("controller started", extra={"identity": self.identity, "lease": f"{self.namespace}/{LEASE_NAME}",
                                              "scaler_address": config.scaler_address})

    async def close(self) -> None:
        await self._tasks.close()  # the elector gives the Lease up on its way out


class ControllerAdmin(HealthServer):
    """/healthz, /readyz and the apps API on ADMIN_ADDR; ``settings`` and ``cluster`` are what the apps
    API reads from its context."""

    def __init__(self, settings: Settings, cluster: Cluster | None = None) -> None:
        super().__init__(settings.admin_addr, lambda app: add_routes(app, self))
        self.settings = settings
        self.cluster = cluster


class ControllerMetrics(SideServer):
    """``GET /metrics`` on METRICS_ADDR: ``kedahttp_build_info``, ``process_*`` and whether this replica leads."""

    name = "controller-metrics"

    def __init__(self, address: Address, component: ControllerComponent) -> None:
        super().__init__(address)
        self.registry = CollectorRegistry(auto_describe=True)
        register_process_metrics(self.registry, "controller", "none")  # no compiled data path here
        self.registry.register(_LeaderCollector(component))  # type: ignore[arg-type]

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


class _LeaderCollector:
    def __init__(self, component: ControllerComponent) -> None:
        self.component = component

    def collect(self) -> Iterator[Metric]:
        elector = self.component.elector
        yield GaugeMetricFamily("kedahttp_controller_leader", "1 while this replica holds the controller's Lease",
                                value=1 if elector is not None and elector.is_leader else 0)


def main(settings: Settings) -> int:
    """Runs the controller; a configuration error (no cluster configuration, an exposed admin API without a
    token) or a failure to start propagates to the command line (kedahttp.cli.main): exit 2 or 1."""
    logs.configure(settings.log_format, settings.log_level, settings.secret_values())
    log.info("starting controller", extra={"settings": settings.redacted(), "pid": os.getpid()})
    check_admin_exposure(settings)
    scaler_tls(settings)  # TLS files for the scaler that do not go together: stop at start, naming them
    cluster = Cluster.from_environment()  # no configuration: stop at start with the reason
    controller = ControllerComponent(settings, cluster)
    components = [controller, ControllerMetrics(settings.metrics_addr, controller), ControllerAdmin(settings, cluster)]
    lifecycle.run(lifecycle.Lifecycle(
        components,
        shutdown_delay_seconds=settings.shutdown_delay_seconds,
        drain_timeout_seconds=settings.drain_timeout_seconds,
    ).run())
    return 0
