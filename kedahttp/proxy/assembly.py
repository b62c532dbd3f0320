"""The proxy's assembly: the data path, route source, reporter, metrics and admin wired into components.

``build`` is the one place the parts meet. Three callers use it: the entry point (``main.py``, one
process), each worker of the supervisor (``workers.py``, without admin and metrics), and ``kedahttp
dev`` (its own route source and the memory bus, through ``build_proxy``). The supervisor also runs a
``SourceRunner`` of its own, for the admin API's view of the routes. ``make_source`` picks the route
source from ROUTES. Every edge is a plain import: the Kubernetes route source is always imported (it is
part of the package, not an optional extra); the kubernetes client itself is loaded only when a cluster
is configured (``kube/cluster.py`` imports it on first use), so a routes-file proxy still never loads it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kedahttp.activity.bus import Transport, open_transport
from kedahttp.activity.publisher import ActivityPublisher
from kedahttp.kube.cluster import Cluster
from kedahttp.process.gcfreeze import FreezeWhenSettled
from kedahttp.process.lifecycle import BaseComponent, Component
from kedahttp.process.settings import Settings
from kedahttp.process.tasks import TaskOwner
from kedahttp.proxy import compiled
from kedahttp.proxy.access_log import AccessLog
from kedahttp.proxy.admin import AdminContext, AdminServer
from kedahttp.proxy.app_settings import limits_from_settings
from kedahttp.proxy.counters import CounterRegistry
from kedahttp.proxy.dispatch import Dispatcher
from kedahttp.proxy.events import EventLog
from kedahttp.proxy.file_source import FileSource, load_routes_file
from kedahttp.proxy.forwarded import TrustedProxies
from kedahttp.proxy.h2.downstream import Limits
from kedahttp.proxy.h2.side import H2Side
from kedahttp.proxy.kube_source import KubernetesSource
from kedahttp.proxy.live import LivePage, is_served, route_cold_waits, route_samples
from kedahttp.proxy.reporter import Publisher, Reporter, instance_id
from kedahttp.proxy.routing import RouteTable
from kedahttp.proxy.server import ProxyServer
from kedahttp.proxy.sources import Backend, RouteSink, RouteSource
from kedahttp.proxy.telemetry import PREPARE_SECONDS, MetricsServer, Snapshot, publisher_stats
from kedahttp.proxy.tracing import make_observer
from kedahttp.proxy.upstream import UpstreamPool

log = logging.getLogger("kedahttp.proxy")

INITIAL_ROUTES_WAIT_SECONDS = 10.0


class _SyncWatch:
    """A RouteSink in front of the table that notes when the source first reported its state."""

    def __init__(self, table: RouteSink) -> None:
        self.table = table
        self.synced = asyncio.Event()

    def replace_backends(self, backends: Any) -> None:
        self.table.replace_backends(backends)
        self.synced.set()

    def upsert_backend(self, backend: Backend) -> None:
        self.table.upsert_backend(backend)
        self.synced.set()

    def remove_backend(self, key: str) -> None:
        self.table.remove_backend(key)

    def set_endpoints(self, key: str, endpoints: Any) -> None:
        self.table.set_endpoints(key, endpoints)


class SourceRunner(BaseComponent):
    """Runs a route source as an owned task; start returns once the source reported its first state."""

    def __init__(self, source: RouteSource, sink: RouteSink) -> None:
        self.name = f"routes-{source.name}"
        self.source = source
        self.watch = _SyncWatch(sink)
        self.tasks = TaskOwner(self.name)

    async def start(self) -> None:
        task = self.tasks.spawn(self.source.run(self.watch), "run")
        synced = asyncio.ensure_future(self.watch.synced.wait())
        done, _ = await asyncio.wait({task, synced}, timeout=INITIAL_ROUTES_WAIT_SECONDS,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done and task.exception() is not None:
            synced.cancel()
            raise task.exception()  # type: ignore[misc]
        if not done:
            log.warning("route source has not reported yet; serving 404 until it does",
                        extra={"source": self.source.name})
        synced.cancel()

    async def close(self) -> None:
        await self.tasks.close()


class ProxyComponent(BaseComponent):
    name = "proxy"

    def __init__(self, server: ProxyServer, settings: Settings, *, reuse_port: bool) -> None:
        self.server = server
        self.settings = settings
        self.reuse_port = reuse_port

    async def start(self) -> None:
        address = self.settings.proxy_addr
        await self.server.start(address.host, address.port, reuse_port=self.reuse_port)
        log.info("proxy listening", extra={"address": f"{address.host}:{self.server.port}",
                                           "data_path": compiled.data_path()})

    async def stop_accepting(self) -> None:
        await self.server.stop_accepting()
        self.server.h2.stop_accepting()  # GOAWAY to every HTTP/2 connection

    async def drain(self, deadline: float) -> None:
        await self.server.drain(deadline)
        await self.server.h2.drain(deadline)

    async def close(self) -> None:
        await self.server.h2.close()
        await self.server.close()
        self.server.dispatcher.close(list(self.server.routes.routes.values()))
        await self.server.pool.tasks.close(1.0)


class Proxy:
    """The wired parts of one proxy process; ``components`` is what the lifecycle runs."""

    def __init__(self, settings: Settings, source: RouteSource, publisher: Publisher, *,
                 serve_admin: bool = True, serve_metrics: bool = True, reuse_port: bool = False,
                 freeze_gc: bool = False, **options: Any) -> None:
        self.settings = settings
        self.counters = CounterRegistry(instance_id())
        self.reporter = Reporter(self.counters, publisher, settings.report_interval_seconds)
        self.publisher = publisher
        self.source = source
        self.pool = UpstreamPool(TaskOwner("upstream"))
        self.events = EventLog()
        self.access_log = AccessLog(settings.access_log_sample_rate) if settings.access_log_sample_rate else None
        self.dispatcher = Dispatcher(
            self.pool, self.counters,
            cold_start_timeout_seconds=settings.cold_start_timeout_seconds,
            max_held_requests=settings.max_held_requests,
            on_wake=self._on_wake,
            on_unreachable=getattr(source, "nudge", None),
            events=self.events,
            access_log=self.access_log,
        )
        self.dispatcher.observer = make_observer(settings.tracing)
        self.h2 = H2Side(self.dispatcher, cold_start_timeout_seconds=settings.cold_start_timeout_seconds,
                         max_held_requests=settings.max_held_requests,
                         limits=Limits(settings.h2_max_concurrent_streams, settings.h2_max_header_list_bytes,
                                       stream_window_bytes=settings.h2_stream_window_bytes,
                                       connection_window_bytes=settings.h2_connection_window_bytes,
                                       resets_per_second=settings.h2_resets_per_second,
                                       control_frames_per_second=settings.h2_control_frames_per_second),
                         relay=settings.h2_relay, relay_max_age_seconds=settings.h2_relay_max_age_seconds)
        # the HTTP/2 side passes every change on to the dispatcher
        self.routes = RouteTable(self.h2, limits_from_settings(settings))
        self.h2.routes = self.routes
        self.server = ProxyServer(self.routes, self.dispatcher, self.pool,
                                  trusted_proxies=TrustedProxies(settings.trusted_proxies),
                                  unrouted=self.counters.unrouted)
        self.server.h2 = self.h2
        if isinstance(source, FileSource) and source.interest is None:
            source.interest = self._holding
        self.admin: AdminServer | None = None
        self.metrics: MetricsServer | None = None
        self.live: LivePage | None = None
        components: list[Component] = []
        if freeze_gc:  # a process of its own (main, workers): see process/gcfreeze.py
            components.append(FreezeWhenSettled(lambda: self.routes.rebuilds))
        if self.access_log is not None:
            components.append(self.access_log)
        if serve_metrics:
            self.metrics = MetricsServer(settings.metrics_addr, self.metrics_snapshot, settings.metrics_app_latency,
                                         prepare_seconds=PREPARE_SECONDS)
            components.append(self.metrics)
        if serve_admin:
            if is_served(settings.admin_token, settings.admin_addr):
                self.live = LivePage(settings.admin_token, lambda: route_samples(self.routes), route_cold_waits(
                    self.routes), options.get("scale_down_after") or (lambda key: None))
            self.admin = AdminServer(AdminContext(settings, self.routes, self.snapshot), self.live)
            components.append(self.admin)
            if self.live is not None:
                components.append(self.live)  # the page closes its streams before the server stops
        runner = SourceRunner(source, self.routes)
        table = self.routes
        self.reporter.routed = lambda: table.routes if runner.watch.synced.is_set() else None
        components += [self.reporter, runner, ProxyComponent(self.server, settings, reuse_port=reuse_port)]
        self.components = components

    def _on_wake(self, key: str) -> None:
        self.reporter.wake(key)
        nudge: Callable[[str], None] | None = getattr(self.source, "nudge", None)
        if nudge is not None:
            nudge(key)

    def _holding(self, key: str) -> bool:
        route = self.routes.get(key)
        return route is not None and route.state is not None and (
            len(route.state.queue) > 0 or self.h2.held_count(key) > 0)

    def metrics_snapshot(self) -> Snapshot:
        """As ``snapshot``, with the live counter objects instead of copies: /metrics reads them at once."""
        return {
            "backends": self.counters.backends,
            "unrouted": self.counters.unrouted.snapshot(),
            "publisher": publisher_stats(getattr(self.publisher, "stats", None)),
            "routes": len(self.routes),
            "connections": len(self.server.connections) + len(self.h2.connections),
        }

    def snapshot(self) -> Snapshot:
        return {
            "backends": self.counters.snapshot(),
            "unrouted": self.counters.unrouted.snapshot(),
            "publisher": publisher_stats(getattr(self.publisher, "stats", None)),
            "routes": len(self.routes),
            "connections": len(self.server.connections) + len(self.h2.connections),
        }


def make_publisher(transport: Transport) -> Publisher:
    publisher: Publisher = ActivityPublisher(transport)
    return publisher


def build_proxy(settings: Settings, source: RouteSource, transport: Transport | None = None,
                **options: Any) -> list[Component]:
    """The components of one proxy process, for ``Lifecycle``; options: serve_admin, serve_metrics, reuse_port."""
    return build(settings, source, transport, **options).components


def build(settings: Settings, source: RouteSource, transport: Transport | None = None, **options: Any) -> Proxy:
    publisher = make_publisher(transport if transport is not None else open_transport(settings.bus))
    return Proxy(settings, source, publisher, **options)


def make_source(settings: Settings) -> RouteSource:
    if settings.routes == "kubernetes":
        # Load the cluster configuration now, so a proxy without one stops at start with the reason.
        source: RouteSource = KubernetesSource(settings, cluster=Cluster.from_environment())
        return source
    load_routes_file(settings.routes)  # fail at start, with the file's own error
    return FileSource(settings.routes)
