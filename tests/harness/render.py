"""Renders the kustomizations under manifests/ with the real ``kubectl kustomize`` and indexes the result.

The manifest tests check what an operator's ``kubectl apply -k`` would send, never the source files, so
generated names (ConfigMaps with a hash suffix), patches and overlays are all accounted for. This module
is plain data access: every judgement lives in the test modules.
"""

from __future__ import annotations

import base64
import functools
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
SCHEMAS = REPO / "tests" / "schemas" / "keda"  # KEDA's CRDs, source in tests/schemas/README.md
# kustomize v5 (kubectl 1.27+) understands everything the manifests use (labels, patches with targets).
MIN_KUBECTL = (1, 27)

Obj = dict[str, Any]


def kustomization_dirs() -> list[Path]:
    """Every directory under manifests/ that an operator could ``kubectl apply -k`` (components are not
    built alone: an overlay that includes them is)."""
    return sorted(p.parent for p in MANIFESTS.rglob("kustomization.yaml")
                  if (load_yaml(p) or {}).get("kind") != "Component")


def rel(path: Path) -> str:
    return str(path.relative_to(MANIFESTS))


def _version(path: str) -> tuple[int, int]:
    out = subprocess.run([path, "version", "--client", "-o", "yaml"], capture_output=True, text=True, check=True)
    info = yaml.safe_load(out.stdout)["clientVersion"]
    return int(info["major"]), int(re.sub(r"\D.*", "", info["minor"]))


@functools.cache
def kubectl() -> str:
    """The venv's kubectl (what ``make test`` installs where the machine has none), else the one on PATH."""
    candidates = [str(Path(sys.executable).parent / "kubectl"), shutil.which("kubectl")]
    found = [path for path in candidates if path and Path(path).is_file()]
    if not found:
        raise RuntimeError("kubectl not found: `make test` installs it (make kubectl); the tests need >= 1.27")
    for path in found:
        if _version(path) >= MIN_KUBECTL:
            return path
    raise RuntimeError(f"kubectl {_version(found[0])} is too old: the manifests need kustomize v5 (kubectl >= 1.27)")


def build(directory: Path) -> list[Obj]:
    """``kubectl kustomize DIR``; raises with kustomize's message when it does not build."""
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {rel(directory)} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@dataclass
class Build:
    """One rendered kustomization, with look-ups by kind and name."""

    name: str
    objects: list[Obj]
    by_key: dict[tuple[str, str, str], Obj] = field(default_factory=dict)  # (kind, namespace, name)

    def __post_init__(self) -> None:
        for obj in self.objects:
            meta = obj["metadata"]
            self.by_key[(obj["kind"], meta.get("namespace", ""), meta["name"])] = obj

    def of_kind(self, *kinds: str) -> list[Obj]:
        return [obj for obj in self.objects if obj["kind"] in kinds]

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.by_key.get((kind, namespace, name))

    def workloads(self) -> list[Obj]:
        return self.of_kind("Deployment", "StatefulSet", "DaemonSet")

    def containers(self) -> Iterator[tuple[Obj, Obj]]:
        """(workload, container) for every container and init container."""
        for workload in self.workloads():
            pod = workload["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                yield workload, container

    def component(self, name: str) -> tuple[Obj, Obj]:
        """The kedahttp workload labelled ``app.kubernetes.io/component: name`` and its one container."""
        found = [
            w
            for w in self.workloads()
            if w["metadata"]["labels"].get("app.kubernetes.io/name") == "kedahttp"
            and w["metadata"]["labels"].get("app.kubernetes.io/component") == name
        ]
        assert len(found) == 1, f"{self.name}: expected one kedahttp {name} workload, found {len(found)}"
        containers = found[0]["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1, f"{self.name}: the {name} pod should run one container"
        return found[0], containers[0]

    def data_of(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        obj = self.get(kind, namespace, name)
        if obj is None:
            return None
        if kind == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            data.update(obj.get("stringData") or {})
            return data
        return dict(obj.get("data") or {})

    def environment(
        self, workload: Obj, container: Obj, missing_secret: str = "from-a-secret"
    ) -> dict[str, str]:
        """The environment the container starts with, resolved from the objects of this build.

        envFrom sources apply in order (a later source wins), then ``env`` entries. A value from a Secret
        the build does not contain (one the operator creates) reads as ``missing_secret``.
        """
        namespace = workload["metadata"].get("namespace", "")
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            kind, ref = (
                ("ConfigMap", source["configMapRef"])
                if "configMapRef" in source
                else ("Secret", source["secretRef"])
            )
            data = self.data_of(kind, namespace, ref["name"])
            if data is None:
                assert ref.get("optional"), f"{self.name}: {kind} {ref['name']} is referenced but not built"
                continue
            env.update({source.get("prefix", "") + k: v for k, v in data.items()})
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = entry["value"]
                continue
            value_from = entry["valueFrom"]
            kind, ref = (
                ("ConfigMap", value_from["configMapKeyRef"])
                if "configMapKeyRef" in value_from
                else ("Secret", value_from["secretKeyRef"])
            )
            data = self.data_of(kind, namespace, ref["name"])
            if data is None:
                env[entry["name"]] = missing_secret
            else:
                assert ref["key"] in data, f"{self.name}: {kind} {ref['name']} has no key {ref['key']}"
                env[entry["name"]] = data[ref["key"]]
        return env


def named_ports(container: Obj) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}


def probe_port(container: Obj, port: int | str) -> int:
    """A probe's port as a number: named ports resolve against the container's ports."""
    if isinstance(port, int):
        return port
    ports = named_ports(container)
    assert port in ports, f"probe names port {port!r}, which container {container['name']} does not declare"
    return ports[port]


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


# The installs an operator picks from (each is a full kedahttp), and the example app.
INSTALLS = ("overlays/dev", "overlays/nats", "overlays/redis")
EXAMPLE = "examples/hello"


@functools.cache
def rendered(name: str) -> Build:
    """The kustomization ``name`` (relative to manifests/), rendered once per session."""
    return Build(name, build(MANIFESTS / name))


if __name__ == "__main__":
    # `python -m tests.harness.render --check-kubectl`: exit 0 when a usable kubectl is there (Makefile).
    if sys.argv[1:] == ["--check-kubectl"]:
        try:
            print(kubectl())
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            sys.exit(f"{exc}")
