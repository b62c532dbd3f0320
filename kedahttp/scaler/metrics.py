"""What a KEDA trigger asks for and what we answer: metadata parsing, metric names, metric values.

Pure: no gRPC here; the service maps ``InvalidArgument`` to ``INVALID_ARGUMENT`` at the edge. KEDA calls
GetMetricSpec on every reconcile and HPA query, so a trigger's metadata is parsed once per distinct
(namespace, name, metadata) and the result, or the error, is cached. The metadata keys and their
defaults come from ``kube/trigger.py``, which the ScaledObject builder writes them from.

Metric names are fixed words ("concurrency", "requestrate"): stable, lower case, without "/", unique
within a trigger; KEDA prefixes them with the trigger index for the HPA. Values go out in both fields.
The int field (read by KEDA before 2.17) is the value rounded *up*: the HPA divides by an integer
target and rounds up, and ``ceil(ceil(v) / t) == ceil(v / t)`` for integer ``t``, so rounding up gives
exactly the replica count the float would, and a small load never reads as a false 0. An int target
is rounded down (at least 1), erring towards capacity; KEDA 2.17+ uses the float fields and is exact.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from kedahttp.activity.aggregate import BackendMetrics
from kedahttp.activity.bus import MAX_WINDOW_SECONDS
from kedahttp.kube.trigger import (
    ACTIVITY_WINDOW_KEY,
    BACKEND_KEY,
    CONCURRENCY_METRIC,
    DEFAULT_ACTIVITY_WINDOW_SECONDS,
    DEFAULT_RATE_WINDOW_SECONDS,
    DEFAULT_TARGET_CONCURRENCY,
    KEEP_ALIVE_CHOICES,
    KEEP_ALIVE_KEY,
    KNOWN_KEYS,
    RATE_WINDOW_KEY,
    REQUEST_RATE_METRIC,
    TARGET_CONCURRENCY_KEY,
    TARGET_REQUEST_RATE_KEY,
)

CONCURRENCY: Final = CONCURRENCY_METRIC
REQUEST_RATE: Final = REQUEST_RATE_METRIC
METRIC_NAMES: Final = (CONCURRENCY, REQUEST_RATE)

METRIC_NAME_KEY: Final = "metricName"  # of GetMetricsRequest, not metadata

SNAP_RELATIVE: Final = 1e-9  # see clean()

_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_KEDA_PREFIX: Final = re.compile(r"s\d+-")
# A plain ASCII decimal number (float() also takes "1_000", non-ASCII digits and Unicode spaces).
_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
MAX_TARGET: Final = 1e15  # far beyond any real target, well inside the int64 targetSize field
MAX_SHOWN_VALUE: Final = 200  # "s0-concurrency": how KEDA names our metric for the HPA


class InvalidArgument(ValueError):
    """A request the scaler cannot answer as asked; ``key`` names the metadata key (or request field)."""

    def __init__(self, key: str, reason: str, value: object = None) -> None:
        self.key = key
        self.reason = reason
        self.value = value
        # Bounded: a huge bad value must not push the error past the client's message size limit.
        shown = repr(value)
        if len(shown) > MAX_SHOWN_VALUE:
            shown = shown[:MAX_SHOWN_VALUE] + f"... ({len(shown)} characters)"
        got = "" if value is None else f" (got {shown})"
        super().__init__(f"{key}: {reason}{got}")


@dataclass(frozen=True, slots=True)
class Trigger:
    """One ScaledObject trigger, parsed: the backend it watches and the metrics it asks for."""

    backend: str  # "namespace/name"
    targets: tuple[tuple[str, float], ...]  # (metric name, target per replica), in spec order
    rate_window_seconds: int
    activity_window_seconds: int
    adaptive_keep_alive: bool = False

    def value(self, metric_name: str, metrics: BackendMetrics) -> float:
        """The value of one of this trigger's metrics; ``metric_name`` as KEDA sends it."""
        name = metric_key(metric_name) or self.targets[0][0]
        if name == CONCURRENCY:
            value = metrics.concurrency
        elif name == REQUEST_RATE:
            value = metrics.request_rate
        else:
            raise InvalidArgument(METRIC_NAME_KEY, f"unknown metric; this scaler serves {', '.join(METRIC_NAMES)}",
                                  metric_name)
        return clean(value)


def clean(value: float) -> float:
    """A metric value as served: never negative, and a value within float noise of a whole number is
    that number (window sums subtract running totals, so 30 held requests can read 30.000000000004,
    and the HPA's ceil would make that one replica more)."""
    if not value > 0.0:
        return 0.0
    whole = round(value)
    if whole and abs(value - whole) <= SNAP_RELATIVE * value:  # never snaps a small load to 0
        return float(whole)
    return value


def metric_key(metric_name: str) -> str:
    """The metric name without the ``sN-`` prefix KEDA adds for the HPA (KEDA strips it itself; some
    clients do not)."""
    match = _KEDA_PREFIX.match(metric_name)
    return metric_name[match.end():] if match else metric_name


def int_value(value: float) -> int:
    """The int64 field for a metric value: rounded up, never negative."""
    return math.ceil(value) if value > 0.0 else 0


def int_target(target: float) -> int:
    """The int64 field for a target: rounded down, at least 1 (an int target of 0 would divide by 0)."""
    return max(1, math.floor(target))


def closest_key(key: str) -> str | None:
    """The known key a misspelt one most likely meant (case ignored), or None."""
    by_lower = {known.lower(): known for known in KNOWN_KEYS}
    found = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[found[0]] if found else None


def check_keys(metadata: Mapping[str, str]) -> None:
    """Refuses a key nobody reads: a misspelt ``targetConcurency`` would otherwise leave the default in
    force without a word."""
    for key in sorted(metadata):
        if key not in KNOWN_KEYS:
            close = closest_key(key)
            hint = f"; did you mean {close!r}?" if close else ""
            shown = key if len(key) <= MAX_SHOWN_VALUE else key[:MAX_SHOWN_VALUE] + "..."
            raise InvalidArgument(shown, f"unknown trigger metadata key{hint} (known: {', '.join(KNOWN_KEYS)})")


def parse_trigger(namespace: str, name: str, metadata: Mapping[str, str]) -> Trigger:
    """Parses a trigger's metadata; raises InvalidArgument naming the first bad key."""
    check_keys(metadata)
    backend = metadata.get(BACKEND_KEY)
    if backend is None:
        backend = f"{namespace}/{name}"
        key = f"{BACKEND_KEY} (defaulted from the ScaledObject's namespace/name)"
    else:
        backend = backend.strip()
        key = BACKEND_KEY
    ns, sep, app = backend.partition("/")
    if not sep or not _DNS_LABEL.fullmatch(ns) or not _DNS_LABEL.fullmatch(app):
        raise InvalidArgument(key, "must be namespace/name, each a DNS-1123 label", backend)

    concurrency = _target(metadata, TARGET_CONCURRENCY_KEY)
    request_rate = _target(metadata, TARGET_REQUEST_RATE_KEY)
    targets: list[tuple[str, float]] = []
    if concurrency is not None or request_rate is None:
        targets.append((CONCURRENCY, DEFAULT_TARGET_CONCURRENCY if concurrency is None else concurrency))
    if request_rate is not None:
        targets.append((REQUEST_RATE, request_rate))
    return Trigger(
        backend=backend,
        targets=tuple(targets),
        rate_window_seconds=_window(metadata, RATE_WINDOW_KEY, DEFAULT_RATE_WINDOW_SECONDS),
        activity_window_seconds=_window(metadata, ACTIVITY_WINDOW_KEY, DEFAULT_ACTIVITY_WINDOW_SECONDS),
        adaptive_keep_alive=_keep_alive(metadata),
    )


def _keep_alive(metadata: Mapping[str, str]) -> bool:
    text = metadata.get(KEEP_ALIVE_KEY, KEEP_ALIVE_CHOICES[0])
    if text.strip() not in KEEP_ALIVE_CHOICES:
        raise InvalidArgument(KEEP_ALIVE_KEY, f"must be one of {', '.join(KEEP_ALIVE_CHOICES)}", text)
    return text.strip() == "adaptive"


def _number(key: str, text: str) -> float:
    stripped = text.strip(" \t")
    if not _NUMBER.fullmatch(stripped):
        raise InvalidArgument(key, "must be a number", text)
    value = float(stripped)
    if not math.isfinite(value):
        raise InvalidArgument(key, "must be a finite number", text)
    return value


def _target(metadata: Mapping[str, str], key: str) -> float | None:
    text = metadata.get(key)
    if text is None:
        return None
    value = _number(key, text)
    if value <= 0.0:
        raise InvalidArgument(key, "must be a number greater than 0", text)
    if value > MAX_TARGET:
        raise InvalidArgument(key, f"must be at most {MAX_TARGET:.0e}", text)
    return value


def _window(metadata: Mapping[str, str], key: str, default: int) -> int:
    text = metadata.get(key)
    if text is None:
        return default
    value = _number(key, text)
    if not value.is_integer() or not 1 <= value <= MAX_WINDOW_SECONDS:
        raise InvalidArgument(key, f"must be a whole number of seconds from 1 to {MAX_WINDOW_SECONDS}", text)
    return int(value)


class TriggerCache:
    """Parsed triggers by (namespace, name, metadata); errors are cached too. Bounded: cleared when full
    (the working set is one entry per ScaledObject trigger, refilled in one call each)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str, frozenset[tuple[str, str]]], Trigger | InvalidArgument] = {}

    def get(self, namespace: str, name: str, metadata: Mapping[str, str]) -> Trigger:
        key = (namespace, name, frozenset(metadata.items()))
        entry = self._entries.get(key)
        if entry is None:
            try:
                entry = parse_trigger(namespace, name, metadata)
            except InvalidArgument as exc:
                entry = exc
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = entry
        if isinstance(entry, InvalidArgument):
            raise entry
        return entry

    def __len__(self) -> int:
        return len(self._entries)
