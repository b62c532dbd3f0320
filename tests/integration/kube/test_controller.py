"""The HTTPApp controller against the fake API server, through the real client: statuses in the standard
shape, the ScaledObject it owns (created, changed with the app's targets so its generation moves, deleted
with the app), the user's own ScaledObject found by the backend it names, KEDA's verdict surfaced; and
Lease leader election between two real ``kedahttp controller`` processes, one of them SIGKILLed; and
``status.inFlight``/``active`` asked from a real scaler (fed by a simulated proxy over real Redis),
plaintext and mTLS, written only when they change, left alone while the scaler is unreachable."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kedahttp.kube.cluster import Cluster
from kedahttp.kube.controller import Controller
from kedahttp.kube.controller_main import LEASE_NAME, ControllerComponent, ControllerMetrics
from kedahttp.kube.live import ScalerClient, ScalerTlsError, scaler_tls
from kedahttp.process.settings import load, parse_address
from tests.harness.certs import make_ca, make_signed
from tests.harness.fake_apiserver import FakeApiServer
from tests.harness.kube_objects import eps, httpapp, service
from tests.harness.scaler import FakeProxy, running_scaler, steady
from tests.harness.schemas import SCHEMAS, validate_httpapp, validate_scaled_object
from tests.harness.scrape import parse, scrape
from tests.harness.servers import RedisServer, free_port
from tests.harness.waiting import until

pytestmark = pytest.mark.timeout(90)
NAMESPACE = "kedahttp"  # the controller's own: its Lease and the scaler Service live here


@contextlib.asynccontextmanager
async def running_controller(cluster: Cluster, identity: str = "test-controller",
                             **flags: str) -> AsyncIterator[ControllerComponent]:
    settings = load({"controller_namespace": NAMESPACE, "lease_duration_seconds": "2", **flags}, environ={})
    component = ControllerComponent(settings, cluster, identity=identity)
    await component.start()
    try:
        yield component
    finally:
        await component.close()


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            return item
    return {}


def status_of(apiserver: FakeApiServer, type_: str, name: str = "hello", ns: str = "default") -> str:
    return str(condition(apiserver.get("HTTPApp", ns, name), type_).get("status"))


def keda_reports(apiserver: FakeApiServer, name: str, ready: bool, message: str = "", active: bool = False) -> None:
    """KEDA's operator writing the ScaledObject's status."""
    so = apiserver.get("ScaledObject", "default", name)
    assert so is not None
    apiserver.put({**so, "status": {"conditions": [
        {"type": "Ready", "status": str(ready), "reason": "ScaledObjectReady" if ready else "ScaledObjectCheckFailed",
         "message": message},
        {"type": "Active", "status": str(active), "reason": "", "message": ""},
    ]}})


SCALING = {"targetConcurrency": 10, "minReplicas": 0, "maxReplicas": 5, "cooldownPeriodSeconds": 60}


async def test_status_and_the_owned_scaled_object(apiserver: FakeApiServer, cluster: Cluster) -> None:
    async with running_controller(cluster) as component:
        apiserver.put(httpapp("hello", scaling=SCALING))
        await until(lambda: status_of(apiserver, "ServiceReady") == "False", what="ServiceReady False")
        app = apiserver.get("HTTPApp", "default", "hello")
        assert app is not None
        service_ready = condition(app, "ServiceReady")
        assert service_ready["reason"] == "ServiceNotFound"
        assert "Service default/hello not found" in service_ready["message"]
        assert condition(app, "Routed")["status"] == "True"
        assert condition(app, "Ready")["status"] in ("False", "Unknown")
        assert app["status"]["observedGeneration"] == app["metadata"]["generation"]
        for item in app["status"]["conditions"]:  # the standard shape
            assert set(item) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}

        # the ScaledObject, owned by the HTTPApp
        so = apiserver.get("ScaledObject", "default", "hello")
        assert so is not None
        assert so["metadata"]["ownerReferences"] == [{
            "apiVersion": "kedahttp.dev/v1alpha1", "kind": "HTTPApp", "name": "hello",
            "uid": app["metadata"]["uid"], "controller": True,
        }]
        trigger = so["spec"]["triggers"][0]
        assert trigger["type"] == "external-push"
        assert trigger["metadata"] == {"scalerAddress": f"kedahttp-scaler.{NAMESPACE}.svc:9090",
                                       "backend": "default/hello", "targetConcurrency": "10"}
        assert so["spec"]["cooldownPeriod"] == 60 and so["spec"]["maxReplicaCount"] == 5
        assert so["metadata"]["generation"] == 1
        if (SCHEMAS / "keda.sh_scaledobjects.yaml").exists():  # KEDA's CRD, where the checkout has it
            validate_scaled_object(so)

        # the Service and a ready pod appear: ServiceReady goes True and the replicas are counted
        apiserver.put(service("hello"))
        apiserver.put(eps("hello-1", "hello", ready=["10.0.0.1"]))
        await until(lambda: status_of(apiserver, "ServiceReady") == "True", what="ServiceReady True")
        await until(lambda: (apiserver.get("HTTPApp", "default", "hello") or {})["status"].get("readyReplicas") == 1,
                    what="one ready replica")
        assert status_of(apiserver, "ScaledObjectReady") == "Unknown"  # KEDA has not said anything yet
        keda_reports(apiserver, "hello", ready=True, active=True)
        await until(lambda: status_of(apiserver, "Ready") == "True", what="Ready True")
        assert (apiserver.get("HTTPApp", "default", "hello") or {})["status"]["active"] == "True"

        # a target change changes the ScaledObject's spec, so its generation moves and KEDA rebuilds the HPA
        changed = httpapp("hello", scaling={**SCALING, "targetConcurrency": 25})
        apiserver.put(changed)
        await until(lambda: (apiserver.get("ScaledObject", "default", "hello") or {})["metadata"]["generation"] == 2,
                    what="the ScaledObject's generation bumped")
        so = apiserver.get("ScaledObject", "default", "hello")
        assert so is not None and so["spec"]["triggers"][0]["metadata"]["targetConcurrency"] == "25"

        # KEDA finds the scaler refusing the trigger: the HTTPApp says so, with the scaler's words
        keda_reports(apiserver, "hello", ready=False,
                     message='rpc error: code = NotFound desc = backend "default/hello" is not routed by any proxy')
        await until(lambda: status_of(apiserver, "ScaledObjectReady") == "False", what="ScaledObjectReady False")
        app = apiserver.get("HTTPApp", "default", "hello")
        assert "is not routed by any proxy" in condition(app, "ScaledObjectReady")["message"]
        assert condition(app, "Ready")["reason"] == "ScaledObjectCheckFailed"

        # an event that changes nothing writes nothing (and the controller's own status write, which comes
        # back as an event, does not make it write again)
        writes = len(apiserver.requests_for("PUT", "/httpapps/hello/status"))
        passes = component.controller.passes  # type: ignore[union-attr]
        apiserver.put(service("hello"))
        await until(lambda: component.controller.passes > passes, what="a pass")  # type: ignore[union-attr]
        assert len(apiserver.requests_for("PUT", "/httpapps/hello/status")) == writes

        # deleting the HTTPApp deletes what it owns (a real cluster's garbage collector would too)
        apiserver.remove("HTTPApp", "default", "hello")
        await until(lambda: apiserver.get("ScaledObject", "default", "hello") is None, what="ScaledObject deleted")
        assert apiserver.get("Service", "default", "hello") is not None  # the user's Service is theirs


async def test_a_scaled_object_of_the_users_own(apiserver: FakeApiServer, cluster: Cluster) -> None:
    apiserver.put(service("shop"))
    apiserver.put(httpapp("shop"))  # no scaling block: the user brings the ScaledObject
    async with running_controller(cluster):
        await until(lambda: status_of(apiserver, "ScaledObjectReady", "shop") == "False", what="no ScaledObject")
        assert condition(apiserver.get("HTTPApp", "default", "shop"), "ScaledObjectReady")["reason"] == "NoScaledObject"
        apiserver.put({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "shop-scaler", "namespace": "default"},
            "spec": {"scaleTargetRef": {"name": "shop"}, "triggers": [{"type": "external-push", "metadata": {
                "scalerAddress": "kedahttp-scaler.kedahttp.svc:9090", "backend": "default/shop"}}]},
        })
        keda_reports(apiserver, "shop-scaler", ready=True)
        await until(lambda: status_of(apiserver, "Ready", "shop") == "True", what="Ready with the user's ScaledObject")
        assert (apiserver.get("HTTPApp", "default", "shop") or {})["status"]["scaledObject"] == "shop-scaler"
        # the controller never writes to a ScaledObject it does not own
        assert not apiserver.requests_for("PUT", "/scaledobjects/shop-scaler")
        assert not apiserver.requests_for("DELETE", "/scaledobjects")


async def test_with_tls_the_scaled_object_names_the_trigger_authentication(
    apiserver: FakeApiServer, cluster: Cluster,
) -> None:
    async with running_controller(cluster, scaler_trigger_authentication="kedahttp-scaler-tls"):
        apiserver.put(httpapp("hello", scaling=SCALING))
        await until(lambda: apiserver.get("ScaledObject", "default", "hello") is not None, what="ScaledObject")
    so = apiserver.get("ScaledObject", "default", "hello")
    assert so is not None
    trigger = so["spec"]["triggers"][0]
    assert trigger["authenticationRef"] == {"name": "kedahttp-scaler-tls", "kind": "ClusterTriggerAuthentication"}
    assert not {"caCert", "tlsClientCert", "tlsClientKey"} & set(trigger["metadata"])  # never a key in clear
    if (SCHEMAS / "keda.sh_scaledobjects.yaml").exists():
        validate_scaled_object(so)


async def test_a_host_taken_by_an_older_app_is_not_routed_and_says_why(
    apiserver: FakeApiServer, cluster: Cluster,
) -> None:
    older = httpapp("first", hosts=["shop.example.com"])
    older["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    apiserver.put(older)
    async with running_controller(cluster):
        await until(lambda: status_of(apiserver, "Routed", "first") == "True", what="first routed")
        apiserver.put(httpapp("second", hosts=["shop.example.com"]))  # created now: younger
        await until(lambda: status_of(apiserver, "Routed", "second") == "False", what="second not routed")
        routed = condition(apiserver.get("HTTPApp", "default", "second"), "Routed")
        assert routed["reason"] == "HostConflict" and "default/first" in routed["message"]
        apiserver.remove("HTTPApp", "default", "first")  # the host is free again
        await until(lambda: status_of(apiserver, "Routed", "second") == "True", what="second routed")


async def test_removing_scaling_deletes_the_owned_scaled_object(apiserver: FakeApiServer, cluster: Cluster) -> None:
    apiserver.put(httpapp("hello", scaling=SCALING))
    async with running_controller(cluster):
        await until(lambda: apiserver.get("ScaledObject", "default", "hello") is not None, what="ScaledObject")
        apiserver.put(httpapp("hello"))
        await until(lambda: apiserver.get("ScaledObject", "default", "hello") is None, what="ScaledObject deleted")
        await until(lambda: condition(apiserver.get("HTTPApp", "default", "hello"), "ScaledObjectReady").get("reason")
                    == "NoScaledObject", what="NoScaledObject")


async def test_only_the_leader_writes(apiserver: FakeApiServer, cluster: Cluster, kubeconfig: Path) -> None:
    second = Cluster.from_kubeconfig(str(kubeconfig))
    try:
        async with running_controller(cluster, "one") as one, running_controller(second, "two") as two:
            await until(lambda: one.elector.is_leader or two.elector.is_leader,  # type: ignore[union-attr]
                        what="a leader")
            apiserver.put(httpapp("hello", scaling=SCALING))
            await until(lambda: apiserver.get("ScaledObject", "default", "hello") is not None, what="ScaledObject")
            assert not (one.elector.is_leader and two.elector.is_leader)  # type: ignore[union-attr]
            lease = apiserver.get("Lease", NAMESPACE, LEASE_NAME)
            assert lease is not None
            assert lease["spec"]["holderIdentity"] in ("one", "two")
            assert len(apiserver.requests_for("POST", "/scaledobjects")) == 1
    finally:
        second.close()


# -- two real processes ---------------------------------------------------------------------------------------

LEASE_SECONDS = 2.0


def start_process(kubeconfig: Path, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KEDAHTTP_") and k != "KUBERNETES_SERVICE_HOST"},
        "KUBECONFIG": str(kubeconfig),
        "KEDAHTTP_ADMIN_ADDR": "127.0.0.1:0",
        "KEDAHTTP_METRICS_ADDR": "127.0.0.1:0",  # two replicas on one machine: each its own port
        "KEDAHTTP_CONTROLLER_NAMESPACE": NAMESPACE,
        "KEDAHTTP_LEASE_DURATION_SECONDS": str(LEASE_SECONDS),
        "KEDAHTTP_SHUTDOWN_DELAY_SECONDS": "0",
        "KEDAHTTP_LOG_FORMAT": "text",
    }
    with log_path.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "kedahttp", "controller"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def holder(apiserver: FakeApiServer) -> str:
    lease = apiserver.get("Lease", NAMESPACE, LEASE_NAME)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


async def test_a_follower_takes_over_within_the_lease_time_when_the_leader_is_killed(
    apiserver: FakeApiServer, kubeconfig: Path, tmp_path: Path,
) -> None:
    procs = {}
    try:
        for index in range(2):
            proc = start_process(kubeconfig, tmp_path / f"controller-{index}.log")
            procs[proc.pid] = proc
        await until(lambda: holder(apiserver), timeout=30, what="a leader")
        leader_pid = int(holder(apiserver).rpartition("_")[2])
        assert leader_pid in procs
        apiserver.put(httpapp("hello", scaling=SCALING))
        await until(lambda: apiserver.get("ScaledObject", "default", "hello") is not None, timeout=15,
                    what="the leader writes")

        procs[leader_pid].send_signal(signal.SIGKILL)  # no clean shutdown: the Lease is not given up
        procs[leader_pid].wait(10)
        killed = time.monotonic()
        took = await until(lambda: holder(apiserver) and int(holder(apiserver).rpartition("_")[2]) != leader_pid,
                           timeout=LEASE_SECONDS * 5, what="a new leader")
        # The follower waits the lease time from the last renewal it saw (up to one try, 2/15 of the lease,
        # after the kill), then takes the Lease at its next try: the lease time plus two tries, plus the
        # scheduling delays of a loaded two-core machine (measured 2.3-3.5 s at a load average of 7).
        retry = LEASE_SECONDS * 2 / 15
        assert took <= LEASE_SECONDS + 2 * retry + 1.0, f"took {took:.2f}s"
        assert time.monotonic() - killed >= LEASE_SECONDS * 0.5  # not before the lease could expire

        # and the new leader reconciles
        apiserver.put(httpapp("hello", scaling={**SCALING, "targetConcurrency": 7}))
        await until(lambda: (apiserver.get("ScaledObject", "default", "hello") or {})["spec"]["triggers"][0]
                    ["metadata"]["targetConcurrency"] == "7", timeout=15, what="the new leader writes")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_metrics_say_which_replica_leads_and_what_runs(apiserver: FakeApiServer, cluster: Cluster,
                                                             kubeconfig: Path) -> None:
    """Build info and process metrics, as on the proxy and the scaler, plus the Lease holder: 1 on one replica."""
    second = Cluster.from_kubeconfig(str(kubeconfig))
    try:
        async with running_controller(cluster, "one") as one, running_controller(second, "two") as two:
            servers = [ControllerMetrics(parse_address("127.0.0.1:0"), c) for c in (one, two)]
            for server in servers:
                await server.start()
            try:
                await until(lambda: one.elector.is_leader or two.elector.is_leader,  # type: ignore[union-attr]
                            what="a leader")
                leading = []
                for server in servers:
                    series = parse(await scrape(server.port))
                    [info] = [s for s in series if s.name == "kedahttp_build_info"]
                    assert (info.label("component"), info.label("data_path"), info.value) == ("controller", "none", 1)
                    assert any(s.name == "process_resident_memory_bytes" for s in series)
                    [leader] = [s.value for s in series if s.name == "kedahttp_controller_leader"]
                    leading.append(leader)
                assert sorted(leading) == [0, 1]
                assert leading[0] == (1 if one.elector.is_leader else 0)  # type: ignore[union-attr]
            finally:
                for server in servers:
                    await server.close()
    finally:
        second.close()


# -- status.inFlight and active, from the scaler ------------------------------------------------------------

APP = "default/hello"


def live_status(apiserver: FakeApiServer, name: str = "hello") -> tuple[Any, Any]:
    status = (apiserver.get("HTTPApp", "default", name) or {}).get("status") or {}
    return status.get("inFlight"), status.get("active")


def status_writes(apiserver: FakeApiServer, name: str = "hello") -> int:
    return len(apiserver.requests_for("PUT", f"/httpapps/{name}/status"))


@contextlib.asynccontextmanager
async def reporting_proxy(url: str, in_flight: int) -> AsyncIterator[FakeProxy]:
    proxy = FakeProxy.on(url)
    proxy.routed = frozenset({APP})
    await proxy.start()
    proxy.keep_reporting(steady(APP, in_flight=in_flight))
    try:
        yield proxy
    finally:
        await proxy.close()


async def settled(controller: Controller) -> None:
    """Until the reconcile worker has nothing left to do (the round's writes are done)."""
    passes = controller.passes
    controller.wake.set()
    await until(lambda: controller.passes > passes and not controller.dirty, what="a reconcile pass")


async def test_in_flight_comes_from_the_scaler_and_is_written_only_when_it_changes(
    apiserver: FakeApiServer, cluster: Cluster, redis_server: RedisServer,
) -> None:
    apiserver.put(service("hello"))
    apiserver.put(httpapp("hello", scaling=SCALING))
    async with reporting_proxy(redis_server.url, in_flight=3) as proxy, running_scaler(redis_server.url) as scaler:
        await until(lambda: scaler.state.aggregator.metrics(APP, time.time()).concurrency == 3.0, 10,
                    "a full window of reports")
        # rounds driven by the test (interval 0: no rounds of its own), so each one is counted exactly
        async with running_controller(cluster, scaler_address=scaler.target, status_interval_seconds="0") as component:
            controller = component.controller
            assert controller is not None
            await until(lambda: status_of(apiserver, "ServiceReady") == "True", what="reconciled")
            assert live_status(apiserver) == (None, None)  # the scaler not asked yet; KEDA has said nothing
            client = ScalerClient(scaler.target)

            await controller.ask_scaler_once(client)
            await until(lambda: live_status(apiserver) == (3, "True"), what="inFlight 3, active")
            app = apiserver.get("HTTPApp", "default", "hello")
            assert app is not None
            validate_httpapp(app)  # the CRD's schema takes the field
            # asked as KEDA asks: the ScaledObject's own name and its trigger's metadata
            writes = status_writes(apiserver)

            for _ in range(3):  # the same answer: nothing written
                await controller.ask_scaler_once(client)
                await settled(controller)
            assert status_writes(apiserver) == writes
            assert controller.live_rounds == 4

            # the load drops: one round, one write
            await proxy.stop_reporting()
            proxy.keep_reporting(steady(APP, in_flight=1))
            await until(lambda: scaler.state.aggregator.metrics(APP, time.time()).concurrency == 1.0, 10,
                        "the window at 1")
            await controller.ask_scaler_once(client)
            await until(lambda: live_status(apiserver) == (1, "True"), what="inFlight 1")
            await settled(controller)
            assert status_writes(apiserver) == writes + 1

            # KEDA's Active condition does not contradict the scaler's answer once the scaler has given one
            keda_reports(apiserver, "hello", ready=True, active=False)
            await until(lambda: status_of(apiserver, "Ready") == "True", what="Ready")
            assert live_status(apiserver) == (1, "True")


async def test_the_controller_asks_by_itself_at_its_interval(
    apiserver: FakeApiServer, cluster: Cluster, redis_server: RedisServer,
) -> None:
    apiserver.put(service("hello"))
    apiserver.put(httpapp("hello"))  # no scaling block and no ScaledObject yet: asked by the bare backend
    async with reporting_proxy(redis_server.url, in_flight=2), running_scaler(redis_server.url) as scaler:
        await until(lambda: scaler.state.aggregator.metrics(APP, time.time()).concurrency == 2.0, 10, "reports")
        async with running_controller(cluster, scaler_address=scaler.target, status_interval_seconds="0.2") as component:
            await until(lambda: live_status(apiserver) == (2, "True"), what="inFlight 2 without a ScaledObject")
            assert component.controller is not None
            rounds = component.controller.live_rounds
            await until(lambda: component.controller.live_rounds >= rounds + 3,  # type: ignore[union-attr]
                        what="three more rounds")
        # a follower (not leading) never asks: covered by is_leader in the loop; the leader asked by itself


async def test_an_unreachable_scaler_is_logged_once_and_the_status_left_alone(
    apiserver: FakeApiServer, cluster: Cluster, caplog: pytest.LogCaptureFixture,
) -> None:
    apiserver.put(service("hello"))
    apiserver.put(httpapp("hello", scaling=SCALING))
    address = f"127.0.0.1:{free_port()}"  # nothing listens
    async with running_controller(cluster, scaler_address=address, status_interval_seconds="0") as component:
        controller = component.controller
        assert controller is not None
        await until(lambda: status_of(apiserver, "ServiceReady") == "True", what="reconciled")
        before = apiserver.get("HTTPApp", "default", "hello")
        writes = status_writes(apiserver)
        with caplog.at_level(logging.INFO, logger="kedahttp.kube.controller"):
            for _ in range(3):
                await controller.ask_scaler_once(ScalerClient(address, timeout_seconds=1.0))
        unreachable = [r for r in caplog.records if r.getMessage().startswith("scaler unreachable")]
        assert len(unreachable) == 1, [r.getMessage() for r in caplog.records]
        assert controller.live_rounds == 0 and not controller.live
        await settled(controller)
        assert status_writes(apiserver) == writes
        assert apiserver.get("HTTPApp", "default", "hello") == before  # conditions untouched, no inFlight


async def test_in_flight_over_mtls(apiserver: FakeApiServer, cluster: Cluster, redis_server: RedisServer,
                                   tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    server = make_signed(ca, tmp_path, "server")  # names 127.0.0.1 too
    client = make_signed(ca, tmp_path, "controller", dns="kedahttp-controller", client=True)
    apiserver.put(service("hello"))
    apiserver.put(httpapp("hello", scaling=SCALING))
    async with reporting_proxy(redis_server.url, in_flight=4), running_scaler(
        redis_server.url, scaler_tls_cert_file=str(server.cert), scaler_tls_key_file=str(server.key),
        scaler_tls_client_ca_file=str(ca.cert),
    ) as scaler:
        await until(lambda: scaler.state.aggregator.metrics(APP, time.time()).concurrency == 4.0, 10, "reports")
        # without a client certificate the scaler refuses the controller: nothing is written
        async with running_controller(cluster, scaler_address=scaler.target, status_interval_seconds="0",
                                      scaler_ca_file=str(ca.cert)) as component:
            assert component.controller is not None
            await until(lambda: status_of(apiserver, "ServiceReady") == "True", what="reconciled")
            await component.controller.ask_scaler_once(ScalerClient(scaler.target, component.controller.config.scaler_tls))
            assert component.controller.live_rounds == 0 and live_status(apiserver)[0] is None
        async with running_controller(cluster, scaler_address=scaler.target, status_interval_seconds="0.2",
                                      scaler_ca_file=str(ca.cert), scaler_client_cert_file=str(client.cert),
                                      scaler_client_key_file=str(client.key)):
            await until(lambda: live_status(apiserver) == (4, "True"), what="inFlight 4 over mTLS")


def test_tls_settings_for_the_scaler_must_go_together(tmp_path: Path) -> None:
    def tls(**flags: str) -> object:
        return scaler_tls(load(flags, environ={}, component="controller"))

    assert tls() is None
    assert tls(scaler_ca_file="/ca.crt") is not None
    with pytest.raises(ScalerTlsError, match="KEDAHTTP_SCALER_CLIENT_KEY_FILE"):
        tls(scaler_ca_file="/ca.crt", scaler_client_cert_file="/tls.crt")
    with pytest.raises(ScalerTlsError, match="KEDAHTTP_SCALER_CA_FILE"):
        tls(scaler_client_cert_file="/tls.crt", scaler_client_key_file="/tls.key")
