"""``kedahttp controller``: the control plane process, the only one that writes to the cluster.

Two components: the controller (leader election, watches, reconciliation) and the admin server
(``/healthz``, ``/readyz`` and the apps API that ``kedahttp apps`` talks to). Every replica serves the
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
import sys
from pathlib import Path

from kedahttp.kube.apps_api import add_routes, check_admin_exposure
from kedahttp.kube.cluster import Cluster, ClusterError
from kedahttp.kube.controller import Controller, ControllerConfig
from kedahttp.kube.leader import LeaderElector
from kedahttp.process import lifecycle, logs
from kedahttp.process.health import HealthServer
from kedahttp.process.lifecycle import BaseComponent
from kedahttp.process.settings import SettingError, Settings
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


def main(settings: Settings) -> int:
    logs.configure(settings.log_format, settings.log_level)
    log.info("starting controller", extra={"settings": settings.redacted(), "pid": os.getpid()})
    try:
        check_admin_exposure(settings)
    except SettingError as exc:
        print(f"kedahttp controller: bad setting {exc}", file=sys.stderr)
        return 2
    try:
        cluster = Cluster.from_environment()  # no configuration: stop at start with the reason
        components = [ControllerComponent(settings, cluster), ControllerAdmin(settings, cluster)]
        lifecycle.run(lifecycle.Lifecycle(
            components,
            shutdown_delay_seconds=settings.shutdown_delay_seconds,
            drain_timeout_seconds=settings.drain_timeout_seconds,
        ).run())
    except (ClusterError, OSError) as exc:
        print(f"kedahttp controller: {exc}", file=sys.stderr)
        return 1
    return 0
