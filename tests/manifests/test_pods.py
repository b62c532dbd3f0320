"""Pod hygiene in every build: the restricted security context, resources, version-free selectors,
disruption budgets and a termination grace period that outlasts the process's own staged shutdown.
"""

from __future__ import annotations

from typing import Any

from kedahttp import __version__
from kedahttp.process import settings
from tests.harness.render import Build

SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/component"}
UNSTABLE_LABELS = {"app.kubernetes.io/version", "helm.sh/chart", "pod-template-hash"}


def effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A security setting as the kubelet applies it: the container's value, else the pod's."""
    value = container.get("securityContext", {}).get(key)
    return pod.get("securityContext", {}).get(key) if value is None else value


def test_every_container_runs_restricted(built: Build) -> None:
    for workload, container in built.containers():
        pod = workload["spec"]["template"]["spec"]
        where = f"{built.name}: {workload['metadata']['name']}/{container['name']}"
        context = container.get("securityContext", {})
        assert effective(pod, container, "runAsNonRoot") is True, f"{where}: runAsNonRoot"
        uid = effective(pod, container, "runAsUser")
        assert isinstance(uid, int) and uid > 0, f"{where}: needs a numeric non-root runAsUser, got {uid!r}"
        assert context.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
        assert context.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
        assert context.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: drop ALL capabilities"
        assert not context.get("capabilities", {}).get("add"), f"{where}: adds capabilities"
        assert not context.get("privileged"), f"{where}: privileged"
        seccomp = effective(pod, container, "seccompProfile") or {}
        assert seccomp.get("type") == "RuntimeDefault", f"{where}: seccompProfile RuntimeDefault"
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{where}: /tmp must be a writable emptyDir"
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), where


def test_namespaces_enforce_the_restricted_standard(built: Build) -> None:
    for namespace in built.of_kind("Namespace"):
        labels = namespace["metadata"].get("labels", {})
        assert labels.get("pod-security.kubernetes.io/enforce") == "restricted", namespace["metadata"]["name"]


def test_pods_get_no_service_links_and_only_the_token_they_use(built: Build) -> None:
    """Service links would inject KEDAHTTP_SCALER_PORT and the like next to the KEDAHTTP_* settings."""
    for workload in built.workloads():
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod.get("enableServiceLinks") is False, f"{built.name}: {name}: enableServiceLinks: false"
        is_proxy = workload["metadata"]["labels"].get("app.kubernetes.io/component") == "proxy"
        assert pod.get("automountServiceAccountToken") is is_proxy, (
            f"{built.name}: {name}: only the proxy talks to the Kubernetes API and mounts a token"
        )


def test_every_container_has_requests_and_limits(built: Build) -> None:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}

    def quantity(text: str | int) -> float:
        text = str(text)
        for suffix, factor in units.items():
            if text.endswith(suffix):
                return float(text[: -len(suffix)]) * factor
        return float(text)

    for workload, container in built.containers():
        where = f"{built.name}: {workload['metadata']['name']}/{container['name']}"
        resources = container.get("resources", {})
        for resource in ("cpu", "memory"):
            request = resources.get("requests", {}).get(resource)
            limit = resources.get("limits", {}).get(resource)
            assert request is not None and limit is not None, f"{where}: {resource} request and limit"
            assert quantity(request) <= quantity(limit), f"{where}: {resource} request above its limit"


def test_selectors_are_minimal_and_version_free(built: Build) -> None:
    for workload in built.workloads():
        name = workload["metadata"]["name"]
        selector = workload["spec"]["selector"]
        assert set(selector) == {"matchLabels"}, f"{built.name}: {name}: matchLabels only"
        labels = selector["matchLabels"]
        template_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert labels.items() <= template_labels.items(), f"{built.name}: {name} selects not its own pods"
        if workload["metadata"]["labels"].get("app.kubernetes.io/part-of") == "kedahttp":
            assert set(labels) == SELECTOR_KEYS, f"{built.name}: {name}: select by name and component only"
        assert not set(labels) & UNSTABLE_LABELS, f"{built.name}: {name}: a version in a selector"
    for obj in built.of_kind("Service", "PodDisruptionBudget"):
        spec = obj["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert not set(selector) & UNSTABLE_LABELS, f"{built.name}: {obj['metadata']['name']}"


def test_kedahttp_objects_carry_the_recommended_labels(install: Build) -> None:
    for component in ("proxy", "scaler"):
        workload, _ = install.component(component)
        for labels in (workload["metadata"]["labels"], workload["spec"]["template"]["metadata"]["labels"]):
            assert labels["app.kubernetes.io/part-of"] == "kedahttp"
            assert labels["app.kubernetes.io/version"] == __version__
    for service in install.of_kind("Service"):  # ours must never look like a backend (CONTRACT section 7)
        assert service["metadata"]["labels"].get("app.kubernetes.io/managed-by") != "kedahttp"


def test_the_proxy_has_a_disruption_budget_that_leaves_it_serving(install: Build) -> None:
    workload, _ = install.component("proxy")
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    budgets = [
        b
        for b in install.of_kind("PodDisruptionBudget")
        if b["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ]
    assert len(budgets) == 1, f"{install.name}: the proxy needs exactly one PodDisruptionBudget"
    spec = budgets[0]["spec"]
    if install.name != "overlays/dev":  # dev runs one replica on purpose
        replicas = workload["spec"]["replicas"]
        available = replicas - spec["maxUnavailable"] if "maxUnavailable" in spec else spec["minAvailable"]
        assert 1 <= available < replicas, (
            f"{install.name}: the budget must allow a drain and keep one serving"
        )
    strategy = workload["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0, "a rollout must not shrink the proxy"


def test_grace_period_outlasts_the_staged_shutdown(install: Build) -> None:
    """SIGTERM: delay (unready, still serving), then drain; the kubelet must not SIGKILL before both end."""
    for component in ("proxy", "scaler"):
        workload, container = install.component(component)
        env = install.environment(workload, container)
        loaded = settings.load({}, environ=env, component=component)
        pod = workload["spec"]["template"]["spec"]
        pre_stop = container.get("lifecycle", {}).get("preStop", {})
        sleep = pre_stop.get("sleep", {}).get("seconds", 0)
        assert "exec" not in pre_stop and "httpGet" not in pre_stop, (
            "an opaque preStop hook cannot be budgeted"
        )
        needed = sleep + loaded.shutdown_delay_seconds + loaded.drain_timeout_seconds
        grace = pod["terminationGracePeriodSeconds"]
        assert grace >= needed + 5, (
            f"{install.name}: {component}: grace {grace}s < {needed}s of shutdown + 5s to close"
        )
        assert loaded.shutdown_delay_seconds >= 3, "endpoints take seconds to drop a terminating pod"
