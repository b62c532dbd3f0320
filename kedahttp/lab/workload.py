"""What the lab replays: per app, the arrival times and durations of its requests, from a trace or a log.

Two inputs. The Azure Functions 2019 layout (a folder with ``invocations.csv``, per-minute counts per
function, and ``durations.csv``, percentiles of each function's execution time): arrivals are spread
uniformly at random within each minute by a seeded generator (the trace has minute resolution only),
durations are drawn from the function's percentiles by linear interpolation between them, and functions
are grouped into apps by ``HashApp`` (an app is one Deployment). Or a per-request log, CSV with the header
``timestamp,app,duration_ms`` (seconds since any origin; what the proxy's access log gives per request).

Times are seconds from the start of the trace; a workload knows its length, so idle minutes at the end
count too.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

DURATION_PERCENTILES: Final = (0.0, 1.0, 25.0, 50.0, 75.0, 99.0, 100.0)
DURATION_COLUMNS: Final = tuple(f"percentile_Average_{p:g}" for p in DURATION_PERCENTILES)
MIN_DURATION_SECONDS: Final = 0.001  # a few rows have 0 ms averages
LOG_COLUMNS: Final = ("timestamp", "app", "duration_ms")
INVOCATION_KEYS: Final = ("HashOwner", "HashApp", "HashFunction", "Trigger")


class WorkloadError(ValueError):
    """A trace or log the lab cannot read; the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class AppLoad:
    name: str  # a DNS label, used as the backend "lab/<name>"
    source: str  # the trace's app id, or the log's app name
    arrivals: np.ndarray  # seconds from the trace start, ascending
    durations: np.ndarray  # seconds, same length
    functions: int = 1
    trigger: str = ""

    @property
    def requests(self) -> int:
        return len(self.arrivals)


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    seconds: float  # the trace's length
    apps: tuple[AppLoad, ...]

    @property
    def requests(self) -> int:
        return sum(app.requests for app in self.apps)


def _rows(path: Path) -> Iterator[dict[str, str]]:
    try:
        with path.open(newline="") as handle:
            yield from csv.DictReader(handle)
    except OSError as exc:
        raise WorkloadError(f"{path}: {exc.strerror or exc}") from exc


def load_azure(folder: Path, seed: int = 1) -> Workload:
    """An Azure Functions 2019 folder (``invocations.csv`` and ``durations.csv``)."""
    invocations = folder / "invocations.csv"
    durations_path = folder / "durations.csv"
    percentiles: dict[str, np.ndarray] = {}
    for row in _rows(durations_path):
        try:
            values = np.array([float(row[c]) for c in DURATION_COLUMNS]) / 1000.0
        except (KeyError, ValueError) as exc:
            raise WorkloadError(f"{durations_path}: row {row.get('HashFunction', '?')}: {exc}") from exc
        percentiles[row["HashFunction"]] = np.maximum.accumulate(np.maximum(values, MIN_DURATION_SECONDS))
    rng = np.random.default_rng(seed)
    by_app: dict[str, list[tuple[np.ndarray, np.ndarray, str]]] = {}
    minutes = 0
    for row in _rows(invocations):
        missing = [k for k in INVOCATION_KEYS if k not in row]
        if missing:
            raise WorkloadError(f"{invocations}: missing column(s) {', '.join(missing)}")
        function = row["HashFunction"]
        if function not in percentiles:
            raise WorkloadError(f"{invocations}: function {function} has no row in {durations_path.name}")
        try:
            counts = np.array([int(v) for k, v in row.items() if k not in INVOCATION_KEYS], dtype=np.int64)
        except ValueError as exc:
            raise WorkloadError(f"{invocations}: function {function}: {exc}") from exc
        minutes = max(minutes, len(counts))
        minute = np.repeat(np.arange(len(counts)), counts)
        arrivals = (minute + rng.random(len(minute))) * 60.0
        drawn = np.interp(rng.random(len(minute)) * 100.0, DURATION_PERCENTILES, percentiles[function])
        by_app.setdefault(row["HashApp"], []).append((arrivals, drawn, row["Trigger"]))
    if not by_app:
        raise WorkloadError(f"{invocations}: no functions")
    apps = []
    for index, (source, parts) in enumerate(by_app.items()):
        arrivals = np.concatenate([p[0] for p in parts])
        durations = np.concatenate([p[1] for p in parts])
        order = np.argsort(arrivals, kind="stable")
        apps.append(AppLoad(f"app-{index:03d}", source, arrivals[order], durations[order], len(parts), parts[0][2]))
    return Workload(folder.name, minutes * 60.0, tuple(apps))


def load_log(path: Path) -> Workload:
    """A per-request log: ``timestamp,app,duration_ms`` (a header line first)."""
    per_app: dict[str, tuple[list[float], list[float]]] = {}
    for line, row in enumerate(_rows(path), start=2):
        try:
            at = float(row["timestamp"])
            app = row["app"].strip()
            duration = float(row["duration_ms"]) / 1000.0
        except KeyError as exc:
            raise WorkloadError(f"{path}: the header must be {','.join(LOG_COLUMNS)}") from exc
        except (ValueError, AttributeError) as exc:
            raise WorkloadError(f"{path}:{line}: {exc}") from exc
        if not app or not math.isfinite(at) or not math.isfinite(duration) or duration < 0:
            raise WorkloadError(f"{path}:{line}: need an app name, a finite timestamp and a duration >= 0")
        times, durations = per_app.setdefault(app, ([], []))
        times.append(at)
        durations.append(max(duration, MIN_DURATION_SECONDS))
    if not per_app:
        raise WorkloadError(f"{path}: no requests")
    origin = min(min(times) for times, _ in per_app.values())
    end = max(max(t + d for t, d in zip(times, durations, strict=True)) for times, durations in per_app.values())
    apps = []
    for index, (name, (times, durations)) in enumerate(sorted(per_app.items())):
        arrivals = np.array(times) - origin
        order = np.argsort(arrivals, kind="stable")
        apps.append(AppLoad(f"app-{index:03d}", name, arrivals[order], np.array(durations)[order]))
    return Workload(path.name, math.ceil((end - origin) / 60.0) * 60.0, tuple(apps))
