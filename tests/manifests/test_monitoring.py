"""The optional monitoring component: a PodMonitor, alert rules and a Grafana dashboard that are valid for
the Prometheus Operator and Grafana, whose rules fire when they should (promtool unit tests), and whose
every expression names only metrics that a real proxy and a real scaler export.

The exported names come from scraping a proxy and a scaler started here (memory bus, real sockets), so a
renamed metric breaks this test rather than an operator's dashboard.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kedahttp.activity.bus import open_transport
from kedahttp.proxy.sources import Backend
from kedahttp.scaler.main import build_scaler
from kedahttp.scaler.telemetry import MetricsServer as ScalerMetrics
from tests.harness.crd import crd_validator
from tests.harness.inproc import proxy_settings, running_proxy
from tests.harness.render import MANIFESTS, Build, load_yaml, rendered
from tests.harness.scrape import promtool, scrape

OVERLAY = "overlays/redis-monitoring"
COMPONENT = MANIFESTS / "components" / "monitoring"
DASHBOARD = COMPONENT / "dashboards" / "kedahttp.json"
HERE = Path(__file__).parent
SCHEMAS = HERE / "schemas"
RULES_TEST = HERE / "rules-test.yaml"
METRIC = re.compile(r"\b((?:kedahttp|process)_[a-zA-Z0-9_]+)\b")


@pytest.fixture(scope="module")
def build() -> Build:
    return rendered(OVERLAY)


def one(build: Build, kind: str) -> dict[str, Any]:
    found = build.of_kind(kind)
    assert len(found) == 1, f"{OVERLAY}: expected one {kind}, found {len(found)}"
    return found[0]


@functools.cache
def validator(crd_file: str) -> jsonschema.protocols.Validator:
    return crd_validator(SCHEMAS / crd_file, "v1")


@functools.cache
def exported_names() -> frozenset[str]:
    """Every metric name (as PromQL sees it) that a running proxy and scaler serve on /metrics."""
    return frozenset(asyncio.run(_scrape_both()))


async def _scrape_both() -> set[str]:
    settings = proxy_settings()
    scaler = build_scaler(settings, open_transport(settings.bus))
    for component in scaler:
        await component.start()
    try:
        async with running_proxy(settings, [Backend("shop/cart", ("cart.test",))]) as proxy:
            assert proxy.metrics is not None
            metrics = next(c for c in scaler if isinstance(c, ScalerMetrics))
            texts = [await scrape(proxy.metrics.port), await scrape(metrics.port)]
    finally:
        for component in reversed(scaler):
            await component.close()
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
    for text in texts:
        for family in text_string_to_metric_families(text):
            names.add(family.name)
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    return names


def unknown_metrics(expr: str) -> set[str]:
    return set(METRIC.findall(expr)) - exported_names()


# -- PodMonitor ---------------------------------------------------------------------------------------

def test_the_podmonitor_is_valid_and_scrapes_both_components_with_their_labels(build: Build) -> None:
    monitor = one(build, "PodMonitor")
    validator("monitoring.coreos.com_podmonitors.excerpt.yaml").validate(monitor)
    assert monitor["metadata"]["namespace"] == "kedahttp"
    selector = monitor["spec"]["selector"]["matchLabels"]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["honorLabels"] is True  # `namespace` and `app` stay the app's, not the proxy pod's
    for component in ("proxy", "scaler"):
        workload, container = build.component(component)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"the PodMonitor does not select the {component} pods"
        assert monitor["spec"]["jobLabel"] in labels
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert endpoint["port"] in ports, f"the {component} container has no port named {endpoint['port']}"


def test_a_podmonitor_with_a_misspelt_field_is_rejected() -> None:
    """The validation is strict: the API server would prune an unknown field silently."""
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "x"},
               "spec": {"selector": {}, "podMetricsEndpoints": [{"port": "metrics", "honorLabel": True}]}}
    with pytest.raises(jsonschema.ValidationError):
        validator("monitoring.coreos.com_podmonitors.excerpt.yaml").validate(monitor)


# -- alert rules --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rules_dir(build: Build, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rule = one(build, "PrometheusRule")
    validator("monitoring.coreos.com_prometheusrules.yaml").validate(rule)
    directory = tmp_path_factory.mktemp("rules")
    (directory / "kedahttp-rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    shutil.copy(RULES_TEST, directory / "rules-test.yaml")
    return directory


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=cwd)


def test_the_rules_pass_promtool_check(rules_dir: Path) -> None:
    result = run("check", "rules", str(rules_dir / "kedahttp-rules.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_promtool_unit_tests(rules_dir: Path) -> None:
    result = run("test", "rules", "rules-test.yaml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_and_names_only_exported_metrics(build: Build) -> None:
    rules = [r for g in one(build, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    alerts = {r["alert"] for r in rules}
    assert alerts == {"KedahttpScalerUnavailable", "KedahttpScalerAbsent", "KedahttpBusDisconnected",
                      "KedahttpHeldRequestTimeouts", "KedahttpSlowColdStarts", "KedahttpProxiesDisagree"}
    tested = {case["alertname"] for t in load_yaml(RULES_TEST)["tests"] for case in t["alert_rule_test"]
              if case.get("exp_alerts")}
    assert alerts <= tested, f"alerts without a firing test case: {alerts - tested}"
    for rule in rules:
        assert not unknown_metrics(rule["expr"]), f"{rule['alert']} names {unknown_metrics(rule['expr'])}"
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_a_broken_rule_fails_its_unit_test(rules_dir: Path, tmp_path: Path) -> None:
    """The unit tests can fail: the same tests against a rule file with one threshold changed."""
    broken = tmp_path / "broken"
    shutil.copytree(rules_dir, broken)
    rules = (broken / "kedahttp-rules.yaml").read_text().replace("> 0.1", "> 0.6")
    (broken / "kedahttp-rules.yaml").write_text(rules)
    assert run("test", "rules", "rules-test.yaml", cwd=broken).returncode != 0


# -- the dashboard ------------------------------------------------------------------------------------

def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panel_exprs() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def test_the_dashboard_is_shipped_in_a_configmap_for_the_grafana_sidecar(build: Build) -> None:
    [config] = [c for c in build.of_kind("ConfigMap") if c["metadata"]["name"].startswith("kedahttp-dashboard")]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config["data"]["kedahttp.json"]) == dashboard()


def test_the_dashboard_covers_what_an_operator_asks_and_names_only_exported_metrics() -> None:
    board = dashboard()
    assert board["uid"] == "kedahttp" and board["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    exprs = panel_exprs()
    text = " ".join(e for _, e in exprs)
    for wanted in ("kedahttp_proxy_routes", "kedahttp_proxy_requests_total", "kedahttp_proxy_held_requests",
                   "kedahttp_proxy_cold_start_wait_seconds_bucket", "kedahttp_scaler_call_seconds_bucket"):
        assert wanted in text, f"the dashboard shows nothing from {wanted}"
    for title, expr in exprs:
        assert not unknown_metrics(expr), f"panel {title!r} names {unknown_metrics(expr)}"
    variables = {v["name"] for v in board["templating"]["list"]}
    for title, expr in exprs:
        used = set(re.findall(r"\$(\w+)", expr)) - {"__rate_interval"}
        assert used <= variables, f"panel {title!r} uses undefined variables {used - variables}"


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    """promtool cannot parse a bare expression, so each one becomes a recording rule for `check rules`."""
    rules = []
    for i, (_, expr) in enumerate(panel_exprs()):
        concrete = expr.replace("$__rate_interval", "5m").replace("$namespace", ".*").replace("$app", ".*")
        rules.append({"record": f"dashboard:panel_{i}", "expr": concrete})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
