"""The HTTPApp CRD and every HTTPApp the manifests ship: the CRD's schema accepts what the code writes and
reads, its printer columns and CEL rules point at fields that exist, and each example HTTPApp is valid
for the CRD and parses as the proxies will route it."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from kedahttp.kube import httpapp
from kedahttp.kube.appspec import SpecError
from tests.harness.kube_objects import httpapp as make_httpapp
from tests.harness.render import Build
from tests.harness.schemas import httpapp_validator, validate_httpapp


def crd(build: Build) -> dict[str, Any]:
    found = build.get("CustomResourceDefinition", "", "httpapps.kedahttp.dev")
    assert found is not None, f"{build.name}: no HTTPApp CRD"
    return found


def test_the_crd_names_and_version(install: Build) -> None:
    spec = crd(install)["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == (httpapp.GROUP, "Namespaced", httpapp.KIND)
    assert spec["names"]["shortNames"] == ["happ"]
    (version,) = spec["versions"]
    assert version["name"] == httpapp.VERSION and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}  # the controller writes status, never the spec


def test_printer_columns_read_fields_the_schema_has(install: Build) -> None:
    version = crd(install)["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    names = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Hosts", "Ready", "Replicas", "Active", "In-Flight", "Age"} <= names
    in_flight = next(c for c in version["additionalPrinterColumns"] if c["name"] == "In-Flight")
    assert (in_flight["jsonPath"], in_flight["type"]) == (".status.inFlight", "integer")  # what the controller writes
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"].lstrip(".").split("[")[0].split(".")
        node = schema if path[0] != "metadata" else None
        for part in path if node is not None else ():
            assert part in node.get("properties", {}), f"column {column['name']}: {column['jsonPath']} not in the schema"
            node = node["properties"][part]
            node = node.get("items", node)


def test_conditions_have_the_standard_shape(install: Build) -> None:
    status = crd(install)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert "observedGeneration" in status["properties"]


def test_cel_rules_guard_hosts_and_prefixes(install: Build) -> None:
    spec = crd(install)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    rules = {r["rule"] for r in spec["hosts"]["x-kubernetes-validations"]}
    assert "self.all(h, self.exists_one(x, x == h))" in rules
    rules = {r["rule"] for r in spec["pathPrefixes"]["x-kubernetes-validations"]}
    assert "self.all(p, p.startsWith('/'))" in rules
    # what the rules refuse, the model refuses too, naming the field (a cluster without CEL is covered)
    with pytest.raises(SpecError, match=r"spec.hosts\[1\]"):
        httpapp.parse_httpapp(make_httpapp("a", hosts=["a.example.com", "a.example.com"]))
    with pytest.raises(SpecError, match=r"spec.pathPrefixes\[0\]"):
        httpapp.parse_httpapp(make_httpapp("a", prefixes=["api"]))


def test_the_schema_accepts_what_the_code_writes_and_refuses_typos() -> None:
    app = make_httpapp("a", scaling={"targetConcurrency": 5, "minReplicas": 0, "maxReplicas": 3})
    validate_httpapp(app)
    validate_httpapp(httpapp.to_object(httpapp.parse_httpapp(app)))
    paged = make_httpapp("a", cold_start={"placeholder": "page",
                                          "templateConfigMap": {"name": "pages", "key": "wait.html"}})
    validate_httpapp(paged)
    validate_httpapp(httpapp.to_object(httpapp.parse_httpapp(paged)))
    for bad in ({"name": "pages"}, {"name": "Pages", "key": "k"}, {"name": "pages", "key": "a/b"}):
        wrong = make_httpapp("a", cold_start={"templateConfigMap": bad})
        with pytest.raises(jsonschema.ValidationError):
            validate_httpapp(wrong)
    typo = make_httpapp("a")
    typo["spec"]["scaling"] = {"targetConcurency": 5}
    with pytest.raises(jsonschema.ValidationError):
        validate_httpapp(typo)
    assert httpapp_validator() is httpapp_validator()


def test_every_shipped_httpapp_is_valid_and_routable(built: Build) -> None:
    for obj in built.of_kind("HTTPApp"):
        validate_httpapp(obj)
        app = httpapp.parse_httpapp(obj)
        assert built.get("Service", app.namespace, app.service.name) is not None, (
            f"{built.name}: HTTPApp {app.key} names Service {app.service.name}, which is not in the build"
        )
