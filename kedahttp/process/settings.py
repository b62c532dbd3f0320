"""The settings of the kedahttp processes, parsed once at start and frozen.

Every setting is the environment variable ``KEDAHTTP_<NAME>`` and the flag ``--<name>``; the flag wins.
The table below (SPECS) is the single source: each row says which processes take it and their defaults,
and from it come the CLI's flags and --help, the README's settings table (settings_doc.py) and the
settings dump at start. A bad value stops the process at start with a message naming the setting; an
unknown ``KEDAHTTP_*`` variable is reported with the closest known name.

A plain table rather than pydantic-settings: the parsers are a few lines each, the table is also the
documentation and the per-process view, and a process starts without importing a validation library.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kedahttp.process import secrets


class ConfigurationError(Exception):
    """The process is configured in a way it cannot start with: exit code 2, where runtime failures give 1.

    The base of every configuration error (a setting, the routes file, the dev config, the cluster
    configuration), so the command line maps them to an exit code in one place; each message names the
    setting or the file.
    """


class SettingError(ConfigurationError, ValueError):
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


def _window_bytes(text: str) -> int:
    """An HTTP/2 flow-control window: at least the protocol's default, at most 2^31-1 (RFC 9113 6.9)."""
    value = _positive_int(text)
    if not 65535 <= value <= 2**31 - 1:
        raise ValueError("must be 65535-2147483647 (an HTTP/2 window)")
    return value


class _choice:  # lower case: used like the parse functions beside it
    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def __call__(self, text: str) -> str:
        value = text.strip().lower()
        if value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        return value


# The activity bus's URL schemes. The transports (kedahttp.activity.bus) are keyed by these names and a
# unit test ties the two; the list lives here, on the ground floor, so parsing a setting imports no adapter.
BUS_SCHEMES: tuple[str, ...] = ("redis", "rediss", "nats", "memory")


def _bus_url(text: str) -> str:
    scheme = text.partition("://")[0].lower()
    if "://" not in text or scheme not in BUS_SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(s + '://' for s in BUS_SCHEMES)}")
    return text.strip()


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


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


PROCESSES: tuple[str, ...] = ("proxy", "scaler", "controller", "dev")
NETWORK = ("proxy", "scaler", "controller")  # the processes that run in a cluster; dev is a workstation demo


@dataclass(frozen=True, slots=True)
class Spec:
    """One setting: its name, how its text parses, its default, and which processes take it.

    ``processes`` names the commands that take the setting (as a flag, from the environment, in their
    settings dump and --help); the others leave it at its default and do not show it. ``defaults``
    overrides ``default`` for a process. ``metavar`` is the type shown in --help; empty derives it from
    the parser and the name's unit suffix (see ``metavar``).
    """

    name: str  # field name, lower case with underscores
    parse: Callable[[str], Any]
    default: str | None
    help: str
    secret: bool = False
    processes: tuple[str, ...] = PROCESSES
    defaults: Mapping[str, str] = dataclasses.field(default_factory=dict)
    metavar: str = ""


# Local defaults of `kedahttp dev`, a demo on a workstation: nothing of it listens beyond this machine,
# it needs no bus server, and it writes text for a person.
_DEV_LOOPBACK = "127.0.0.1"

SPECS: tuple[Spec, ...] = (
    Spec("bus", _bus_url, "redis://127.0.0.1:6379/0",
         "activity bus URL: redis://, rediss://, nats://, memory://; credentials are never logged",
         processes=("proxy", "scaler", "dev"), defaults={"dev": "memory://dev"}),
    Spec("proxy_addr", parse_address, "0.0.0.0:8080", "data path listen address",
         processes=("proxy", "dev"), defaults={"dev": f"{_DEV_LOOPBACK}:8080"}),
    Spec("admin_addr", parse_address, "0.0.0.0:8081",
         "/healthz and /readyz; the proxy's live page; the controller's apps API",
         processes=("proxy", "controller", "dev"), defaults={"dev": f"{_DEV_LOOPBACK}:8081"}),
    Spec("metrics_addr", parse_address, "0.0.0.0:9102", "Prometheus /metrics (dev: the scaler's on the next port)",
         defaults={"scaler": "0.0.0.0:9103", "controller": "0.0.0.0:9104", "dev": f"{_DEV_LOOPBACK}:9102"}),
    Spec("scaler_addr", parse_address, "0.0.0.0:9090", "KEDA external scaler gRPC listen address",
         processes=("scaler", "dev"), defaults={"dev": f"{_DEV_LOOPBACK}:9090"}),
    Spec("routes", _routes, "kubernetes", "'kubernetes' or the path of a routes file", processes=("proxy",),
         metavar="kubernetes|FILE"),
    Spec("admin_token", _optional_text, "", "bearer token of the controller's apps API and the proxy's live page",
         secret=True, processes=("proxy", "controller"), metavar="TOKEN"),
    Spec("cold_start_timeout_seconds", _positive_float, "60", "how long a request is held for a cold backend",
         processes=("proxy", "dev")),
    Spec("max_held_requests", _positive_int, "1000", "held requests per backend per proxy instance",
         processes=("proxy", "dev")),
    Spec("report_interval_seconds", _positive_float, "0.25", "how often activity reports are published",
         processes=("proxy", "dev")),
    Spec("workers", _positive_int, "1", "proxy worker processes sharing the listening port", processes=("proxy",)),
    Spec("log_format", _choice("json", "text"), "json", "json or text", defaults={"dev": "text"}),
    Spec("log_level", _choice("debug", "info", "warning", "error"), "info", "debug, info, warning, error"),
    # Additions to the contract's table, each documented in the README.
    Spec("watch_namespace", _text, "", "kubernetes: namespace of the HTTPApps to watch; empty watches all namespaces",
         processes=("proxy", "controller"), metavar="NAMESPACE"),
    Spec("scaler_address", _text, "kedahttp-scaler.kedahttp.svc:9090",
         "scalerAddress written into the ScaledObjects the controller makes; empty: kedahttp-scaler in its "
         "own namespace", processes=("controller",), metavar="HOST:PORT"),
    Spec("shutdown_delay_seconds", _non_negative_float, "3",
         "after SIGTERM: seconds to keep serving while not ready, so load balancers move away", processes=NETWORK),
    Spec("drain_timeout_seconds", _positive_float, "25", "after the delay: seconds to let in-flight work finish",
         processes=NETWORK),
    Spec("concurrency_window_seconds", _positive_float, "3",
         "scaler: window of the time-weighted concurrency average", processes=("scaler", "dev")),
    # Issue 13: unknown KEDAHTTP_* variables stop the process instead of a warning.
    Spec("strict", _boolean, "false", "an unknown KEDAHTTP_* variable is an error (exit 2), not a warning"),
    # issue 18: observability
    Spec("metrics_app_latency", _boolean, "false",
         "proxy /metrics: add the request duration histogram per app (21 series per app, docs/metrics.md)",
         processes=("proxy", "dev")),
    Spec("tracing", _boolean, "false",
         "OpenTelemetry spans for held requests and cold starts (needs the 'tracing' extra)",
         processes=("proxy", "dev")),
    # issue 16: HTTP/2 and gRPC
    Spec("h2_max_concurrent_streams", _positive_int, "128", "HTTP/2: streams one client connection may have open",
         processes=("proxy", "dev")),
    Spec("h2_max_header_list_bytes", _positive_int, "65536", "HTTP/2: largest header list of a client's request",
         processes=("proxy", "dev")),
    Spec("h2_relay", _boolean, "false",
         "HTTP/2: relay a client connection whose streams go to one h2c app frame by frame (docs/http2.md)",
         processes=("proxy", "dev")),
    Spec("h2_stream_window_bytes", _window_bytes, "262144",
         "HTTP/2: flow-control window per client stream (what the proxy may hold of one stream's body)",
         processes=("proxy", "dev")),
    Spec("h2_connection_window_bytes", _window_bytes, "4194304",
         "HTTP/2: flow-control window per client connection (what the proxy may hold of all its streams)",
         processes=("proxy", "dev")),
    Spec("h2_resets_per_second", _positive_int, "200",
         "HTTP/2: stream resets a client may send per second before GOAWAY (rapid reset, CVE-2023-44487)",
         processes=("proxy", "dev")),
    Spec("h2_control_frames_per_second", _positive_int, "200",
         "HTTP/2: PING and SETTINGS frames a client may send per second before GOAWAY",
         processes=("proxy", "dev")),
    Spec("h2_relay_max_age_seconds", _positive_float, "60",
         "HTTP/2 relay: a relayed connection is asked to go (GOAWAY) this long after it began, to spread "
         "long-lived clients over the app's endpoints", processes=("proxy", "dev")),
    # issue 14: the controller, and TLS between KEDA and the scaler
    Spec("controller_namespace", _text, "",
         "controller: namespace of its Lease and of the scaler; empty: the pod's own (service account), else default",
         processes=("controller",), metavar="NAMESPACE"),
    Spec("lease_duration_seconds", _positive_float, "15",
         "controller: leader Lease duration; a follower takes over this long after the leader's last renewal",
         processes=("controller",)),
    Spec("scaler_tls_cert_file", _text, "", "scaler: PEM server certificate for the gRPC port; empty: plaintext",
         processes=("scaler",), metavar="FILE"),
    Spec("scaler_tls_key_file", _text, "", "scaler: PEM private key of that certificate",
         processes=("scaler",), metavar="FILE"),
    Spec("scaler_tls_client_ca_file", _text, "",
         "scaler: PEM CA that client certificates must chain to (mTLS); empty: no client certificate asked",
         processes=("scaler",), metavar="FILE"),
    Spec("scaler_trigger_authentication", _text, "",
         "controller: ClusterTriggerAuthentication its ScaledObjects use for the scaler's TLS; empty: none",
         processes=("controller",), metavar="NAME"),
    Spec("status_interval_seconds", _non_negative_float, "60",
         "controller: how often it asks the scaler for every app's in-flight requests and activity "
         "(status.inFlight, status.active); an app's status is written at most once per interval, only on "
         "change; 0: never asks", processes=("controller",)),
    Spec("scaler_ca_file", _text, "",
         "controller: PEM CA of the scaler's certificate; set: it asks the scaler over TLS; empty: plaintext",
         processes=("controller",), metavar="FILE"),
    Spec("scaler_client_cert_file", _text, "",
         "controller: PEM client certificate it shows the scaler (mTLS); empty: none", processes=("controller",),
         metavar="FILE"),
    Spec("scaler_client_key_file", _text, "", "controller: PEM private key of that certificate",
         processes=("controller",), metavar="FILE"),
    # issue 15: the data path's timeouts, forwarded headers, waiting page and access log
    Spec("trusted_proxies", parse_networks, "",
         "CIDRs whose X-Forwarded-*/Forwarded headers are kept and appended to; empty trusts nobody",
         processes=("proxy", "dev"), metavar="CIDR,..."),
    Spec("upstream_connect_timeout_seconds", _positive_float, "5", "opening a connection to an app",
         processes=("proxy", "dev")),
    Spec("upstream_response_header_timeout_seconds", _positive_float, "60",
         "request sent -> response status line; past it the client gets 504", processes=("proxy", "dev")),
    Spec("upstream_idle_timeout_seconds", _positive_float, "60",
         "longest pause either way: between two reads of a response body, or the app taking none of a "
         "request body; past it 504 (no response yet) or the response is cut",
         processes=("proxy", "dev")),
    Spec("upstream_total_timeout_seconds", _non_negative_float, "0",
         "cap on a whole non-streaming response (Content-Length framed); 0: no cap", processes=("proxy", "dev")),
    Spec("tunnel_idle_timeout_seconds", _positive_float, "600",
         "a WebSocket/Upgrade tunnel with no byte either way this long is closed", processes=("proxy", "dev")),
    Spec("cold_start_placeholder", _choice("hold", "page"), "hold",
         "apps without coldStart.placeholder: hold requests, or answer browsers with a waiting page",
         processes=("proxy", "dev")),
    Spec("access_log_sample_rate", _fraction, "0",
         "fraction of requests written to the JSON access log on stdout; 0: off", processes=("proxy", "dev"),
         metavar="0..1"),
)
SPEC_BY_NAME: Mapping[str, Spec] = {spec.name: spec for spec in SPECS}

# KEDAHTTP_* variables that are not process settings: `kedahttp apps` (cli/apps.py) and the build (setup.py).
OTHER_VARIABLES: Mapping[str, str] = {
    "KEDAHTTP_SERVER": "kedahttp apps: admin API URL",
    "KEDAHTTP_NAMESPACE": "kedahttp apps: namespace of the app",
    "KEDAHTTP_COMPILE": "build: 0 keeps the data path in plain Python",
}
# What a Kubernetes Service named kedahttp-* injects into pods when service links are on.
_SERVICE_LINK = re.compile(r"^KEDAHTTP_\w*_(SERVICE_HOST|SERVICE_PORT\w*|PORT(_\d+_(TCP|UDP|SCTP)\w*)?)$")

_METAVARS: Mapping[Callable[[str], Any], str] = {
    parse_address: "HOST:PORT", _positive_int: "INTEGER", _window_bytes: "BYTES", _positive_float: "NUMBER",
    _non_negative_float: "NUMBER", _boolean: "BOOLEAN", _bus_url: "URL",
}


def metavar(spec: Spec) -> str:
    """The value's type as --help shows it: units from the name (``_seconds``), else from the parser."""
    if spec.metavar:
        return spec.metavar
    if spec.name.endswith("_seconds"):
        return "SECONDS"
    if spec.parse in _METAVARS:
        return _METAVARS[spec.parse]
    choices = getattr(spec.parse, "choices", None)
    return "|".join(choices) if choices else "TEXT"


def specs_for(process: str) -> tuple[Spec, ...]:
    """The settings ``process`` takes; every setting for the empty name (the whole table)."""
    return tuple(spec for spec in SPECS if not process or process in spec.processes)


def default_for(spec: Spec, process: str) -> str:
    """The default text ``process`` starts with when neither the flag nor the environment sets ``spec``."""
    value = spec.defaults.get(process, spec.default)
    return value if value is not None else ""


PREFIX = "KEDAHTTP_"


def env_name(name: str) -> str:
    return PREFIX + name.upper()


def flag_name(name: str) -> str:
    return name.replace("_", "-")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every setting, parsed; ``process`` names the command they were loaded for ("" for the whole table)."""

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
    strict: bool
    # issue 18
    metrics_app_latency: bool
    tracing: bool
    # issue 16
    h2_max_concurrent_streams: int
    h2_max_header_list_bytes: int
    h2_relay: bool
    h2_stream_window_bytes: int
    h2_connection_window_bytes: int
    h2_resets_per_second: int
    h2_control_frames_per_second: int
    h2_relay_max_age_seconds: float
    # issue 14
    controller_namespace: str
    lease_duration_seconds: float
    scaler_tls_cert_file: str
    scaler_tls_key_file: str
    scaler_tls_client_ca_file: str
    scaler_trigger_authentication: str
    status_interval_seconds: float
    scaler_ca_file: str
    scaler_client_cert_file: str
    scaler_client_key_file: str
    # issue 15
    trusted_proxies: tuple[Network, ...]
    upstream_connect_timeout_seconds: float
    upstream_response_header_timeout_seconds: float
    upstream_idle_timeout_seconds: float
    upstream_total_timeout_seconds: float
    tunnel_idle_timeout_seconds: float
    cold_start_placeholder: str
    access_log_sample_rate: float
    process: str = ""

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def redacted(self) -> dict[str, str]:
        """The process's own settings as strings for the start-up log line, secrets and URL credentials masked."""
        out = {}
        for spec in specs_for(self.process):
            value = getattr(self, spec.name)
            out[spec.name] = secrets.MASK if spec.secret and value else secrets.redact_url(_text_of(value))
        return out

    def secret_values(self) -> tuple[str, ...]:
        """What must never be printed: secret settings and the credentials inside URL settings."""
        found: list[str] = []
        for spec in SPECS:
            value = _text_of(getattr(self, spec.name))
            found += [value] if spec.secret and value else secrets.url_secrets(value)
        return secrets.scrub_list(found)


def _text_of(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):  # TRUSTED_PROXIES: as it is written
        return ",".join(map(str, value))
    return str(value if value is not None else "")


def load(
    flags: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
    component: str = "",
) -> Settings:
    """Builds the Settings of process ``component`` from flags (raw strings, None when not given), then the
    environment, then the process's defaults. Settings the process does not take keep their defaults.

    Raises SettingError naming the first setting whose value does not parse.
    """
    flags = flags or {}
    environ = os.environ if environ is None else environ
    own = {spec.name for spec in specs_for(component)}
    values: dict[str, Any] = {}
    for spec in SPECS:
        raw = flags.get(spec.name) if spec.name in own else None
        if raw is None and spec.name in own:
            raw = environ.get(env_name(spec.name))
        if raw is None:
            raw = default_for(spec, component)
        try:
            values[spec.name] = spec.parse(raw)
        except ValueError as exc:
            raise SettingError(spec.name, secrets.MASK if spec.secret else secrets.redact_url(raw), str(exc)) from exc
    return Settings(**values, process=component)


@dataclass(frozen=True, slots=True)
class UnknownVariable:
    """A ``KEDAHTTP_*`` variable that names no setting; ``suggestion`` is the closest known name, if any."""

    name: str
    suggestion: str

    def __str__(self) -> str:
        hint = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"unknown setting {self.name} is ignored{hint}"


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[UnknownVariable]:
    """The ``KEDAHTTP_*`` variables of ``environ`` that are neither a setting (of any process, since one
    ConfigMap may serve several) nor one of OTHER_VARIABLES, each with the closest known name."""
    environ = os.environ if environ is None else environ
    known = [env_name(spec.name) for spec in SPECS] + list(OTHER_VARIABLES)
    out = []
    for name in sorted(environ):
        if name.startswith(PREFIX) and name not in known and not _SERVICE_LINK.match(name):
            # Compared without the common prefix, which would make every name look alike.
            close = difflib.get_close_matches(name[len(PREFIX):], [k[len(PREFIX):] for k in known], n=1, cutoff=0.6)
            out.append(UnknownVariable(name, PREFIX + close[0] if close else ""))
    return out
