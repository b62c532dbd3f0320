"""Least privilege, checked against the code, per process: the proxy's and the controller's RBAC grant
exactly the requests the code each process runs can make (derived in tests/manifests/api_calls.py from
the process's entry module), the proxy nothing that writes, and the scaler no API access at all.
"""

from __future__ import annotations

from typing import Any

import pytest

from kedahttp.process import settings
from tests.harness import api_calls
from tests.harness.api_calls import Permission
from tests.harness.render import Build

PROXY_ENTRY = "kedahttp.proxy.main"
CONTROLLER_ENTRY = "kedahttp.kube.controller_main"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
LEASES = Permission("coordination.k8s.io", "leases", "")


@pytest.fixture(scope="module")
def derived() -> tuple[set[Permission], list[str]]:
    return api_calls.derive(PROXY_ENTRY)


@pytest.fixture(scope="module")
def derived_controller() -> tuple[set[Permission], list[str]]:
    return api_calls.derive(CONTROLLER_ENTRY)


def bound_rules(build: Build, namespace: str, account: str) -> tuple[list[dict[str, Any]], set[str]]:
    """Every rule granted to a ServiceAccount, and the scopes ('' = cluster-wide) they apply in."""
    rules: list[dict[str, Any]] = []
    scopes: set[str] = set()
    for binding in build.of_kind("ClusterRoleBinding", "RoleBinding"):
        subjects = binding.get("subjects", [])
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == account and s["namespace"] == namespace
            for s in subjects
        ):
            continue
        ref = binding["roleRef"]
        role_namespace = "" if ref["kind"] == "ClusterRole" else binding["metadata"]["namespace"]
        role = build.get(ref["kind"], role_namespace, ref["name"])
        assert role is not None, f"{build.name}: binding {binding['metadata']['name']} names a missing {ref}"
        rules += role.get("rules", [])
        scopes.add("" if binding["kind"] == "ClusterRoleBinding" else binding["metadata"]["namespace"])
    return rules, scopes


def granted(rules: list[dict[str, Any]]) -> set[Permission]:
    out = set()
    for rule in rules:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), (
            f"unexpected rule shape {rule}"
        )
        for value in (*rule["apiGroups"], *rule["resources"], *rule["verbs"]):
            assert "*" not in value, f"wildcard in {rule}: grant what is used, by name"
        out |= {
            Permission(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
        }
    return out


def test_only_the_cluster_module_imports_kubernetes() -> None:
    importers = [p for p in api_calls.PACKAGE.rglob("*.py") if api_calls.imports_kubernetes(p)]
    assert importers == [api_calls.CLUSTER], "every API call must go through kedahttp/kube/cluster.py"


def test_the_derivation_finds_what_the_contract_requires(derived: tuple[set[Permission], list[str]]) -> None:
    """Guards the reader: CONTRACT section 7 alone implies these requests; missing ones mean it went blind."""
    needed, _ = derived
    reads = {
        Permission(g, r, v)
        for g, r in (("kedahttp.dev", "httpapps"), ("", "services"), ("discovery.k8s.io", "endpointslices"),
                     ("", "configmaps"))  # the waiting-page templates
        for v in ("list", "watch")
    }
    assert reads <= needed, f"not derived: {sorted(map(str, reads - needed))}"


def test_the_derivation_finds_what_the_controller_does(derived_controller: tuple[set[Permission], list[str]]) -> None:
    needed, _ = derived_controller
    required = {
        Permission("kedahttp.dev", "httpapps/status", "update"),
        *(Permission("keda.sh", "scaledobjects", v) for v in ("list", "watch", "create", "update", "delete")),
        *(Permission("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")),
        *(
            Permission(g, r, v)
            for g, r in (("apps", "deployments"), ("", "services"), ("kedahttp.dev", "httpapps"))
            for v in ("create", "delete")
        ),
    }
    assert required <= needed, f"not derived: {sorted(map(str, required - needed))}"


def test_the_proxy_is_granted_exactly_what_its_code_uses(
    install: Build, derived: tuple[set[Permission], list[str]]
) -> None:
    needed, trace = derived
    workload, container = install.component("proxy")
    namespace = workload["metadata"]["namespace"]
    account = workload["spec"]["template"]["spec"]["serviceAccountName"]
    rules, scopes = bound_rules(install, namespace, account)
    watch_namespace = settings.load(
        {}, environ=install.environment(workload, container), component="proxy"
    ).watch_namespace
    scope = "in that namespace (RoleBinding)" if watch_namespace else "cluster-wide (ClusterRoleBinding)"
    assert scopes == {watch_namespace}, (
        f"{install.name}: WATCH_NAMESPACE={watch_namespace!r} needs its grant {scope}, found {sorted(scopes)}"
    )
    have = granted(rules)
    missing, extra = needed - have, have - needed
    assert not missing and not extra, (
        f"{install.name}: RBAC differs from the code.\n"
        f"missing (the code makes these requests): {sorted(map(str, missing))}\n"
        f"extra (no code makes these): {sorted(map(str, extra))}\n"
        "derivation:\n  " + "\n  ".join(trace)
    )
    writes = sorted(str(p) for p in have if p.verb in WRITE_VERBS)
    assert not writes, f"{install.name}: the internet-facing proxy may write: {writes}"


def test_the_controller_is_granted_exactly_what_its_code_uses(
    install: Build, derived_controller: tuple[set[Permission], list[str]]
) -> None:
    needed, trace = derived_controller
    workload, _ = install.component("controller")
    namespace = workload["metadata"]["namespace"]
    account = workload["spec"]["template"]["spec"]["serviceAccountName"]
    rules, scopes = bound_rules(install, namespace, account)
    assert scopes == {"", namespace}, f"{install.name}: cluster-wide, plus its own namespace (the Lease)"
    have = granted(rules)
    missing, extra = needed - have, have - needed
    assert not missing and not extra, (
        f"{install.name}: the controller's RBAC differs from its code.\n"
        f"missing: {sorted(map(str, missing))}\nextra: {sorted(map(str, extra))}\n"
        "derivation:\n  " + "\n  ".join(trace)
    )
    # the Lease only in its own namespace, through a Role
    for binding in install.of_kind("ClusterRoleBinding"):
        if any(s["name"] == account for s in binding.get("subjects", [])):
            role = install.get("ClusterRole", "", binding["roleRef"]["name"])
            assert role is not None
            assert all("leases" not in rule["resources"] for rule in role["rules"]), "leases granted cluster-wide"


def test_the_scaler_has_no_kubernetes_access(install: Build) -> None:
    workload, _ = install.component("scaler")
    namespace = workload["metadata"]["namespace"]
    account = workload["spec"]["template"]["spec"]["serviceAccountName"]
    rules, _ = bound_rules(install, namespace, account)
    assert not rules, f"{install.name}: the scaler is granted {rules}"
    service_account = install.get("ServiceAccount", namespace, account)
    assert service_account is not None and service_account.get("automountServiceAccountToken") is False
    scaler_modules = [
        p for p in (api_calls.PACKAGE / "scaler").rglob("*.py") if api_calls.imports_kubernetes(p)
    ]
    assert not scaler_modules
