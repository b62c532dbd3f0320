"""What an app is: the admin API's create body, checked field by field, and the three objects it becomes.

Pure data in, plain dicts out: no client, no I/O. ``parse_app`` turns a JSON body into an ``AppSpec`` or
raises ``SpecError`` naming the field (the admin API answers 422 with it). The builders write the
Deployment (0 replicas), Service (labelled and annotated for the proxy's routes) and KEDA ScaledObject
exactly as the API server will store them. The Service annotations are the routes' only source of truth,
so the proxy's Kubernetes source parses them with the same validators (``routes_from_annotations``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kedahttp.kube.trigger import (
    BACKEND_KEY,
    DEFAULT_TARGET_CONCURRENCY,
    LEGACY_TRIGGER_TYPE,
    SCALER_ADDRESS_KEY,
    TARGET_CONCURRENCY_KEY,
    TARGET_REQUEST_RATE_KEY,
    TRIGGER_TYPE,
    format_number,
)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "kedahttp"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
HOSTS_ANNOTATION = "kedahttp.dev/hosts"
PATH_PREFIXES_ANNOTATION = "kedahttp.dev/path-prefixes"
COLD_START_ANNOTATION = "kedahttp.dev/cold-start-timeout-seconds"

DEFAULT_NAMESPACE = "default"
DEFAULT_MIN_REPLICAS = 0
DEFAULT_MAX_REPLICAS = 10
MAX_REPLICAS_LIMIT = 2**31 - 1  # replicas are int32 in Deployment, HPA and ScaledObject
MAX_IMAGE_LENGTH = 1024
MAX_PATH_PREFIX_LENGTH = 1024
MAX_HOSTS = 100
MAX_ENV = 200
MAX_BODY_BYTES = 64 * 1024  # the admin API refuses larger create bodies (413)
CONTAINER_NAME = "app"
PORT_NAME = "http"

# Requests and limits for the app's container; the admin API keeps them fixed (edit the Deployment to
# change them: KEDA scales it, nothing rewrites it).
RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"memory": "512Mi"},
}

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_PATH_FORBIDDEN = re.compile(r"[\s,?#\x00-\x1f\x7f]")

FIELDS = (
    "name", "namespace", "image", "port", "hosts", "pathPrefixes", "minReplicas", "maxReplicas",
    "targetConcurrency", "targetRequestRate", "coldStartTimeoutSeconds", "env",
)


class SpecError(ValueError):
    """Bad input; ``field`` is the JSON path of the offending value (``hosts[1]``, ``env.PORT``)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True, slots=True)
class AppSpec:
    name: str
    namespace: str
    image: str
    port: int
    hosts: tuple[str, ...]
    path_prefixes: tuple[str, ...] = ("/",)
    min_replicas: int = DEFAULT_MIN_REPLICAS
    max_replicas: int = DEFAULT_MAX_REPLICAS
    target_concurrency: float = DEFAULT_TARGET_CONCURRENCY
    target_request_rate: float | None = None
    cold_start_timeout_seconds: float | None = None
    env: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def claims(self) -> set[tuple[str, str]]:
        """The (host, path prefix) pairs this app serves; two apps may not share one."""
        return {(host, prefix) for host in self.hosts for prefix in self.path_prefixes}


@dataclass(frozen=True, slots=True)
class RouteFields:
    """What a Service's kedahttp annotations say about its routes."""

    hosts: tuple[str, ...]
    path_prefixes: tuple[str, ...]
    cold_start_timeout_seconds: float | None


# -- field validators: each returns the clean value or raises SpecError(field, ...) ---------------------


def check_name(field: str, value: object) -> str:
    """App names become Service names, so they must be DNS-1035 labels (a letter first)."""
    if not isinstance(value, str):
        raise SpecError(field, "must be a string")
    if len(value) > 63 or not _DNS1035_LABEL.fullmatch(value):
        raise SpecError(
            field, "must be a DNS-1035 label: at most 63 lower-case letters, digits and '-', "
            "starting with a letter and ending with a letter or digit",
        )
    return value


def check_namespace(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise SpecError(field, "must be a string")
    if len(value) > 63 or not _DNS1123_LABEL.fullmatch(value):
        raise SpecError(field, "must be a DNS-1123 label: at most 63 lower-case letters, digits and '-'")
    return value


def check_host(field: str, value: object) -> str:
    """A host is a DNS-1123 subdomain (lower-cased), or ``*.`` followed by one; no port, no trailing dot."""
    if not isinstance(value, str):
        raise SpecError(field, "must be a string")
    host = value.strip().lower()
    name = host[2:] if host.startswith("*.") else host
    if not name or len(name) > 253 or not all(
        len(label) <= 63 and _DNS1123_LABEL.fullmatch(label) for label in name.split(".")
    ):
        raise SpecError(
            field, f"{value!r} is not a host name: use a DNS name such as app.example.com or a "
            "wildcard such as *.apps.example.com, without port or scheme",
        )
    return host


def check_path_prefix(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise SpecError(field, "must be a string")
    if not value.startswith("/"):
        raise SpecError(field, f"{value!r} must start with '/'")
    if len(value) > MAX_PATH_PREFIX_LENGTH or _PATH_FORBIDDEN.search(value):
        raise SpecError(
            field, f"{value!r} must be a path of at most {MAX_PATH_PREFIX_LENGTH} characters without "
            "spaces, commas, '?' or '#'",
        )
    return value


def check_int(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, "must be a whole number")
    if not low <= value <= high:
        raise SpecError(field, f"must be between {low} and {high}")
    return value


def check_positive(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(field, "must be a number")
    number = float(value)
    if not number > 0 or math.isinf(number):
        raise SpecError(field, "must be a number greater than 0")
    return number


def _check_list(field: str, value: object, check: Any, limit: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SpecError(field, "must be a list of strings")
    if len(value) > limit:
        raise SpecError(field, f"at most {limit} entries")
    out: list[str] = []
    for index, item in enumerate(value):
        clean = check(f"{field}[{index}]", item)
        if clean not in out:
            out.append(clean)
    return tuple(out)


def _check_env(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise SpecError("env", 'must be an object of names to string values, e.g. {"LOG_LEVEL": "debug"}')
    if len(value) > MAX_ENV:
        raise SpecError("env", f"at most {MAX_ENV} variables")
    out = []
    for name, item in value.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise SpecError(f"env.{name}", "a variable name is letters, digits, '_', '-' and '.', not starting with a digit")
        if not isinstance(item, str):
            raise SpecError(f"env.{name}", "must be a string")
        if "\x00" in item:  # the container runtime cannot pass it, so the pod would never start
            raise SpecError(f"env.{name}", "must not contain a NUL character")
        out.append((name, item))
    return tuple(out)


def parse_app(body: object, default_namespace: str = DEFAULT_NAMESPACE) -> AppSpec:
    """The create body (parsed JSON) as an AppSpec; raises SpecError naming the first bad field."""
    if not isinstance(body, Mapping):
        raise SpecError("body", "must be a JSON object")
    unknown = sorted(str(key) for key in body if key not in FIELDS)
    if unknown:
        raise SpecError(unknown[0], f"unknown field (known: {', '.join(FIELDS)})")
    for required in ("name", "image", "port", "hosts"):
        if body.get(required) is None:
            raise SpecError(required, "is required")

    image = body["image"]
    if not isinstance(image, str) or not image or len(image) > MAX_IMAGE_LENGTH or any(
        c.isspace() or ord(c) < 32 for c in image
    ):
        raise SpecError("image", f"must be an image reference of at most {MAX_IMAGE_LENGTH} characters without spaces")
    hosts = _check_list("hosts", body["hosts"], check_host, MAX_HOSTS)
    if not hosts:
        raise SpecError("hosts", "at least one host is required")
    prefixes = body.get("pathPrefixes")
    path_prefixes = ("/",) if prefixes is None else _check_list("pathPrefixes", prefixes, check_path_prefix, MAX_HOSTS)
    if not path_prefixes:
        raise SpecError("pathPrefixes", "at least one path prefix is required (omit the field for '/')")

    min_replicas = body.get("minReplicas")
    min_replicas = DEFAULT_MIN_REPLICAS if min_replicas is None else check_int("minReplicas", min_replicas, 0, MAX_REPLICAS_LIMIT)
    max_replicas = body.get("maxReplicas")
    max_replicas = DEFAULT_MAX_REPLICAS if max_replicas is None else check_int("maxReplicas", max_replicas, 1, MAX_REPLICAS_LIMIT)
    if min_replicas > max_replicas:
        raise SpecError("maxReplicas", f"must be at least minReplicas ({min_replicas})")

    def optional_positive(field: str) -> float | None:
        value = body.get(field)
        return None if value is None else check_positive(field, value)

    concurrency = optional_positive("targetConcurrency")
    env = body.get("env")
    namespace = body.get("namespace")
    return AppSpec(
        name=check_name("name", body["name"]),
        namespace=default_namespace if namespace is None else check_namespace("namespace", namespace),
        image=image,
        port=check_int("port", body["port"], 1, 65535),
        hosts=hosts,
        path_prefixes=path_prefixes,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_concurrency=DEFAULT_TARGET_CONCURRENCY if concurrency is None else concurrency,
        target_request_rate=optional_positive("targetRequestRate"),
        cold_start_timeout_seconds=optional_positive("coldStartTimeoutSeconds"),
        env=() if env is None else _check_env(env),
    )


# -- Service annotations <-> routes ----------------------------------------------------------------------


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def routes_from_annotations(annotations: Mapping[str, str] | None) -> RouteFields:
    """Routes from a Service's annotations; raises SpecError naming the annotation that is wrong."""
    annotations = annotations or {}
    hosts: list[str] = []
    for part in _split(annotations.get(HOSTS_ANNOTATION, "")):
        host = check_host(HOSTS_ANNOTATION, part)
        if host not in hosts:
            hosts.append(host)
    if not hosts:
        raise SpecError(HOSTS_ANNOTATION, "missing or empty: a comma-separated list of hosts is required")
    prefixes: list[str] = []
    for part in _split(annotations.get(PATH_PREFIXES_ANNOTATION, "")):
        prefix = check_path_prefix(PATH_PREFIXES_ANNOTATION, part)
        if prefix not in prefixes:
            prefixes.append(prefix)
    cold: float | None = None
    raw_cold = annotations.get(COLD_START_ANNOTATION, "").strip()
    if raw_cold:
        try:
            cold = check_positive(COLD_START_ANNOTATION, float(raw_cold))
        except ValueError:
            raise SpecError(COLD_START_ANNOTATION, f"{raw_cold!r} is not a number of seconds greater than 0") from None
    return RouteFields(tuple(hosts), tuple(prefixes) or ("/",), cold)


def claims_of_service(service: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (host, prefix) pairs a Service claims; a Service whose annotations are malformed claims none."""
    try:
        routes = routes_from_annotations(_meta(service).get("annotations"))
    except SpecError:
        return set()
    return {(host, prefix) for host in routes.hosts for prefix in routes.path_prefixes}


# -- builders --------------------------------------------------------------------------------------------


def labels(spec: AppSpec) -> dict[str, str]:
    return {NAME_LABEL: spec.name, INSTANCE_LABEL: spec.name, MANAGED_BY_LABEL: MANAGED_BY}


def selector(spec: AppSpec) -> dict[str, str]:
    return {NAME_LABEL: spec.name, INSTANCE_LABEL: spec.name}


def _metadata(spec: AppSpec, owner: Mapping[str, Any] | None, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": spec.name, "namespace": spec.namespace, "labels": labels(spec)}
    if annotations:
        meta["annotations"] = dict(annotations)
    if owner is not None:
        meta["ownerReferences"] = [dict(owner)]
    return meta


def owner_reference(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """Makes the Deployment the owner, so deleting it (with kubectl too) garbage-collects the rest.

    Not a controller reference and no blockOwnerDeletion: that would need RBAC on deployments/finalizers.
    """
    meta = _meta(deployment)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"], "uid": meta["uid"]}


def build_deployment(spec: AppSpec) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "ports": [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}],
        # Probed every second: a cold start waits for the first success, not for a 10 s default period.
        "readinessProbe": {
            "tcpSocket": {"port": PORT_NAME},
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
        },
        "resources": {kind: dict(values) for kind, values in RESOURCES.items()},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if spec.env:
        container["env"] = [{"name": name, "value": value} for name, value in spec.env]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec, None),
        "spec": {
            "replicas": 0,  # KEDA scales from zero on the first request
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector(spec)},
            "template": {
                "metadata": {"labels": labels(spec)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                },
            },
        },
    }


def service_annotations(spec: AppSpec) -> dict[str, str]:
    out = {HOSTS_ANNOTATION: ",".join(spec.hosts), PATH_PREFIXES_ANNOTATION: ",".join(spec.path_prefixes)}
    if spec.cold_start_timeout_seconds is not None:
        out[COLD_START_ANNOTATION] = format_number(spec.cold_start_timeout_seconds)
    return out


def build_service(spec: AppSpec, owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, owner, service_annotations(spec)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(spec),
            "ports": [{"name": PORT_NAME, "port": spec.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def build_scaled_object(spec: AppSpec, scaler_address: str, owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    metadata = {
        SCALER_ADDRESS_KEY: scaler_address,
        BACKEND_KEY: spec.key,
        TARGET_CONCURRENCY_KEY: format_number(spec.target_concurrency),
    }
    if spec.target_request_rate is not None:
        metadata[TARGET_REQUEST_RATE_KEY] = format_number(spec.target_request_rate)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(spec, owner),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicaCount": spec.min_replicas,
            "maxReplicaCount": spec.max_replicas,
            "triggers": [{"type": TRIGGER_TYPE, "metadata": metadata}],
        },
    }


# -- reading apps back from the cluster ------------------------------------------------------------------


def _meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = (obj or {}).get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def is_managed(obj: Mapping[str, Any] | None) -> bool:
    labels_ = _meta(obj).get("labels")
    return isinstance(labels_, Mapping) and labels_.get(MANAGED_BY_LABEL) == MANAGED_BY


def _number(text: object) -> int | float | None:
    try:
        value = float(str(text))
    except ValueError:
        return None
    return int(value) if value.is_integer() else value


def app_view(
    deployment: Mapping[str, Any] | None,
    service: Mapping[str, Any] | None,
    scaled_object: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """One app as the admin API shows it, read back from whichever of its three objects exist.

    Lenient on purpose: it shows what is there (a hand-edited annotation included) and lists the
    objects that are missing in ``status.missing``.
    """
    present = {"Deployment": deployment, "Service": service, "ScaledObject": scaled_object}
    first = next(obj for obj in present.values() if obj is not None)
    view: dict[str, Any] = {"name": _meta(first).get("name"), "namespace": _meta(first).get("namespace")}

    container: Mapping[str, Any] = {}
    if deployment is not None:
        containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}]
        container = containers[0]
    ports = container.get("ports") or [{}]
    view["image"] = container.get("image")
    view["port"] = ports[0].get("containerPort")

    annotations = _meta(service).get("annotations") or {}
    cold = annotations.get(COLD_START_ANNOTATION)
    view["hosts"] = _split(annotations.get(HOSTS_ANNOTATION, ""))
    view["pathPrefixes"] = _split(annotations.get(PATH_PREFIXES_ANNOTATION, "")) or (["/"] if service else [])
    view["coldStartTimeoutSeconds"] = _number(cold) if cold else None

    so_spec = (scaled_object or {}).get("spec") or {}
    triggers = [t for t in so_spec.get("triggers") or [] if t.get("type") in (TRIGGER_TYPE, LEGACY_TRIGGER_TYPE)]
    trigger_meta = (triggers[0].get("metadata") if triggers else None) or {}
    view["minReplicas"] = so_spec.get("minReplicaCount")
    view["maxReplicas"] = so_spec.get("maxReplicaCount")
    concurrency = trigger_meta.get(TARGET_CONCURRENCY_KEY)
    rate = trigger_meta.get(TARGET_REQUEST_RATE_KEY)
    view["targetConcurrency"] = _number(concurrency) if concurrency is not None else None
    view["targetRequestRate"] = _number(rate) if rate is not None else None
    view["env"] = {e.get("name"): e.get("value", "") for e in container.get("env") or [] if "value" in e or "valueFrom" not in e}

    dep_status = (deployment or {}).get("status") or {}
    view["status"] = {
        "replicas": dep_status.get("replicas", 0),
        "readyReplicas": dep_status.get("readyReplicas", 0),
        "missing": [kind for kind, obj in present.items() if obj is None],
    }
    view["createdAt"] = _meta(first).get("creationTimestamp")
    return view


def spec_fields(spec: AppSpec) -> dict[str, Any]:
    """An AppSpec as the JSON fields of the create body (the inverse of parse_app)."""
    return {
        "name": spec.name,
        "namespace": spec.namespace,
        "image": spec.image,
        "port": spec.port,
        "hosts": list(spec.hosts),
        "pathPrefixes": list(spec.path_prefixes),
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "targetConcurrency": _number(spec.target_concurrency),
        "targetRequestRate": None if spec.target_request_rate is None else _number(spec.target_request_rate),
        "coldStartTimeoutSeconds": None if spec.cold_start_timeout_seconds is None else _number(spec.cold_start_timeout_seconds),
        "env": dict(spec.env),
    }

