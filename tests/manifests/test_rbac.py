"""Least privilege, checked against the code: the proxy's RBAC grants exactly the requests its source can
make (derived in tests/manifests/api_calls.py), and the scaler gets no API access at all.
"""

from __future__ import annotations

from typing import Any

import pytest

from kedahttp.process import settings
from tests.harness import api_calls
from tests.harness.api_calls import Permission
from tests.harness.render import Build


@pytest.fixture(scope="module")
def derived() -> tuple[set[Permission], list[str]]:
    return api_calls.derive()


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
    required = {
        Permission("", "services", "list"),
        Permission("", "services", "watch"),
        Permission("discovery.k8s.io", "endpointslices", "list"),
        Permission("discovery.k8s.io", "endpointslices", "watch"),
        *(
            Permission(g, r, v)
            for g, r in (("apps", "deployments"), ("", "services"), ("keda.sh", "scaledobjects"))
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
