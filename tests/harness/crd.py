"""JSON-Schema validation of custom resources against their CRD, strict about unknown fields the way the
API server's pruning is (an unknown field would be dropped silently, so a test rejects it)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml


def strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that lists its properties."""
    if isinstance(schema, dict):
        out = {key: strict(value) for key, value in schema.items()}
        if (out.get("type") == "object" and "properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def crd_validator(path: Path, version: str) -> jsonschema.protocols.Validator:
    """A validator for version ``version`` of the CRD in ``path``."""
    crd = yaml.safe_load(path.read_text())
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = strict(copy.deepcopy(served["schema"]["openAPIV3Schema"]))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)
