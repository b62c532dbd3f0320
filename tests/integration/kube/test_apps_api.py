"""The admin API's /api/v1 routes over a real socket, talking through the real kubernetes client to a fake
API server: auth, validation, create (objects checked against the Kubernetes and KEDA schemas), rollback,
conflicts, list, get and delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest

from kedahttp.kube.cluster import Cluster
from kedahttp.process.settings import load
from tests.harness.admin import SCALER_ADDRESS, Admin, AdminContext, admin_settings, start_admin
from tests.harness.fake_apiserver import FakeApiServer
from tests.harness.schemas import validate_builtin, validate_scaled_object
from tests.harness.servers import free_port

APP = {"name": "hello", "image": "ghcr.io/acme/hello:1", "port": 8080, "hosts": ["hello.example.com"]}


async def call(admin: Admin, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    headers = kwargs.pop("headers", admin.headers)
    async with aiohttp.ClientSession() as session, session.request(
        method, admin.url + path, json=body, headers=headers, **kwargs,
    ) as response:
        data = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, data


def names(apiserver: FakeApiServer, kind: str) -> list[str]:
    return [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in apiserver.of_kind(kind)]


def all_names(apiserver: FakeApiServer) -> dict[str, list[str]]:
    return {kind: names(apiserver, kind) for kind in ("Deployment", "Service", "ScaledObject")}


EMPTY: dict[str, list[str]] = {"Deployment": [], "Service": [], "ScaledObject": []}


# -- auth ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dDBrZW4tZm9yLXRlc3Rz"}, {"Authorization": "Bearer"}],
)
async def test_requests_without_the_right_token_are_refused(admin: Admin, apiserver: FakeApiServer, headers: dict[str, str]) -> None:
    for method, path, body in [("GET", "/api/v1/apps", None), ("POST", "/api/v1/apps", APP),
                               ("DELETE", "/api/v1/apps/default/hello", None), ("GET", "/api/v1/openapi.json", None)]:
        async with aiohttp.ClientSession() as session, session.request(
            method, admin.url + path, json=body, headers=headers,
        ) as response:
            assert response.status == 401, (method, path)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "token" in (await response.json())["error"]
    assert apiserver.requests == []  # nothing reached the cluster


async def test_the_right_token_is_accepted(admin: Admin) -> None:
    status, data = await call(admin, "GET", "/api/v1/apps")
    assert (status, data) == (200, {"apps": []})


async def test_without_a_token_only_loopback_serves(cluster: Cluster) -> None:
    # Bound to loopback in both cases; what counts is the configured ADMIN_ADDR.
    for admin_addr, expected in [("0.0.0.0", 403), ("127.0.0.1", 200)]:
        port = free_port()
        context = AdminContext(load({"admin_addr": f"{admin_addr}:{port}"}, environ={}), cluster)
        runner, _ = await start_admin(context, port)
        try:
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/api/v1/apps") as response:
                assert response.status == expected
                if expected == 403:
                    assert "KEDAHTTP_ADMIN_TOKEN" in (await response.json())["error"]
        finally:
            await runner.cleanup()


# -- create ----------------------------------------------------------------------------------------------


async def test_create_makes_three_valid_objects(admin: Admin, apiserver: FakeApiServer) -> None:
    body = {**APP, "hosts": ["hello.example.com", "*.hello.example.org"], "pathPrefixes": ["/api"],
            "maxReplicas": 3, "targetConcurrency": 5, "targetRequestRate": 20, "coldStartTimeoutSeconds": 30,
            "env": {"GREETING": "hi"}}
    status, view = await call(admin, "POST", "/api/v1/apps", body)
    assert status == 201, view
    assert all_names(apiserver) == {"Deployment": ["default/hello"], "Service": ["default/hello"],
                                    "ScaledObject": ["default/hello"]}
    deployment = apiserver.get("Deployment", "default", "hello")
    service = apiserver.get("Service", "default", "hello")
    scaled = apiserver.get("ScaledObject", "default", "hello")
    assert deployment and service and scaled
    validate_builtin(deployment)
    validate_builtin(service)
    validate_scaled_object(scaled)
    assert deployment["spec"]["replicas"] == 0
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/acme/hello:1"
    assert service["metadata"]["annotations"]["kedahttp.dev/hosts"] == "hello.example.com,*.hello.example.org"
    assert service["metadata"]["annotations"]["kedahttp.dev/path-prefixes"] == "/api"
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "external-push"
    assert trigger["metadata"] == {"scalerAddress": SCALER_ADDRESS, "backend": "default/hello",
                                   "targetConcurrency": "5", "targetRequestRate": "20"}
    uid = deployment["metadata"]["uid"]
    assert service["metadata"]["ownerReferences"][0]["uid"] == uid
    assert scaled["metadata"]["ownerReferences"][0]["uid"] == uid
    for obj in (deployment, service, scaled):
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kedahttp"
    # the answer is the app as GET shows it
    assert view["name"] == "hello" and view["namespace"] == "default"
    assert view["hosts"] == body["hosts"] and view["maxReplicas"] == 3 and view["env"] == {"GREETING": "hi"}
    assert view["status"]["missing"] == []
    assert view == (await call(admin, "GET", "/api/v1/apps/default/hello"))[1]


async def test_create_conflict_is_409_and_leaves_the_existing_app_alone(admin: Admin, apiserver: FakeApiServer) -> None:
    assert (await call(admin, "POST", "/api/v1/apps", APP))[0] == 201
    before = {kind: apiserver.of_kind(kind) for kind in ("Deployment", "Service", "ScaledObject")}
    status, data = await call(admin, "POST", "/api/v1/apps", {**APP, "image": "other:2"})
    assert status == 409
    assert "already exists" in data["error"]
    assert {kind: apiserver.of_kind(kind) for kind in before} == before


async def test_a_foreign_service_of_the_same_name_is_409_and_rolls_back(admin: Admin, apiserver: FakeApiServer) -> None:
    foreign = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello", "namespace": "default"},
               "spec": {"ports": [{"port": 80}]}}
    apiserver.put(foreign)
    status, data = await call(admin, "POST", "/api/v1/apps", APP)
    assert status == 409
    assert data["failed"] == "Service" and data["rolledBack"] == ["Deployment"] and data["leftOver"] == []
    assert "Service default/hello already exists" in data["error"]
    assert all_names(apiserver) == {**EMPTY, "Service": ["default/hello"]}
    assert "annotations" not in apiserver.get("Service", "default", "hello")["metadata"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("fail_kind", "status", "expected_status", "rolled_back"),
    [
        ("Service", 403, 502, ["Deployment"]),
        ("ScaledObject", 500, 503, ["Service", "Deployment"]),
        ("ScaledObject", 422, 422, ["Service", "Deployment"]),
    ],
)
async def test_a_failed_create_removes_what_was_made(
    admin: Admin, apiserver: FakeApiServer, fail_kind: str, status: int, expected_status: int, rolled_back: list[str],
) -> None:
    apiserver.fail("POST", fail_kind, status, "no you don't")
    code, data = await call(admin, "POST", "/api/v1/apps", APP)
    assert code == expected_status
    assert data["failed"] == fail_kind
    assert data["rolledBack"] == rolled_back
    assert "no you don't" in data["error"] and "rolled back" in data["error"]
    assert all_names(apiserver) == EMPTY
    # rolled back by uid, so a same-named object made meanwhile by someone else would have survived
    deletes = [r for r in apiserver.requests if r.method == "DELETE"]
    assert len(deletes) == len(rolled_back)
    assert all(r.body["preconditions"]["uid"] for r in deletes)
    # and the app can be created afterwards
    assert (await call(admin, "POST", "/api/v1/apps", APP))[0] == 201


async def test_without_keda_the_create_says_so_and_rolls_back(admin: Admin, apiserver: FakeApiServer) -> None:
    apiserver.unserve("ScaledObject")
    status, data = await call(admin, "POST", "/api/v1/apps", APP)
    assert status == 502
    assert "KEDA" in data["error"]
    assert all_names(apiserver) == {**EMPTY, "ScaledObject": []}


async def test_a_failed_rollback_reports_what_is_left(admin: Admin, apiserver: FakeApiServer) -> None:
    apiserver.fail("POST", "ScaledObject", 500)
    apiserver.fail("DELETE", "Service", 500)
    status, data = await call(admin, "POST", "/api/v1/apps", APP)
    assert status == 503
    assert (data["rolledBack"], data["leftOver"]) == (["Deployment"], ["Service"])
    assert "left over" in data["error"]
    assert all_names(apiserver) == {**EMPTY, "Service": ["default/hello"]}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"port": 0}, "port"),
        ({"name": "Hello_World"}, "name"),
        ({"hosts": ["ok.example.com", "-bad-.example.com"]}, "hosts[1]"),
        ({"pathPrefixes": ["api"]}, "pathPrefixes[0]"),
        ({"minReplicas": 5, "maxReplicas": 2}, "maxReplicas"),
        ({"targetConcurrency": 0}, "targetConcurrency"),
        ({"image": None}, "image"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_bad_input_is_422_naming_the_field(admin: Admin, apiserver: FakeApiServer, changes: dict[str, Any], field: str) -> None:
    status, data = await call(admin, "POST", "/api/v1/apps", {**APP, **changes})
    assert status == 422
    assert data["field"] == field
    assert [r for r in apiserver.requests if r.method == "POST"] == []


async def test_a_host_served_by_another_app_is_422(admin: Admin, apiserver: FakeApiServer) -> None:
    assert (await call(admin, "POST", "/api/v1/apps", {**APP, "pathPrefixes": ["/", "/api"]}))[0] == 201
    other = {**APP, "name": "other", "namespace": "team", "hosts": ["other.example.com", "HELLO.example.com"],
             "pathPrefixes": ["/api"]}
    status, data = await call(admin, "POST", "/api/v1/apps", other)
    assert status == 422
    assert data["field"] == "hosts[1]"
    assert "default/hello" in data["error"]
    # the same host under another prefix is a different route, and allowed
    status, _ = await call(admin, "POST", "/api/v1/apps", {**other, "pathPrefixes": ["/other"]})
    assert status == 201


async def test_bodies_that_are_not_json_or_too_large(admin: Admin, apiserver: FakeApiServer) -> None:
    status, data = await call(admin, "POST", "/api/v1/apps", data=b"{not json", headers=admin.headers)
    assert status == 400 and "JSON" in data["error"]
    big = {**APP, "env": {f"V{i}": "x" * 100 for i in range(700)}}
    status, data = await call(admin, "POST", "/api/v1/apps", big)
    assert status == 413

    async def chunks() -> Any:  # no Content-Length: the limit holds while reading
        for _ in range(80):
            yield b" " * 1024

    status, _ = await call(admin, "POST", "/api/v1/apps", data=chunks(), headers=admin.headers)
    assert status == 413
    assert apiserver.requests == []


async def test_watch_namespace_limits_the_api(cluster: Cluster, apiserver: FakeApiServer) -> None:
    port = free_port()
    context = AdminContext(admin_settings(port, watch_namespace="apps"), cluster)
    runner, _ = await start_admin(context, port)
    admin = Admin(f"http://127.0.0.1:{port}", context=context, api=None, headers={"Authorization": "Bearer t0ken-for-tests"})  # type: ignore[arg-type]
    try:
        status, data = await call(admin, "POST", "/api/v1/apps", {**APP, "namespace": "default"})
        assert (status, data["field"]) == (422, "namespace")
        status, view = await call(admin, "POST", "/api/v1/apps", APP)  # no namespace: the watched one
        assert (status, view["namespace"]) == (201, "apps")
        assert (await call(admin, "GET", "/api/v1/apps/default/hello"))[0] == 404
        assert (await call(admin, "DELETE", "/api/v1/apps/default/hello"))[0] == 404
        assert (await call(admin, "GET", "/api/v1/apps?namespace=default"))[0] == 404
        status, listed = await call(admin, "GET", "/api/v1/apps")
        assert [(a["namespace"], a["name"]) for a in listed["apps"]] == [("apps", "hello")]
        assert any(r.path == "/api/v1/namespaces/apps/services" for r in apiserver.requests)  # scoped lists
    finally:
        await runner.cleanup()


# -- list, get, delete ---------------------------------------------------------------------------------


async def test_list_and_get_show_status(admin: Admin, apiserver: FakeApiServer) -> None:
    assert (await call(admin, "POST", "/api/v1/apps", APP))[0] == 201
    assert (await call(admin, "POST", "/api/v1/apps", {**APP, "name": "second", "namespace": "team",
                                                       "hosts": ["second.example.com"]}))[0] == 201
    deployment = apiserver.get("Deployment", "default", "hello")
    assert deployment is not None
    apiserver.put({**deployment, "status": {"replicas": 2, "readyReplicas": 1}})  # as the controller would
    apiserver.put({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "plain", "namespace": "default"},
                   "spec": {}})  # not ours: never shown
    admin.context.statuses["default/hello"] = {"inFlight": 3, "requestRate": 1.5}

    status, data = await call(admin, "GET", "/api/v1/apps")
    assert status == 200
    assert [(a["namespace"], a["name"]) for a in data["apps"]] == [("default", "hello"), ("team", "second")]
    hello = data["apps"][0]
    assert hello["status"] == {"replicas": 2, "readyReplicas": 1, "missing": [], "inFlight": 3, "requestRate": 1.5}
    assert data["apps"][1]["status"]["readyReplicas"] == 0

    status, data = await call(admin, "GET", "/api/v1/apps?namespace=team")
    assert [a["name"] for a in data["apps"]] == ["second"]
    status, data = await call(admin, "GET", "/api/v1/apps?namespace=Bad_NS")
    assert (status, data["field"]) == (422, "namespace")
    status, one = await call(admin, "GET", "/api/v1/apps/default/hello")
    assert status == 200 and one == hello
    for path in ("/api/v1/apps/default/nope", "/api/v1/apps/default/plain", "/api/v1/apps/Bad_NS/x"):
        status, data = await call(admin, "GET", path)
        assert status == 404, path
        assert "no app" in data["error"]


async def test_delete_removes_all_three_and_only_ours(admin: Admin, apiserver: FakeApiServer) -> None:
    assert (await call(admin, "POST", "/api/v1/apps", APP))[0] == 201
    apiserver.put({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "plain", "namespace": "default"},
                   "spec": {}})
    status, _ = await call(admin, "DELETE", "/api/v1/apps/default/hello")
    assert status == 204
    assert all_names(apiserver) == {**EMPTY, "Deployment": ["default/plain"]}
    deleted = [r.path.rsplit("/", 2)[-2] for r in apiserver.requests if r.method == "DELETE"]
    assert deleted == ["scaledobjects", "services", "deployments"]  # scaling stops first
    status, data = await call(admin, "DELETE", "/api/v1/apps/default/hello")
    assert status == 404 and "no app" in data["error"]
    assert (await call(admin, "DELETE", "/api/v1/apps/default/plain"))[0] == 404
    assert apiserver.get("Deployment", "default", "plain") is not None


async def test_a_partial_app_shows_what_is_missing_and_deletes(admin: Admin, apiserver: FakeApiServer) -> None:
    assert (await call(admin, "POST", "/api/v1/apps", APP))[0] == 201
    apiserver.remove("Service", "default", "hello")
    status, view = await call(admin, "GET", "/api/v1/apps/default/hello")
    assert status == 200 and view["status"]["missing"] == ["Service"]
    assert (await call(admin, "DELETE", "/api/v1/apps/default/hello"))[0] == 204
    assert all_names(apiserver) == EMPTY


async def test_cluster_outage_is_503(admin: Admin, apiserver: FakeApiServer) -> None:
    apiserver.fail("GET", "Service", 503, "etcd is sad", times=10)
    status, data = await call(admin, "GET", "/api/v1/apps")
    assert status == 503 and "etcd is sad" in data["error"]


async def test_openapi_document_describes_the_create_body(admin: Admin) -> None:
    status, doc = await call(admin, "GET", "/api/v1/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {"/api/v1/apps", "/api/v1/apps/{namespace}/{name}", "/api/v1/openapi.json"}
    schema = {**doc["components"]["schemas"]["AppCreate"], "components": doc["components"]}
    jsonschema.validate(APP, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**APP, "port": 0}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**APP, "replicas": 1}, schema)


async def test_the_cluster_comes_from_kubeconfig_when_not_given(
    kubeconfig: Path, apiserver: FakeApiServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    port = free_port()
    context = AdminContext(admin_settings(port))  # no cluster: in-cluster config, else KUBECONFIG
    runner, _ = await start_admin(context, port)
    admin = Admin(f"http://127.0.0.1:{port}", context=context, api=None, headers={"Authorization": "Bearer t0ken-for-tests"})  # type: ignore[arg-type]
    try:
        assert (await call(admin, "POST", "/api/v1/apps", APP))[0] == 201
        assert apiserver.requests[0].path == "/api/v1/services"
    finally:
        await runner.cleanup()


async def test_no_kubernetes_configuration_is_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    port = free_port()
    context = AdminContext(admin_settings(port))
    runner, _ = await start_admin(context, port)
    admin = Admin(f"http://127.0.0.1:{port}", context=context, api=None, headers={"Authorization": "Bearer t0ken-for-tests"})  # type: ignore[arg-type]
    try:
        status, data = await call(admin, "GET", "/api/v1/apps")
        assert status == 503 and "kubeconfig" in data["error"]
    finally:
        await runner.cleanup()
