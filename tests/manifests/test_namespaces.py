"""The manifests follow the namespace they are installed in: an overlay that only says ``namespace: X``
renders every object, binding subject, scaler address and Service reference in X, for two different X,
with no trace of the base's ``kedahttp`` namespace left in any reference."""

from __future__ import annotations

import shutil

import pytest
import yaml

from kedahttp.kube.controller_main import own_namespace, scaler_address
from kedahttp.process import settings
from tests.harness import render
from tests.harness.render import Build

NAMESPACES = ("platform", "team-edge")
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "ClusterTriggerAuthentication"}


@pytest.fixture(scope="module", params=NAMESPACES)
def moved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Build, str]:
    namespace: str = request.param
    root = tmp_path_factory.mktemp(f"ns-{namespace}") / "manifests"
    shutil.copytree(render.MANIFESTS, root)
    overlay = root / "overlays" / f"in-{namespace}"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": namespace, "resources": ["../dev"],
    }))
    objects = render.build(overlay)
    text = yaml.safe_dump_all(objects)
    return namespace, Build(f"in-{namespace}", objects), text


def test_every_object_lands_in_the_namespace(moved: tuple[str, Build, str]) -> None:
    namespace, build, _ = moved
    assert [n["metadata"]["name"] for n in build.of_kind("Namespace")] == [namespace]
    for obj in build.objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == namespace, f"{obj['kind']}/{obj['metadata']['name']}"


def test_binding_subjects_follow(moved: tuple[str, Build, str]) -> None:
    namespace, build, _ = moved
    bindings = build.of_kind("ClusterRoleBinding", "RoleBinding")
    assert {b["metadata"]["name"] for b in bindings} >= {"kedahttp-proxy", "kedahttp-controller",
                                                         "kedahttp-controller-leader"}
    for binding in bindings:
        for subject in binding["subjects"]:
            assert subject["namespace"] == namespace, binding["metadata"]["name"]
            assert build.get("ServiceAccount", namespace, subject["name"]) is not None


def test_the_scaler_address_follows(moved: tuple[str, Build, str]) -> None:
    namespace, build, _ = moved
    workload, container = build.component("controller")
    env = build.environment(workload, container)
    controller = settings.load({}, environ=env, component="controller")
    address = scaler_address(controller, own_namespace(controller))
    assert address == f"kedahttp-scaler.{namespace}.svc:9090"
    service = build.get("Service", namespace, "kedahttp-scaler")
    assert service is not None and 9090 in {p["port"] for p in service["spec"]["ports"]}


def test_services_and_the_bus_resolve_in_the_namespace(moved: tuple[str, Build, str]) -> None:
    namespace, build, _ = moved
    for component in ("proxy", "scaler"):
        workload, container = build.component(component)
        bus = settings.load({}, environ=build.environment(workload, container), component=component).bus
        host = bus.split("://", 1)[1].split(":", 1)[0].split("/", 1)[0]
        name, _, rest = host.partition(".")
        assert rest in ("", f"{namespace}.svc", f"{namespace}.svc.cluster.local"), f"{component} bus {bus}"
        assert build.get("Service", namespace, name) is not None, f"{component}: bus host {host}"
    for service in build.of_kind("Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
                   for w in build.workloads()), service["metadata"]["name"]


def test_no_reference_names_the_base_namespace(moved: tuple[str, Build, str]) -> None:
    _, _, text = moved
    for needle in (".kedahttp.svc", "namespace: kedahttp\n"):
        assert needle not in text, f"{needle!r} is still in the render"

