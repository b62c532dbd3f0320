"""The create body's validation (422 naming the field) and the objects an app becomes."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kedahttp.kube import appspec
from kedahttp.kube.appspec import AppSpec, SpecError
from tests.harness.schemas import validate_builtin, validate_scaled_object

BASE: dict[str, Any] = {"name": "hello", "image": "ghcr.io/acme/hello:1.2", "port": 8080, "hosts": ["hello.example.com"]}


def body(**changes: Any) -> dict[str, Any]:
    out = dict(BASE)
    for key, value in changes.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def test_minimal_body_gets_the_contract_defaults() -> None:
    spec = appspec.parse_app(BASE)
    assert spec == AppSpec(
        name="hello", namespace="default", image="ghcr.io/acme/hello:1.2", port=8080,
        hosts=("hello.example.com",), path_prefixes=("/",), min_replicas=0, max_replicas=10,
        target_concurrency=100.0, target_request_rate=None, cold_start_timeout_seconds=None, env=(),
    )
    assert appspec.parse_app(BASE, default_namespace="apps").namespace == "apps"


def test_full_body() -> None:
    spec = appspec.parse_app(body(
        namespace="team-a", hosts=["Hello.Example.com", "*.apps.example.com", "hello.example.com"],
        pathPrefixes=["/api", "/"], minReplicas=1, maxReplicas=5, targetConcurrency=20, targetRequestRate=7.5,
        coldStartTimeoutSeconds=30, env={"LOG_LEVEL": "debug", "app.mode": "x"},
    ))
    assert spec.namespace == "team-a"
    assert spec.hosts == ("hello.example.com", "*.apps.example.com")  # lower-cased, duplicates dropped
    assert spec.path_prefixes == ("/api", "/")
    assert (spec.min_replicas, spec.max_replicas) == (1, 5)
    assert (spec.target_concurrency, spec.target_request_rate, spec.cold_start_timeout_seconds) == (20, 7.5, 30)
    assert spec.env == (("LOG_LEVEL", "debug"), ("app.mode", "x"))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ...}, "name"),
        ({"name": "Hello"}, "name"),
        ({"name": "9lives"}, "name"),  # Service names start with a letter
        ({"name": "a" * 64}, "name"),
        ({"name": "ends-"}, "name"),
        ({"namespace": "Team"}, "namespace"),
        ({"namespace": 3}, "namespace"),
        ({"image": ""}, "image"),
        ({"image": "has space"}, "image"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": "8080"}, "port"),
        ({"port": True}, "port"),
        ({"port": 80.5}, "port"),
        ({"hosts": ...}, "hosts"),
        ({"hosts": []}, "hosts"),
        ({"hosts": "a.example.com"}, "hosts"),
        ({"hosts": ["ok.example.com", "bad_host"]}, "hosts[1]"),
        ({"hosts": ["a.example.com:8080"]}, "hosts[0]"),
        ({"hosts": ["http://a.example.com"]}, "hosts[0]"),
        ({"hosts": ["*"]}, "hosts[0]"),
        ({"hosts": ["a.*.example.com"]}, "hosts[0]"),
        ({"hosts": ["a,b.example.com"]}, "hosts[0]"),
        ({"hosts": ["x" * 64 + ".example.com"]}, "hosts[0]"),
        ({"pathPrefixes": ["api"]}, "pathPrefixes[0]"),
        ({"pathPrefixes": ["/", "/a b"]}, "pathPrefixes[1]"),
        ({"pathPrefixes": ["/a,b"]}, "pathPrefixes[0]"),
        ({"pathPrefixes": ["/a?x=1"]}, "pathPrefixes[0]"),
        ({"pathPrefixes": []}, "pathPrefixes"),
        ({"minReplicas": -1}, "minReplicas"),
        ({"maxReplicas": 0}, "maxReplicas"),
        ({"minReplicas": 3, "maxReplicas": 2}, "maxReplicas"),
        ({"targetConcurrency": 0}, "targetConcurrency"),
        ({"targetConcurrency": -5}, "targetConcurrency"),
        ({"targetConcurrency": "100"}, "targetConcurrency"),
        ({"targetRequestRate": 0}, "targetRequestRate"),
        ({"coldStartTimeoutSeconds": -1}, "coldStartTimeoutSeconds"),
        ({"env": ["A=1"]}, "env"),
        ({"env": {"A": 1}}, "env.A"),
        ({"env": {"1A": "x"}}, "env.1A"),
        ({"env": {"A=B": "x"}}, "env.A=B"),
        ({"replicas": 3}, "replicas"),  # unknown fields are named, not ignored
    ],
)
def test_bad_input_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        appspec.parse_app(body(**changes))
    assert caught.value.field == field
    assert caught.value.message


def test_body_must_be_an_object() -> None:
    with pytest.raises(SpecError) as caught:
        appspec.parse_app(["hello"])
    assert caught.value.field == "body"


SPEC = appspec.parse_app(body(
    namespace="team-a", hosts=["hello.example.com", "*.hello.example.org"], pathPrefixes=["/api", "/v2"],
    minReplicas=1, maxReplicas=4, targetConcurrency=10, targetRequestRate=2.5, coldStartTimeoutSeconds=45,
    env={"GREETING": "hi there"},
))


def test_deployment_starts_at_zero_replicas_and_is_valid_kubernetes() -> None:
    deployment = appspec.build_deployment(SPEC)
    validate_builtin(deployment)
    assert deployment["metadata"]["namespace"] == "team-a"
    assert deployment["metadata"]["labels"][appspec.MANAGED_BY_LABEL] == "kedahttp"
    spec = deployment["spec"]
    assert spec["replicas"] == 0
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == SPEC.image
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["env"] == [{"name": "GREETING", "value": "hi there"}]
    assert container["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert container["resources"]["requests"]
    # the "restricted" Pod Security Standard
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # the selector matches the pod labels and is the Service's selector
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert appspec.build_service(SPEC)["spec"]["selector"] == spec["selector"]["matchLabels"]


def test_service_carries_the_routes_and_is_valid_kubernetes() -> None:
    owner = appspec.owner_reference({"metadata": {"name": "hello", "uid": "1234"}})
    service = appspec.build_service(SPEC, owner)
    validate_builtin(service)
    meta = service["metadata"]
    assert meta["labels"] == {
        "app.kubernetes.io/name": "hello", "app.kubernetes.io/instance": "hello",
        "app.kubernetes.io/managed-by": "kedahttp",
    }
    assert meta["annotations"] == {
        "kedahttp.dev/hosts": "hello.example.com,*.hello.example.org",
        "kedahttp.dev/path-prefixes": "/api,/v2",
        "kedahttp.dev/cold-start-timeout-seconds": "45",
    }
    assert meta["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "hello", "uid": "1234"}]
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert "kedahttp.dev/cold-start-timeout-seconds" not in appspec.build_service(appspec.parse_app(BASE))["metadata"]["annotations"]


def test_scaled_object_is_valid_for_kedas_crd() -> None:
    scaled = appspec.build_scaled_object(SPEC, "kedahttp-scaler.kedahttp.svc:9090")
    validate_scaled_object(scaled)
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["metadata"]["labels"][appspec.MANAGED_BY_LABEL] == "kedahttp"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hello"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    assert spec["triggers"] == [{
        "type": "external-push",
        "metadata": {
            "scalerAddress": "kedahttp-scaler.kedahttp.svc:9090", "backend": "team-a/hello",
            "targetConcurrency": "10", "targetRequestRate": "2.5",
        },
    }]
    plain = appspec.build_scaled_object(appspec.parse_app(BASE), "s:9090")
    assert "targetRequestRate" not in plain["spec"]["triggers"][0]["metadata"]


def test_the_crd_check_would_catch_a_broken_scaled_object() -> None:
    scaled = appspec.build_scaled_object(SPEC, "s:9090")
    scaled["spec"]["triggers"][0]["metadata"]["targetConcurrency"] = 10  # numbers must be strings
    with pytest.raises(jsonschema.ValidationError):
        validate_scaled_object(scaled)
    scaled = appspec.build_scaled_object(SPEC, "s:9090")
    scaled["spec"]["minReplicas"] = 1  # a misspelt field is caught, as the API server would prune it
    with pytest.raises(jsonschema.ValidationError):
        validate_scaled_object(scaled)


def test_annotations_parse_back_to_the_routes() -> None:
    annotations = appspec.build_service(SPEC)["metadata"]["annotations"]
    assert appspec.routes_from_annotations(annotations) == appspec.RouteFields(
        SPEC.hosts, SPEC.path_prefixes, SPEC.cold_start_timeout_seconds,
    )
    assert appspec.routes_from_annotations({"kedahttp.dev/hosts": " a.example.com , B.example.com,"}) == (
        appspec.RouteFields(("a.example.com", "b.example.com"), ("/",), None)
    )


@pytest.mark.parametrize(
    ("annotations", "field"),
    [
        ({}, "kedahttp.dev/hosts"),
        ({"kedahttp.dev/hosts": " , "}, "kedahttp.dev/hosts"),
        ({"kedahttp.dev/hosts": "ok.example.com,not a host"}, "kedahttp.dev/hosts"),
        ({"kedahttp.dev/hosts": "a.example.com", "kedahttp.dev/path-prefixes": "api"}, "kedahttp.dev/path-prefixes"),
        ({"kedahttp.dev/hosts": "a.example.com", "kedahttp.dev/cold-start-timeout-seconds": "soon"},
         "kedahttp.dev/cold-start-timeout-seconds"),
        ({"kedahttp.dev/hosts": "a.example.com", "kedahttp.dev/cold-start-timeout-seconds": "0"},
         "kedahttp.dev/cold-start-timeout-seconds"),
    ],
)
def test_malformed_annotations_name_the_annotation(annotations: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        appspec.routes_from_annotations(annotations)
    assert caught.value.field == field


def test_claims_are_host_and_prefix_pairs() -> None:
    service = appspec.build_service(SPEC)
    assert appspec.claims_of_service(service) == SPEC.claims() == {
        ("hello.example.com", "/api"), ("hello.example.com", "/v2"),
        ("*.hello.example.org", "/api"), ("*.hello.example.org", "/v2"),
    }
    assert appspec.claims_of_service({"metadata": {"annotations": {"kedahttp.dev/hosts": "bad host"}}}) == set()


@pytest.mark.parametrize(("value", "text"), [(100.0, "100"), (2.5, "2.5"), (1, "1"), (0.1, "0.1"), (1e20, "1e+20")])
def test_format_number(value: float, text: str) -> None:
    assert appspec.format_number(value) == text


def test_view_of_a_partial_app_names_what_is_missing() -> None:
    service = appspec.build_service(SPEC)
    view = appspec.app_view(None, service, None)
    assert view["name"] == "hello" and view["namespace"] == "team-a"
    assert view["hosts"] == list(SPEC.hosts)
    assert view["image"] is None
    assert view["status"]["missing"] == ["Deployment", "ScaledObject"]


labels_ = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hosts_ = st.builds(lambda wild, parts: ("*." if wild else "") + ".".join(parts), st.booleans(), st.lists(labels_, min_size=1, max_size=3))
prefixes_ = st.lists(st.from_regex(r"/[a-zA-Z0-9/_.~-]{0,12}", fullmatch=True), min_size=1, max_size=3)
positive_ = st.floats(min_value=0.001, max_value=1e6, allow_nan=False) | st.integers(min_value=1, max_value=10**6)


@settings(max_examples=60, deadline=None)
@given(
    name=labels_, namespace=labels_, port=st.integers(1, 65535), hosts=st.lists(hosts_, min_size=1, max_size=4),
    prefixes=prefixes_, low=st.integers(0, 5), extra=st.integers(0, 5), concurrency=positive_,
    rate=st.none() | positive_, cold=st.none() | positive_,
    env=st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True),
                         st.text(st.characters(exclude_characters="\x00"), max_size=20), max_size=3),
)
def test_an_app_reads_back_as_it_was_created(
    name: str, namespace: str, port: int, hosts: list[str], prefixes: list[str], low: int, extra: int,
    concurrency: float, rate: float | None, cold: float | None, env: dict[str, str],
) -> None:
    spec = appspec.parse_app({
        "name": name, "namespace": namespace, "image": "img:1", "port": port, "hosts": hosts,
        "pathPrefixes": prefixes, "minReplicas": low, "maxReplicas": max(1, low + extra),
        "targetConcurrency": concurrency, "targetRequestRate": rate, "coldStartTimeoutSeconds": cold, "env": env,
    })
    deployment = appspec.build_deployment(spec)
    service = appspec.build_service(spec)
    scaled = appspec.build_scaled_object(spec, "scaler:9090")
    view = appspec.app_view(deployment, service, scaled)
    expected = appspec.spec_fields(spec)
    assert {key: view[key] for key in expected} == expected
    # and what the view shows is a valid create body for the same app
    assert appspec.parse_app({k: v for k, v in expected.items() if v is not None}) == spec
    routes = appspec.routes_from_annotations(service["metadata"]["annotations"])
    assert (routes.hosts, routes.path_prefixes) == (spec.hosts, spec.path_prefixes)
