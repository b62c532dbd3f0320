"""Every kustomization builds, every built-in object is valid for current Kubernetes, and every reference
between objects (ConfigMaps, Secrets, ServiceAccounts, Service ports) points at something that exists.
"""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from kedahttp import __version__
from tests.harness import render
from tests.harness.render import EXAMPLE, INSTALLS, Build

# The oldest release the manifests target (native gRPC probes and PDB unhealthyPodEvictionPolicy are GA
# there) and the newest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.31", kubernetes_validate.latest_version())
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("kedahttp.dev/v1alpha1", "HTTPApp"),
                ("keda.sh/v1alpha1", "ClusterTriggerAuthentication")}  # their CRDs: test_scaledobjects, test_httpapps
# and the Prometheus Operator's kinds of components/monitoring, in test_monitoring
CUSTOM_KINDS |= {("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
# and cert-manager's, of components/tls-cert-manager and examples/cert-manager-pki, in test_tls
CUSTOM_KINDS |= {("cert-manager.io/v1", "Certificate"), ("cert-manager.io/v1", "ClusterIssuer")}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "ClusterTriggerAuthentication",
                  "ClusterIssuer"}
# The namespaces of the installs kedahttp builds on, where examples/cert-manager-pki puts what they read.
OTHER_INSTALLS = {"cert-manager", "keda"}
# Secrets the operator creates by hand (docs/deploy.md), so that no credential lives in the repository.
OPERATOR_SECRETS = {"kedahttp-admin", "kedahttp-bus"}


def test_the_expected_kustomizations_exist() -> None:
    names = {render.rel(d) for d in render.kustomization_dirs()}
    assert names >= {"base", *INSTALLS, EXAMPLE}


def test_every_kustomization_builds(built: Build) -> None:
    assert built.objects, f"{built.name} renders no object"
    keys = [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in built.objects]
    assert len(keys) == len(set(keys)), f"{built.name}: duplicate objects"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_objects_pass_strict_validation(built: Build, version: str) -> None:
    errors = []
    for obj in built.objects:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not errors, f"{built.name} is not valid for Kubernetes {version}:\n" + "\n".join(errors)


def test_every_namespaced_object_names_its_namespace(built: Build) -> None:
    """Nothing may land in whatever namespace the operator's kubectl context happens to use."""
    namespaces = {o["metadata"]["name"] for o in built.of_kind("Namespace")}
    for obj in built.objects:
        if obj["kind"] in CLUSTER_SCOPED:
            continue
        namespace = obj["metadata"].get("namespace")
        assert namespace, f"{built.name}: {obj['kind']}/{obj['metadata']['name']} has no namespace"
        assert namespace in namespaces | OTHER_INSTALLS, f"{built.name}: namespace {namespace} is not created by this build"


def test_pods_reference_only_objects_that_exist(built: Build) -> None:
    for workload, container in built.containers():
        namespace = workload["metadata"]["namespace"]
        where = f"{built.name}: {workload['metadata']['name']}/{container['name']}"
        refs = [
            ("ConfigMap", s["configMapRef"]) if "configMapRef" in s else ("Secret", s["secretRef"])
            for s in container.get("envFrom", [])
        ]
        for entry in container.get("env", []):
            value_from = entry.get("valueFrom", {})
            refs += [("ConfigMap", value_from["configMapKeyRef"])] if "configMapKeyRef" in value_from else []
            refs += [("Secret", value_from["secretKeyRef"])] if "secretKeyRef" in value_from else []
        for kind, ref in refs:
            if built.get(kind, namespace, ref["name"]) is None:
                assert kind == "Secret" and ref["name"] in OPERATOR_SECRETS, (
                    f"{where}: no {kind} {ref['name']}"
                )
        built.environment(workload, container)  # keys of the Secrets and ConfigMaps that exist must exist
    for workload in built.workloads():
        pod = workload["spec"]["template"]["spec"]
        account = pod.get("serviceAccountName")
        if account:
            assert built.get("ServiceAccount", workload["metadata"]["namespace"], account), account


def test_services_select_pods_and_name_their_ports(built: Build) -> None:
    for service in built.of_kind("Service"):
        selector = service["spec"]["selector"]
        matches = [
            w
            for w in built.workloads()
            if w["metadata"]["namespace"] == service["metadata"]["namespace"]
            and selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matches, f"{built.name}: Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for workload in matches:
                ports = {
                    p.get("name", ""): p["containerPort"]
                    for c in workload["spec"]["template"]["spec"]["containers"]
                    for p in c.get("ports", [])
                }
                assert target in ports or target in ports.values(), (
                    f"{built.name}: Service {service['metadata']['name']} port {port['name']} targets "
                    f"{target!r}, which {workload['metadata']['name']} does not declare"
                )


def test_bindings_name_existing_roles_and_accounts(built: Build) -> None:
    for binding in built.of_kind("RoleBinding", "ClusterRoleBinding"):
        role_ref = binding["roleRef"]
        role_ns = "" if role_ref["kind"] == "ClusterRole" else binding["metadata"]["namespace"]
        assert built.get(role_ref["kind"], role_ns, role_ref["name"]), f"{built.name}: no {role_ref}"
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount", (
                f"{built.name}: bind ServiceAccounts only, not {subject}"
            )
            assert built.get("ServiceAccount", subject["namespace"], subject["name"]), (
                f"{built.name}: binding {binding['metadata']['name']} names a missing account {subject}"
            )


def test_the_deploy_guide_covers_every_kustomization_and_the_current_image() -> None:
    guide = (render.REPO / "docs" / "deploy.md").read_text()
    for directory in render.kustomization_dirs():
        assert f"manifests/{render.rel(directory)}" in guide, f"docs/deploy.md does not mention {directory}"
    for text in (guide, (render.REPO / "Dockerfile").read_text()):
        for tag in re.findall(r"ghcr\.io/kedahttp/kedahttp:([\w.-]+)", text):
            assert tag == __version__, f"an image tag {tag} where the package is {__version__}"
