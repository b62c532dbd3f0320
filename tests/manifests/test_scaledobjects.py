"""ScaledObjects: valid against KEDA's CRD schema, plus what that schema leaves to KEDA's CEL rules and
admission webhook, plus the kedahttp trigger keys as the README documents them.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema
import pytest

from kedahttp.kube import httpapp, trigger
from kedahttp.process import settings
from tests.harness import render
from tests.harness.render import Build

CRD = render.SCHEMAS / "keda.sh_scaledobjects.yaml"
README = render.REPO / "README.md"
TRIGGER_TYPES = {"external-push", "external"}
# The trigger's keys, from their one home (kube/trigger.py), checked against the README's trigger block
# below (the operator's reference) and the example.
TRIGGER_KEYS = set(trigger.KEYS)
NUMERIC_KEYS = TRIGGER_KEYS - {"scalerAddress", "backend", trigger.KEEP_ALIVE_KEY}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
KEDA_DEFAULT_MAX_REPLICAS = 100  # what KEDA's CEL rule assumes when maxReplicaCount is absent

def closed(schema: Any) -> Any:
    """The schema with unknown fields rejected, as ``kubectl apply`` (strict field validation) does."""
    if isinstance(schema, dict):
        out = {k: closed(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    return schema


@pytest.fixture(scope="session")
def scaledobject_schema() -> dict[str, Any]:
    crd = render.load_yaml(CRD)
    schema: dict[str, Any] = copy.deepcopy(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    return closed(schema)


def scaled_objects(built: Build) -> list[dict[str, Any]]:
    return built.of_kind("ScaledObject")


def kedahttp_triggers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in obj["spec"]["triggers"] if t["type"] in TRIGGER_TYPES]


def test_the_closed_schema_still_rejects_and_accepts(scaledobject_schema: dict[str, Any]) -> None:
    """Guards the helper: the closed schema must accept a minimal object and reject a misspelt field."""
    minimal: dict[str, Any] = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "a"},
        "spec": {"scaleTargetRef": {"name": "a"}, "triggers": [{"type": "external-push", "metadata": {}}]},
    }
    jsonschema.validate(minimal, scaledobject_schema)
    misspelt = copy.deepcopy(minimal)
    misspelt["spec"]["cooldownPeriods"] = 300
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(misspelt, scaledobject_schema)


def test_scaled_objects_match_the_crd_schema(built: Build, scaledobject_schema: dict[str, Any]) -> None:
    for obj in scaled_objects(built):
        try:
            jsonschema.validate(obj, scaledobject_schema)
        except jsonschema.ValidationError as exc:
            pytest.fail(
                f"{built.name}: ScaledObject {obj['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )


def test_scaled_objects_pass_what_keda_checks_beyond_the_schema(built: Build) -> None:
    targets: set[tuple[str, str]] = set()
    for obj in scaled_objects(built):
        name, namespace, spec = obj["metadata"]["name"], obj["metadata"]["namespace"], obj["spec"]
        assert DNS_LABEL.match(name), f"{built.name}: ScaledObject name {name!r} must be a DNS label (<= 63)"
        low = spec.get("minReplicaCount", 0)
        high = spec.get("maxReplicaCount", KEDA_DEFAULT_MAX_REPLICAS)
        assert low <= high, f"{built.name}: {name}: minReplicaCount {low} > maxReplicaCount {high}"
        target = spec["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment"
        assert (namespace, target["name"]) not in targets, f"{built.name}: two ScaledObjects scale {target}"
        targets.add((namespace, target["name"]))
        deployment = built.get("Deployment", namespace, target["name"])
        assert deployment is not None, f"{built.name}: {name} scales a Deployment this build lacks"
        assert "replicas" not in deployment["spec"], (
            f"{built.name}: KEDA scales Deployment {target['name']}: a replicas field resets it on apply"
        )
        for entry in spec["triggers"]:
            for key, value in entry["metadata"].items():
                assert isinstance(value, str), (
                    f"{built.name}: {name}: trigger metadata {key} must be a string"
                )


def test_kedahttp_triggers_use_only_contract_keys_with_good_values(built: Build) -> None:
    scaler_address = settings.load({}, environ={}).scaler_address
    for obj in scaled_objects(built):
        name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
        triggers = kedahttp_triggers(obj)
        assert triggers, f"{built.name}: {name} has no external-push trigger"
        for entry in triggers:
            metadata = entry["metadata"]
            unknown = set(metadata) - TRIGGER_KEYS
            assert not unknown, f"{built.name}: {name}: trigger keys unknown to kedahttp: {sorted(unknown)}"
            assert metadata.get("scalerAddress") == scaler_address, (
                f"{built.name}: {name} must dial the scaler at {scaler_address}"
            )
            for key in NUMERIC_KEYS & set(metadata):
                assert float(metadata[key]) > 0, f"{built.name}: {name}: {key} must be a number > 0"
            backend_ns, _, backend_name = metadata.get("backend", f"{namespace}/{name}").partition("/")
            assert DNS_LABEL.match(backend_ns) and DNS_LABEL.match(backend_name), metadata.get("backend")
            app = built.get("HTTPApp", backend_ns, backend_name)
            assert app is not None, (
                f"{built.name}: {name}: backend {backend_ns}/{backend_name} is no HTTPApp here"
            )
            routes = httpapp.parse_httpapp(app)  # the proxies route it as it is written
            assert built.get("Service", backend_ns, routes.service.name) is not None, (
                f"{built.name}: HTTPApp {backend_name} names a Service that is not here"
            )


def test_the_example_shows_every_trigger_key(example: Build) -> None:
    keys = {key for obj in scaled_objects(example) for t in kedahttp_triggers(obj) for key in t["metadata"]}
    assert keys == TRIGGER_KEYS


def test_the_scaler_service_answers_at_the_default_scaler_address(base: Build) -> None:
    host, _, port = str(settings.SPEC_BY_NAME["scaler_address"].default).rpartition(":")
    service_name, namespace, svc = host.split(".")
    assert svc == "svc"
    service = base.get("Service", namespace, service_name)
    assert service is not None, f"no Service {namespace}/{service_name} for the default scaler address"
    grpc = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    assert grpc and grpc[0].get("appProtocol") == "grpc"
    _, scaler = base.component("scaler")
    assert grpc[0]["targetPort"] in render.named_ports(scaler)


def test_trigger_keys_are_those_of_the_readme() -> None:
    text = README.read_text()
    section = text[text.index("### KEDA trigger") :]
    block = section[
        section.index("```yaml") + len("```yaml") : section.index("```", section.index("```yaml") + 7)
    ]
    documented = render.yaml.safe_load(block)["triggers"][0]["metadata"]
    assert set(documented) == TRIGGER_KEYS
