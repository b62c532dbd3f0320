"""The figures of a replay: cold starts, capacity paid for and capacity needed, failures and waits.

Capacity is counted per second of the trace. A pod costs from its creation (starting pods are paid for)
to its removal. What the traffic needed in a second is ``ceil(busy / target)``, where ``busy`` is the
time-weighted in-flight count of served requests in that second (the oracle: exactly that many pods,
none when idle, no start-up time). Wasted pod-seconds are the pod-seconds above that need: a pod up with
nothing for it to do. Everything is computed with whole-array arithmetic from the replay's intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kedahttp.lab.replay import AppResult


def per_second(starts: np.ndarray, ends: np.ndarray, seconds: int) -> np.ndarray:
    """The overlap of the intervals ``[starts[i], ends[i])`` with each second ``[s, s + 1)``, summed."""
    grid = np.arange(seconds + 1, dtype=float)
    if len(starts) == 0:
        return np.zeros(seconds)
    s = np.sort(starts)
    e = np.sort(ends)
    cs = np.concatenate(([0.0], np.cumsum(s)))
    ce = np.concatenate(([0.0], np.cumsum(e)))
    ks = np.searchsorted(s, grid, side="left")
    ke = np.searchsorted(e, grid, side="left")
    area = (ks * grid - cs[ks]) - (ke * grid - ce[ke])  # the integral of the count from 0 to each second
    return np.diff(area)


@dataclass(frozen=True, slots=True)
class AppFigures:
    name: str
    requests: int
    cold: int
    failed: int
    pod_seconds: float
    needed_pod_seconds: float
    wasted_pod_seconds: float

    @property
    def cold_pct(self) -> float:
        return 100.0 * self.cold / self.requests if self.requests else 0.0


def app_figures(result: AppResult, seconds: int, target: float) -> AppFigures:
    busy = per_second(*result.served, seconds)
    pods = per_second(*result.pods, seconds)
    need = np.ceil(np.maximum(busy, 0.0) / target - 1e-9)
    need[busy <= 1e-12] = 0.0
    return AppFigures(
        name=result.name, requests=result.requests, cold=result.cold, failed=result.failed,
        pod_seconds=float(pods.sum()), needed_pod_seconds=float(need.sum()),
        wasted_pod_seconds=float(np.maximum(pods - need, 0.0).sum()),
    )


@dataclass(frozen=True, slots=True)
class PolicyFigures:
    name: str
    requests: int
    cold_starts: int
    cold_start_pct_median_app: float
    cold_start_pct_p75_app: float
    wasted_pod_seconds: float
    pod_seconds: float
    oracle_pod_seconds: float
    failed_requests: int
    added_wait_p50_ms: float
    added_wait_p99_ms: float
    apps: tuple[AppFigures, ...]

    @property
    def pod_seconds_vs_oracle(self) -> float:
        return self.pod_seconds / self.oracle_pod_seconds if self.oracle_pod_seconds else float("inf")

    def as_json(self) -> dict[str, float]:
        """The keys promised to scripts (issue 17), in that order."""
        return {
            "cold_start_pct_median_app": round(self.cold_start_pct_median_app, 4),
            "cold_start_pct_p75_app": round(self.cold_start_pct_p75_app, 4),
            "cold_starts": self.cold_starts,
            "wasted_pod_seconds": round(self.wasted_pod_seconds, 1),
            "pod_seconds_vs_oracle": round(self.pod_seconds_vs_oracle, 4),
            "failed_requests": self.failed_requests,
            "added_wait_p99_ms": round(self.added_wait_p99_ms, 1),
        }


def policy_figures(name: str, results: Sequence[AppResult], seconds: int, target: float) -> PolicyFigures:
    apps = tuple(app_figures(r, seconds, target) for r in results)
    with_traffic = [a.cold_pct for a in apps if a.requests]
    waits = np.concatenate([r.waits for r in results]) if results else np.zeros(0)
    pct = np.percentile(with_traffic, [50, 75]) if with_traffic else np.zeros(2)
    wait_pct = np.percentile(waits, [50, 99]) * 1000.0 if len(waits) else np.zeros(2)
    return PolicyFigures(
        name=name,
        requests=sum(a.requests for a in apps),
        cold_starts=sum(a.cold for a in apps),
        cold_start_pct_median_app=float(pct[0]),
        cold_start_pct_p75_app=float(pct[1]),
        wasted_pod_seconds=sum(a.wasted_pod_seconds for a in apps),
        pod_seconds=sum(a.pod_seconds for a in apps),
        oracle_pod_seconds=sum(a.needed_pod_seconds for a in apps),
        failed_requests=sum(a.failed for a in apps),
        added_wait_p50_ms=float(wait_pct[0]),
        added_wait_p99_ms=float(wait_pct[1]),
        apps=apps,
    )
