"""Validators for the objects kedahttp writes: built-in kinds with kubernetes-validate, the ScaledObject
with KEDA's CRD from ``tests/schemas/keda`` (source and version in its README), made strict about unknown fields the
way the API server's pruning is."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests.harness.crd import strict

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "tests" / "schemas" / "keda"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # oldest we support, and the newest the package knows


@functools.cache
def scaled_object_validator() -> jsonschema.protocols.Validator:
    crd = yaml.safe_load((SCHEMAS / "keda.sh_scaledobjects.yaml").read_text())
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    schema = strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate_scaled_object(obj: dict[str, Any]) -> None:
    scaled_object_validator().validate(obj)
    # What the CRD schema leaves to CEL rules and KEDA's webhook (see tests/schemas/README.md):
    spec = obj["spec"]
    assert spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)
    assert len(obj["metadata"]["name"]) <= 63
    for trigger in spec["triggers"]:
        assert all(isinstance(v, str) for v in trigger["metadata"].values())


def validate_builtin(obj: dict[str, Any]) -> None:
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)
