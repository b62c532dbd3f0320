"""Settings shared by every kedahttp process, parsed once at start and frozen.

Every setting is the environment variable ``KEDAHTTP_<NAME>`` and the flag ``--<name>``; the flag wins.
The table below is the single source: the CLI builds its options from it, the docs list it, and a bad
value stops the process at start with a message naming the setting.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SettingError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""

    def __init__(self, name: str, value: object, reason: str) -> None:
        self.name = name
        self.value = value
        self.reason = reason
        super().__init__(f"{env_name(name)} / --{flag_name(name)}: {reason} (got {value!r})")


@dataclass(frozen=True, slots=True)
class Address:
    """A ``host:port`` pair; host may be a name, an IPv4 address or a bracketed IPv6 address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_address(text: str) -> Address:
    text = text.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
    else:
        host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("expected host:port")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError("port must be 0-65535")
    return Address(host, port)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number") from None
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a number greater than 0")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a number of at least 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("expected a whole number") from None
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _bus_url(text: str) -> str:
    from kedahttp.activity.bus import BUS_SCHEMES  # the table of transports decides what is valid

    scheme = text.partition("://")[0].lower()
    if "://" not in text or scheme not in BUS_SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(s + '://' for s in BUS_SCHEMES)}")
    return text.strip()


def _text(text: str) -> str:
    return text


def _optional_text(text: str) -> str | None:
    return text or None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number") from None
    if not 0 <= value <= 1:
        raise ValueError("must be a number from 0 to 1")
    return value


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.168.1.7, fd00::/8"`` -> networks; a bare address is a /32 (or /128). Host bits set
    (``10.0.0.1/8``) are an error: more likely a typo than a wish to trust the whole network."""
    networks: list[Network] = []
    for raw in text.replace(" ", ",").split(","):
        entry = raw.strip()
        if entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=True))
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network ({exc})") from None
    return tuple(networks)


def _routes(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("expected 'kubernetes' or a path to a routes file")
    return value


@dataclass(frozen=True, slots=True)
class Spec:
    name: str  # field name, lower case with underscores
    parse: Callable[[str], Any]
    default: str | None
    help: str
    secret: bool = False


SPECS: tuple[Spec, ...] = (
    Spec("bus", _bus_url, "redis://127.0.0.1:6379/0", "activity bus: redis://, rediss://, nats://, memory://"),
    Spec("proxy_addr", parse_address, "0.0.0.0:8080", "data path listen address"),
    Spec("admin_addr", parse_address, "0.0.0.0:8081", "admin API, /healthz and /readyz"),
    Spec("metrics_addr", parse_address, "0.0.0.0:9102", "Prometheus /metrics (scaler default 0.0.0.0:9103)"),
    Spec("scaler_addr", parse_address, "0.0.0.0:9090", "KEDA external scaler gRPC listen address"),
    Spec("routes", _routes, "kubernetes", "'kubernetes' or the path of a routes file"),
    Spec("admin_token", _optional_text, "", "bearer token for the admin API", secret=True),
    Spec("cold_start_timeout_seconds", _positive_float, "60", "how long a request is held for a cold backend"),
    Spec("max_held_requests", _positive_int, "1000", "held requests per backend per proxy instance"),
    Spec("report_interval_seconds", _positive_float, "0.25", "how often activity reports are published"),
    Spec("workers", _positive_int, "1", "proxy worker processes sharing the listening port"),
    Spec("log_format", _choice("json", "text"), "json", "json or text"),
    Spec("log_level", _choice("debug", "info", "warning", "error"), "info", "debug, info, warning, error"),
    # Additions to the contract's table, each documented in the README.
    Spec("watch_namespace", _text, "", "kubernetes routes: namespace to watch; empty watches all namespaces"),
    Spec("scaler_address", _text, "kedahttp-scaler.kedahttp.svc:9090",
         "scalerAddress written into the ScaledObjects the admin API creates"),
    Spec("shutdown_delay_seconds", _non_negative_float, "3",
         "after SIGTERM: seconds to keep serving while not ready, so load balancers move away"),
    Spec("drain_timeout_seconds", _positive_float, "25", "after the delay: seconds to let in-flight work finish"),
    Spec("concurrency_window_seconds", _positive_float, "3",
         "scaler: window of the time-weighted concurrency average"),
    # issue 15: the data path's timeouts, forwarded headers, waiting page and access log
    Spec("trusted_proxies", parse_networks, "",
         "CIDRs whose X-Forwarded-*/Forwarded headers are kept and appended to; empty trusts nobody"),
    Spec("upstream_connect_timeout_seconds", _positive_float, "5", "opening a connection to an app"),
    Spec("upstream_response_header_timeout_seconds", _positive_float, "60",
         "request sent -> response status line; past it the client gets 504"),
    Spec("upstream_idle_timeout_seconds", _positive_float, "60",
         "longest pause between two reads of a response body; past it the response is cut"),
    Spec("upstream_total_timeout_seconds", _non_negative_float, "0",
         "cap on a whole non-streaming response (Content-Length framed); 0: no cap"),
    Spec("tunnel_idle_timeout_seconds", _positive_float, "600",
         "a WebSocket/Upgrade tunnel with no byte either way this long is closed"),
    Spec("cold_start_placeholder", _choice("hold", "page"), "hold",
         "apps without coldStart.placeholder: hold requests, or answer browsers with a waiting page"),
    Spec("access_log_sample_rate", _fraction, "0",
         "fraction of requests written to the JSON access log on stdout; 0: off"),
)
SPEC_BY_NAME: Mapping[str, Spec] = {spec.name: spec for spec in SPECS}

COMPONENT_DEFAULTS: Mapping[str, Mapping[str, str]] = {
    "scaler": {"metrics_addr": "0.0.0.0:9103"},
    # `kedahttp dev` is a demo on a workstation: nothing of it listens beyond this machine by default.
    "dev": {
        "proxy_addr": "127.0.0.1:8080",
        "admin_addr": "127.0.0.1:8081",
        "metrics_addr": "127.0.0.1:9102",
        "scaler_addr": "127.0.0.1:9090",
    },
}


def env_name(name: str) -> str:
    return "KEDAHTTP_" + name.upper()


def flag_name(name: str) -> str:
    return name.replace("_", "-")


@dataclass(frozen=True, slots=True)
class Settings:
    bus: str
    proxy_addr: Address
    admin_addr: Address
    metrics_addr: Address
    scaler_addr: Address
    routes: str
    admin_token: str | None
    cold_start_timeout_seconds: float
    max_held_requests: int
    report_interval_seconds: float
    workers: int
    log_format: str
    log_level: str
    watch_namespace: str
    scaler_address: str
    shutdown_delay_seconds: float
    drain_timeout_seconds: float
    concurrency_window_seconds: float
    # issue 15
    trusted_proxies: tuple[Network, ...]
    upstream_connect_timeout_seconds: float
    upstream_response_header_timeout_seconds: float
    upstream_idle_timeout_seconds: float
    upstream_total_timeout_seconds: float
    tunnel_idle_timeout_seconds: float
    cold_start_placeholder: str
    access_log_sample_rate: float

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def redacted(self) -> dict[str, str]:
        """The settings as strings for a start-up log line, secrets masked."""
        out = {}
        for spec in SPECS:
            value = getattr(self, spec.name)
            out[spec.name] = "***" if spec.secret and value else str(value if value is not None else "")
        return out


def load(
    flags: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
    component: str = "",
) -> Settings:
    """Builds Settings from flags (raw strings, None when not given), then the environment, then defaults.

    Raises SettingError naming the first setting whose value does not parse.
    """
    flags = flags or {}
    environ = os.environ if environ is None else environ
    defaults = COMPONENT_DEFAULTS.get(component, {})
    values: dict[str, Any] = {}
    for spec in SPECS:
        raw = flags.get(spec.name)
        if raw is None:
            raw = environ.get(env_name(spec.name))
        if raw is None:
            raw = defaults.get(spec.name, spec.default)
        try:
            values[spec.name] = spec.parse(raw if raw is not None else "")
        except ValueError as exc:
            raise SettingError(spec.name, raw, str(exc)) from exc
    return Settings(**values)
