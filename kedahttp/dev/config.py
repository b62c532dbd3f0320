"""The dev config: which apps `kedahttp dev` runs as local processes, and how the KEDA emulator times itself.

One YAML file, camelCase keys as in a ScaledObject and the routes file. Each app is a backend (hosts,
path prefixes) plus the fields of its ScaledObject (min/max replicas, targets) plus how to start one
replica: the bundled sample app by default, or any command that listens on ``{port}``. The emulator's
timings are KEDA's and the HPA's, with short defaults so a demo scales in seconds rather than minutes;
each can be set back to the cluster default (shown in the comments of the bundled sample.yaml).

Parsed once at start into frozen dataclasses; a bad value stops `kedahttp dev` with the key's path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from kedahttp.dev.hpa import Policy, Rules
from kedahttp.process.settings import ConfigurationError

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SAMPLE = "sample"  # the ``command`` value that means the bundled sample app


class ConfigError(ConfigurationError, ValueError):
    """The dev config cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class AppConfig:
    name: str
    namespace: str = "default"
    hosts: tuple[str, ...] = ()
    path_prefixes: tuple[str, ...] = ("/",)
    command: tuple[str, ...] = ()  # empty: the bundled sample app; ``{port}``/``{replica}`` substituted
    env: Mapping[str, str] = field(default_factory=dict)
    sample_delay_ms: float = 0.0  # sample app: default response delay (a request's ?sleep_ms wins)
    sample_startup_seconds: float = 0.0  # sample app: pretend boot time before it listens
    min_replicas: int = 0
    max_replicas: int = 10
    target_concurrency: float | None = 100.0
    target_request_rate: float | None = None
    rate_window_seconds: float | None = None
    activity_window_seconds: float | None = None
    cold_start_timeout_seconds: float | None = None
    readiness_timeout_seconds: float = 30.0
    termination_grace_seconds: float = 5.0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def is_sample(self) -> bool:
        return not self.command

    def scaler_metadata(self) -> dict[str, str]:
        """The trigger metadata KEDA would send: every key a string, as in the ScaledObject."""
        meta = {"backend": self.key}
        for key, value in (
            ("targetConcurrency", self.target_concurrency),
            ("targetRequestRate", self.target_request_rate),
            ("rateWindowSeconds", self.rate_window_seconds),
            ("activityWindowSeconds", self.activity_window_seconds),
        ):
            if value is not None:
                meta[key] = f"{value:g}"
        return meta


# Dev defaults: the HPA's own scale-up policies, a 10 s scale-down window instead of 300 s.
DEV_SCALE_UP = Rules(0.0, (Policy("Percent", 100, 15.0), Policy("Pods", 4, 15.0)))
DEV_SCALE_DOWN = Rules(10.0, (Policy("Percent", 100, 15.0),))


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """KEDA's and the HPA's timings. Cluster defaults: 30, 300, 15, 0.1, 300 (dev uses shorter ones)."""

    polling_interval_seconds: float = 2.0
    cooldown_period_seconds: float = 15.0
    hpa_sync_period_seconds: float = 3.0
    tolerance: float = 0.1
    scale_up: Rules = DEV_SCALE_UP
    scale_down: Rules = DEV_SCALE_DOWN
    stream_backoff_initial_seconds: float = 2.0
    stream_backoff_max_seconds: float = 60.0
    call_timeout_seconds: float = 3.0  # GetMetricSpec + GetMetrics + IsActive must fit in this


@dataclass(frozen=True, slots=True)
class DevConfig:
    apps: tuple[AppConfig, ...]
    emulator: EmulatorConfig = EmulatorConfig()
    source: str = "<memory>"


def default_path() -> str:
    return str(resources.files("kedahttp.dev").joinpath("sample.yaml"))


def load(path: str | None = None) -> DevConfig:
    """Reads and checks the dev config at ``path`` (the bundled sample.yaml when None)."""
    path = path or default_path()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse(data, path)


def parse(data: Any, source: str = "<memory>") -> DevConfig:
    reader = _Reader(source)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with 'apps'")
    reader.known(data, "", {"apps", "keda", "hpa"})
    raw_apps = data.get("apps")
    if not isinstance(raw_apps, list) or not raw_apps:
        raise ConfigError(f"{source}: apps: expected a non-empty list")
    apps = tuple(reader.app(item, f"apps[{i}]") for i, item in enumerate(raw_apps))
    seen: dict[str, str] = {}
    for i, app in enumerate(apps):
        if app.key in seen:
            raise ConfigError(f"{source}: apps[{i}].name: {app.key} is defined twice")
        seen[app.key] = app.name
    emulator = reader.emulator(data.get("keda") or {}, data.get("hpa") or {})
    return DevConfig(apps=apps, emulator=emulator, source=source)


class _Reader:
    """Typed access to the YAML with error messages that name the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {message}")

    def known(self, data: Mapping[str, Any], where: str, keys: set[str]) -> None:
        for key in data:
            if key not in keys:
                raise self.fail(f"{where}{key}", f"unknown key (known: {', '.join(sorted(keys))})")

    def number(self, data: Mapping[str, Any], key: str, where: str, default: float | None,
               minimum: float = 0.0, strict: bool = False) -> float | None:
        value = data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{where}.{key}", f"expected a number, got {value!r}")
        if value < minimum or (strict and value == minimum):
            raise self.fail(f"{where}.{key}", f"must be {'greater than' if strict else 'at least'} {minimum:g}")
        return float(value)

    def integer(self, data: Mapping[str, Any], key: str, where: str, default: int, minimum: int = 0) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{where}.{key}", f"expected a whole number, got {value!r}")
        if value < minimum:
            raise self.fail(f"{where}.{key}", f"must be at least {minimum}")
        return value

    def strings(self, data: Mapping[str, Any], key: str, where: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = data.get(key)
        if value is None:
            return default
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"{where}.{key}", "expected a list of non-empty strings")
        return tuple(value)

    def app(self, data: Any, where: str) -> AppConfig:
        if not isinstance(data, Mapping):
            raise self.fail(where, "expected a mapping")
        self.known(data, f"{where}.", {
            "name", "namespace", "hosts", "pathPrefixes", "command", "env", "sample", "minReplicas",
            "maxReplicas", "targetConcurrency", "targetRequestRate", "rateWindowSeconds",
            "activityWindowSeconds", "coldStartTimeoutSeconds", "readinessTimeoutSeconds",
            "terminationGracePeriodSeconds",
        })
        name, namespace = data.get("name"), data.get("namespace", "default")
        for key, value in (("name", name), ("namespace", namespace)):
            if not isinstance(value, str) or not DNS_LABEL.match(value):
                raise self.fail(f"{where}.{key}", f"must be a DNS-1123 label, got {value!r}")
        hosts = tuple(h.lower() for h in self.strings(data, "hosts", where, ()))
        if not hosts:
            raise self.fail(f"{where}.hosts", "at least one host is needed")
        prefixes = self.strings(data, "pathPrefixes", where, ("/",))
        if not all(p.startswith("/") for p in prefixes):
            raise self.fail(f"{where}.pathPrefixes", "every prefix starts with /")
        command = data.get("command", SAMPLE)
        if command == SAMPLE:
            command_tuple: tuple[str, ...] = ()
        else:
            command_tuple = self.strings(data, "command", where, ())
            if not any("{port}" in part for part in command_tuple):
                raise self.fail(f"{where}.command", "must contain {port} (where the replica listens)")
        env = data.get("env") or {}
        if not isinstance(env, Mapping) or not all(isinstance(k, str) for k in env):
            raise self.fail(f"{where}.env", "expected a mapping of names to values")
        sample = data.get("sample") or {}
        if not isinstance(sample, Mapping):
            raise self.fail(f"{where}.sample", "expected a mapping")
        self.known(sample, f"{where}.sample.", {"delayMs", "startupSeconds"})
        if sample and command_tuple:
            raise self.fail(f"{where}.sample", "only for the bundled sample app (no command)")
        min_replicas = self.integer(data, "minReplicas", where, 0)
        max_replicas = self.integer(data, "maxReplicas", where, 10, minimum=1)
        if max_replicas < min_replicas:
            raise self.fail(f"{where}.maxReplicas", "must be at least minReplicas")
        target_concurrency = self.number(data, "targetConcurrency", where, None, strict=True)
        target_rate = self.number(data, "targetRequestRate", where, None, strict=True)
        if target_concurrency is None and target_rate is None:
            target_concurrency = 100.0  # the scaler's default metric
        return AppConfig(
            name=str(name),
            namespace=str(namespace),
            hosts=hosts,
            path_prefixes=prefixes,
            command=command_tuple,
            env={k: str(v) for k, v in env.items()},
            sample_delay_ms=self.number(sample, "delayMs", f"{where}.sample", 0.0) or 0.0,
            sample_startup_seconds=self.number(sample, "startupSeconds", f"{where}.sample", 0.0) or 0.0,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            target_concurrency=target_concurrency,
            target_request_rate=target_rate,
            rate_window_seconds=self.number(data, "rateWindowSeconds", where, None, strict=True),
            activity_window_seconds=self.number(data, "activityWindowSeconds", where, None, strict=True),
            cold_start_timeout_seconds=self.number(data, "coldStartTimeoutSeconds", where, None, strict=True),
            readiness_timeout_seconds=self.number(data, "readinessTimeoutSeconds", where, 30.0, strict=True) or 30.0,
            termination_grace_seconds=self.number(data, "terminationGracePeriodSeconds", where, 5.0) or 0.0,
        )

    def rules(self, data: Any, where: str, default: Rules) -> Rules:
        if data is None:
            return default
        if not isinstance(data, Mapping):
            raise self.fail(where, "expected a mapping")
        self.known(data, f"{where}.", {"stabilizationWindowSeconds", "selectPolicy", "policies"})
        window = self.number(data, "stabilizationWindowSeconds", where, default.stabilization_window_seconds)
        policies = default.policies
        if "policies" in data:
            raw = data["policies"]
            if not isinstance(raw, list):
                raise self.fail(f"{where}.policies", "expected a list")
            built = []
            for i, item in enumerate(raw):
                at = f"{where}.policies[{i}]"
                if not isinstance(item, Mapping):
                    raise self.fail(at, "expected a mapping with type, value, periodSeconds")
                self.known(item, f"{at}.", {"type", "value", "periodSeconds"})
                try:
                    built.append(Policy(str(item.get("type")), self.integer(item, "value", at, 0, 1),
                                        self.number(item, "periodSeconds", at, 15.0, strict=True) or 15.0))
                except ValueError as exc:
                    raise self.fail(at, str(exc)) from exc
            policies = tuple(built)
        try:
            return Rules(window or 0.0, policies, str(data.get("selectPolicy", default.select_policy)))
        except ValueError as exc:
            raise self.fail(where, str(exc)) from exc

    def emulator(self, keda: Any, hpa: Any) -> EmulatorConfig:
        if not isinstance(keda, Mapping) or not isinstance(hpa, Mapping):
            raise ConfigError(f"{self.source}: keda and hpa must be mappings")
        self.known(keda, "keda.", {
            "pollingInterval", "cooldownPeriod", "streamBackoffInitialSeconds", "streamBackoffMaxSeconds",
            "callTimeoutSeconds",
        })
        self.known(hpa, "hpa.", {"syncPeriodSeconds", "tolerance", "scaleUp", "scaleDown"})
        d = EmulatorConfig()
        initial = self.number(keda, "streamBackoffInitialSeconds", "keda", d.stream_backoff_initial_seconds, strict=True)
        maximum = self.number(keda, "streamBackoffMaxSeconds", "keda", d.stream_backoff_max_seconds, strict=True)
        if (initial or 0) > (maximum or 0):
            raise self.fail("keda.streamBackoffMaxSeconds", "must be at least streamBackoffInitialSeconds")
        return EmulatorConfig(
            polling_interval_seconds=self.number(keda, "pollingInterval", "keda", d.polling_interval_seconds, strict=True)
            or d.polling_interval_seconds,
            cooldown_period_seconds=self.number(keda, "cooldownPeriod", "keda", d.cooldown_period_seconds) or 0.0,
            hpa_sync_period_seconds=self.number(hpa, "syncPeriodSeconds", "hpa", d.hpa_sync_period_seconds, strict=True)
            or d.hpa_sync_period_seconds,
            tolerance=self.number(hpa, "tolerance", "hpa", d.tolerance) or 0.0,
            scale_up=self.rules(hpa.get("scaleUp"), "hpa.scaleUp", d.scale_up),
            scale_down=self.rules(hpa.get("scaleDown"), "hpa.scaleDown", d.scale_down),
            stream_backoff_initial_seconds=initial or d.stream_backoff_initial_seconds,
            stream_backoff_max_seconds=maximum or d.stream_backoff_max_seconds,
            call_timeout_seconds=self.number(keda, "callTimeoutSeconds", "keda", d.call_timeout_seconds, strict=True)
            or d.call_timeout_seconds,
        )
