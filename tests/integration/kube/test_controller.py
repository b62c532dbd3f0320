"""The HTTPApp controller against the fake API server, through the real client: statuses in the standard
shape, the ScaledObject it owns (created, changed with the app's targets so its generation moves, deleted
with the app), the user's own ScaledObject found by the backend it names, KEDA's verdict surfaced; and
Lease leader election between two real ``kedahttp controller`` processes, one of them SIGKILLed."""

from __future__ import annotations

import contextlib
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
from kedahttp.kube.controller_main import LEASE_NAME, ControllerComponent, ControllerMetrics
from kedahttp.process.settings import load, parse_address
from tests.harness.fake_apiserver import FakeApiServer
from tests.harness.kube_objects import eps, httpapp, service
from tests.harness.schemas import SCHEMAS, validate_scaled_object
from tests.harness.scrape import parse, scrape
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
