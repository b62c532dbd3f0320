"""What an HTTPApp (``httpapps.kedahttp.dev/v1alpha1``) says, checked field by field, and the ScaledObject it becomes.

Pure data in, plain dicts out: no client, no I/O. ``parse_httpapp`` reads the object as the API server
stores it (after the CRD's schema and CEL rules) and checks it again with the same validators the admin
API uses, because the proxy must never trust a stored object it could not route: a bad field raises
``SpecError`` naming its JSON path (``spec.hosts[1]``). ``build_scaled_object`` writes the ScaledObject
the controller owns when ``spec.scaling`` is set; every target is in its spec, so a target change bumps
the ScaledObject's ``generation``, which is what makes KEDA rebuild the HPA (kedacore/http-add-on #1656).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kedahttp.kube.appspec import (
    MAX_HOSTS,
    PORT_NAME,
    AppSpec,
    SpecError,
    check_host,
    check_int,
    check_path_prefix,
    check_positive,
)
from kedahttp.kube.trigger import (
    ACTIVITY_WINDOW_KEY,
    BACKEND_KEY,
    DEFAULT_TARGET_CONCURRENCY,
    LEGACY_TRIGGER_TYPE,
    RATE_WINDOW_KEY,
    SCALER_ADDRESS_KEY,
    TARGET_CONCURRENCY_KEY,
    TARGET_REQUEST_RATE_KEY,
    TRIGGER_TYPE,
    format_number,
)

GROUP = "kedahttp.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "HTTPApp"
# Label on what the controller writes: not app.kubernetes.io/managed-by, which Helm sets to "Helm".
OWNED_LABEL = "kedahttp.dev/httpapp"
# Label a ConfigMap must carry for the proxy to read it as a waiting-page template: the proxy watches these
# alone, never every ConfigMap of the cluster (value free; "true" by convention).
WAITING_PAGE_LABEL = "kedahttp.dev/waiting-page"
WINDOW_LIMIT_SECONDS = 600
MAX_REPLICAS_LIMIT = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ServiceRef:
    name: str
    port: int | str  # the Service port's number or name


@dataclass(frozen=True, slots=True)
class ConfigMapKeyRef:
    """One key of a ConfigMap in the app's own namespace (``spec.coldStart.templateConfigMap``)."""

    name: str
    key: str


# a ConfigMap's name is a DNS-1123 subdomain; its keys what Kubernetes allows in ``data``
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_CONFIG_MAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def _config_map_key_ref(field: str, value: object) -> ConfigMapKeyRef | None:
    if value is None:
        return None
    ref = _mapping(field, value)
    unknown = set(ref) - {"name", "key"}
    if unknown:
        raise SpecError(field, f"unknown field(s) {', '.join(sorted(map(str, unknown)))}; known: key, name")
    name, key = ref.get("name"), ref.get("key")
    if not isinstance(name, str) or len(name) > 253 or not _SUBDOMAIN.fullmatch(name):
        raise SpecError(f"{field}.name", f"must be the name of a ConfigMap in the app's namespace (got {name!r})")
    if not isinstance(key, str) or len(key) > 253 or not _CONFIG_MAP_KEY.fullmatch(key):
        raise SpecError(f"{field}.key", f"must be a key of that ConfigMap: letters, digits, '-', '_', '.' (got {key!r})")
    return ConfigMapKeyRef(name, key)


@dataclass(frozen=True, slots=True)
class Scaling:
    target_api_version: str
    target_kind: str
    target_name: str
    min_replicas: int = 0
    max_replicas: int = 10
    target_concurrency: float = DEFAULT_TARGET_CONCURRENCY
    target_request_rate: float | None = None
    rate_window_seconds: int | None = None
    activity_window_seconds: int | None = None
    cooldown_period_seconds: int | None = None
    polling_interval_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class HTTPApp:
    namespace: str
    name: str
    hosts: tuple[str, ...]
    path_prefixes: tuple[str, ...]
    service: ServiceRef
    cold_start_timeout_seconds: float | None = None
    protocol: str = ""  # "http1" or "h2c"; "" follows the Service port's appProtocol
    # spec.timeouts (field -> seconds) and spec.coldStart.placeholder, as written: the proxy checks their
    # values with the routes file's rules (proxy/app_settings.py), so both sources accept the same things
    timeouts: tuple[tuple[str, Any], ...] = ()
    placeholder: str = ""
    template_config_map: ConfigMapKeyRef | None = None  # the waiting page's template (the proxy reads it)
    scaling: Scaling | None = None
    uid: str = ""
    generation: int = 0
    created: str = ""  # metadata.creationTimestamp: the older app keeps a contested host

    @property
    def key(self) -> str:
        """"namespace/name": the backend's identity on the bus, in metrics and in trigger metadata."""
        return f"{self.namespace}/{self.name}"

    def claims(self) -> set[tuple[str, str]]:
        """The (host, path prefix) pairs this app serves; the admin API lets no two apps share one."""
        return {(host, prefix) for host in self.hosts for prefix in self.path_prefixes}


def _mapping(field: str, value: object) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(field, "must be an object")
    return value


def _strings(field: str, value: object, check: Any, default: tuple[str, ...] | None) -> tuple[str, ...]:
    if value is None and default is not None:
        return default
    if not isinstance(value, list) or not value:
        raise SpecError(field, "must be a non-empty list of strings")
    if len(value) > MAX_HOSTS:
        raise SpecError(field, f"at most {MAX_HOSTS} entries")
    out: list[str] = []
    for index, item in enumerate(value):
        clean = check(f"{field}[{index}]", item)
        if clean in out:
            raise SpecError(f"{field}[{index}]", f"{clean!r} is listed twice")
        out.append(clean)
    return tuple(out)


def _service(value: object) -> ServiceRef:
    spec = _mapping("spec.service", value)
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError("spec.service.name", "is required: the name of a Service in the app's namespace")
    port = spec.get("port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, str) and port:
        return ServiceRef(name, port)
    return ServiceRef(name, check_int("spec.service.port", port, 1, 65535))


def _optional_int(spec: Mapping[str, Any], field: str, low: int, high: int) -> int | None:
    value = spec.get(field)
    return None if value is None else check_int(f"spec.scaling.{field}", value, low, high)


def _scaling(value: object, app_name: str) -> Scaling | None:
    if value is None:
        return None
    spec = _mapping("spec.scaling", value)
    target = _mapping("spec.scaling.target", spec.get("target"))
    for field in ("apiVersion", "kind", "name"):
        if field in target and (not isinstance(target[field], str) or not target[field]):
            raise SpecError(f"spec.scaling.target.{field}", "must be a non-empty string")
    low = _optional_int(spec, "minReplicas", 0, MAX_REPLICAS_LIMIT)
    high = _optional_int(spec, "maxReplicas", 1, MAX_REPLICAS_LIMIT)
    low = 0 if low is None else low
    high = 10 if high is None else high
    if low > high:
        raise SpecError("spec.scaling.maxReplicas", f"must be at least minReplicas ({low})")
    concurrency = spec.get("targetConcurrency")
    rate = spec.get("targetRequestRate")
    return Scaling(
        target_api_version=str(target.get("apiVersion") or "apps/v1"),
        target_kind=str(target.get("kind") or "Deployment"),
        target_name=str(target.get("name") or app_name),
        min_replicas=low,
        max_replicas=high,
        target_concurrency=(
            DEFAULT_TARGET_CONCURRENCY if concurrency is None
            else check_positive("spec.scaling.targetConcurrency", concurrency)
        ),
        target_request_rate=None if rate is None else check_positive("spec.scaling.targetRequestRate", rate),
        rate_window_seconds=_optional_int(spec, "rateWindowSeconds", 1, WINDOW_LIMIT_SECONDS),
        activity_window_seconds=_optional_int(spec, "activityWindowSeconds", 1, WINDOW_LIMIT_SECONDS),
        cooldown_period_seconds=_optional_int(spec, "cooldownPeriodSeconds", 0, MAX_REPLICAS_LIMIT),
        polling_interval_seconds=_optional_int(spec, "pollingIntervalSeconds", 1, MAX_REPLICAS_LIMIT),
    )


def meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    value = (obj or {}).get("metadata")
    return value if isinstance(value, Mapping) else {}


def object_key(obj: Mapping[str, Any]) -> str:
    m = meta(obj)
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


PROTOCOLS = ("http1", "h2c")


def _protocol(value: object) -> str:
    if value is None or value == "":
        return ""
    if value not in PROTOCOLS:
        raise SpecError("spec.protocol", f"must be one of {', '.join(PROTOCOLS)} (got {value!r})")
    return str(value)


def parse_httpapp(obj: Mapping[str, Any]) -> HTTPApp:
    """An HTTPApp object as the model; raises SpecError naming the first bad field."""
    m = meta(obj)
    name, namespace = m.get("name"), m.get("namespace")
    if not isinstance(name, str) or not name or not isinstance(namespace, str) or not namespace:
        raise SpecError("metadata", "name and namespace are required")
    spec = _mapping("spec", obj.get("spec"))
    if "hosts" not in spec:
        raise SpecError("spec.hosts", "is required: at least one host")
    cold_start = _mapping("spec.coldStart", spec.get("coldStart"))
    cold = cold_start.get("timeoutSeconds")
    placeholder = cold_start.get("placeholder") or ""
    if not isinstance(placeholder, str):
        raise SpecError("spec.coldStart.placeholder", "must be hold or page")
    return HTTPApp(
        namespace=namespace,
        name=name,
        hosts=_strings("spec.hosts", spec.get("hosts"), check_host, None),
        path_prefixes=_strings("spec.pathPrefixes", spec.get("pathPrefixes"), check_path_prefix, ("/",)),
        service=_service(spec.get("service")),
        cold_start_timeout_seconds=None if cold is None else check_positive("spec.coldStart.timeoutSeconds", cold),
        protocol=_protocol(spec.get("protocol")),
        timeouts=tuple(sorted(_mapping("spec.timeouts", spec.get("timeouts")).items())),
        placeholder=placeholder,
        template_config_map=_config_map_key_ref("spec.coldStart.templateConfigMap",
                                                cold_start.get("templateConfigMap")),
        scaling=_scaling(spec.get("scaling"), name),
        uid=str(m.get("uid") or ""),
        generation=int(m.get("generation") or 0),
        created=str(m.get("creationTimestamp") or ""),
    )


def to_object(app: HTTPApp) -> dict[str, Any]:
    """The model as an HTTPApp object to create (the inverse of ``parse_httpapp``)."""
    spec: dict[str, Any] = {
        "hosts": list(app.hosts),
        "pathPrefixes": list(app.path_prefixes),
        "service": {"name": app.service.name, "port": app.service.port},
    }
    cold_start: dict[str, Any] = {}
    if app.cold_start_timeout_seconds is not None:
        cold_start["timeoutSeconds"] = app.cold_start_timeout_seconds
    if app.placeholder:
        cold_start["placeholder"] = app.placeholder
    if app.template_config_map is not None:
        cold_start["templateConfigMap"] = {"name": app.template_config_map.name, "key": app.template_config_map.key}
    if cold_start:
        spec["coldStart"] = cold_start
    if app.timeouts:
        spec["timeouts"] = dict(app.timeouts)
    if app.protocol:
        spec["protocol"] = app.protocol
    if app.scaling is not None:
        s = app.scaling
        scaling: dict[str, Any] = {
            "target": {"apiVersion": s.target_api_version, "kind": s.target_kind, "name": s.target_name},
            "minReplicas": s.min_replicas,
            "maxReplicas": s.max_replicas,
            "targetConcurrency": s.target_concurrency,
        }
        optional = {
            "targetRequestRate": s.target_request_rate,
            "rateWindowSeconds": s.rate_window_seconds,
            "activityWindowSeconds": s.activity_window_seconds,
            "cooldownPeriodSeconds": s.cooldown_period_seconds,
            "pollingIntervalSeconds": s.polling_interval_seconds,
        }
        scaling.update({k: v for k, v in optional.items() if v is not None})
        spec["scaling"] = scaling
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": app.name, "namespace": app.namespace},
        "spec": spec,
    }


def from_app_spec(spec: AppSpec) -> HTTPApp:
    """The HTTPApp of an app made by the admin API: its Service's named port, scaling its Deployment."""
    return HTTPApp(
        namespace=spec.namespace,
        name=spec.name,
        hosts=spec.hosts,
        path_prefixes=spec.path_prefixes,
        service=ServiceRef(spec.name, PORT_NAME),
        cold_start_timeout_seconds=spec.cold_start_timeout_seconds,
        scaling=Scaling(
            target_api_version="apps/v1",
            target_kind="Deployment",
            target_name=spec.name,
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            target_concurrency=spec.target_concurrency,
            target_request_rate=spec.target_request_rate,
        ),
    )


@dataclass(frozen=True, slots=True)
class Conflict:
    winner: str  # the app that keeps the pair
    host: str
    path_prefix: str

    def __str__(self) -> str:
        return f"host {self.host!r} with path prefix {self.path_prefix!r} is already served by HTTPApp {self.winner}"


def conflicts(apps: Iterable[HTTPApp]) -> dict[str, Conflict]:
    """Apps that claim a (host, path prefix) pair an older app claims, and why: the proxies leave them
    out and the controller says so in ``Routed``. Older means the earlier creationTimestamp, then the
    key, so every proxy and the controller decide the same way whatever order they saw the apps in."""
    owners: dict[tuple[str, str], str] = {}
    losers: dict[str, Conflict] = {}
    for app in sorted(apps, key=lambda a: (a.created or "~", a.key)):
        taken = sorted(pair for pair in app.claims() if pair in owners)
        if taken:
            host, prefix = taken[0]
            losers[app.key] = Conflict(owners[(host, prefix)], host, prefix)
            continue
        for pair in app.claims():
            owners[pair] = app.key
    return losers


# -- the ScaledObject the controller owns ---------------------------------------------------------------


def owner_reference(app: HTTPApp) -> dict[str, Any]:
    """The HTTPApp as controller of what it makes: deleting the HTTPApp garbage-collects it."""
    return {"apiVersion": API_VERSION, "kind": KIND, "name": app.name, "uid": app.uid, "controller": True}


def is_owned_by(obj: Mapping[str, Any], app_name: str, uid: str | None = None) -> bool:
    return any(
        ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(GROUP + "/") and ref.get("name") == app_name
        and (uid is None or ref.get("uid") == uid)
        for ref in meta(obj).get("ownerReferences") or []
    )


def trigger_metadata(app: HTTPApp, scaler_address: str) -> dict[str, str]:
    scaling = app.scaling
    assert scaling is not None
    out = {
        SCALER_ADDRESS_KEY: scaler_address,
        BACKEND_KEY: app.key,
        TARGET_CONCURRENCY_KEY: format_number(scaling.target_concurrency),
    }
    optional = {
        TARGET_REQUEST_RATE_KEY: scaling.target_request_rate,
        RATE_WINDOW_KEY: scaling.rate_window_seconds,
        ACTIVITY_WINDOW_KEY: scaling.activity_window_seconds,
    }
    out.update({key: format_number(value) for key, value in optional.items() if value is not None})
    return out


def build_scaled_object(app: HTTPApp, scaler_address: str, trigger_authentication: str = "") -> dict[str, Any]:
    """The ScaledObject for an HTTPApp with ``spec.scaling``, named like the app, owned by it.

    With TLS to the scaler, ``trigger_authentication`` names the ClusterTriggerAuthentication that gives
    KEDA its ``caCert``, ``tlsClientCert`` and ``tlsClientKey`` from a Secret: KEDA reads them as
    authentication parameters, and a client key must never be written into a ScaledObject in clear.
    """
    scaling = app.scaling
    if scaling is None:
        raise ValueError(f"{app.key} has no spec.scaling: its ScaledObject is the user's")
    spec: dict[str, Any] = {
        "scaleTargetRef": {
            "apiVersion": scaling.target_api_version, "kind": scaling.target_kind, "name": scaling.target_name,
        },
        "minReplicaCount": scaling.min_replicas,
        "maxReplicaCount": scaling.max_replicas,
        "triggers": [{"type": TRIGGER_TYPE, "metadata": trigger_metadata(app, scaler_address)}],
    }
    if trigger_authentication:
        spec["triggers"][0]["authenticationRef"] = {"name": trigger_authentication, "kind": "ClusterTriggerAuthentication"}
    if scaling.cooldown_period_seconds is not None:
        spec["cooldownPeriod"] = scaling.cooldown_period_seconds
    if scaling.polling_interval_seconds is not None:
        spec["pollingInterval"] = scaling.polling_interval_seconds
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {
            "name": app.name,
            "namespace": app.namespace,
            "labels": {OWNED_LABEL: app.name},
            "ownerReferences": [owner_reference(app)],
        },
        "spec": spec,
    }


def kedahttp_triggers(scaled_object: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(backend, metadata) of each kedahttp trigger of a ScaledObject; the backend is the trigger's
    ``backend``, else the ScaledObject's own namespace/name (as the scaler reads it)."""
    out = []
    for trigger in (scaled_object.get("spec") or {}).get("triggers") or []:
        if not isinstance(trigger, Mapping) or trigger.get("type") not in (TRIGGER_TYPE, LEGACY_TRIGGER_TYPE):
            continue
        metadata = trigger.get("metadata") or {}
        out.append((str(metadata.get(BACKEND_KEY, object_key(scaled_object))), metadata))
    return out


def names_backend(scaled_object: Mapping[str, Any], app_key: str) -> bool:
    """Whether a ScaledObject's kedahttp trigger names this app (``backend``, else its own namespace/name)."""
    return any(backend == app_key for backend, _ in kedahttp_triggers(scaled_object))
