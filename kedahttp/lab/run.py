"""Runs the policies over a workload: every app under every policy, with the same seeds, then the figures.

Each app gets the same pod start times and the same KEDA polling phase under every policy (seeded by
the lab seed and the app's index), so policies differ only in their decisions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kedahttp.lab.config import LabConfig
from kedahttp.lab.measure import PolicyFigures, policy_figures
from kedahttp.lab.policies import POLLING_INTERVAL_SECONDS, Policy
from kedahttp.lab.replay import AppReplay, AppResult
from kedahttp.lab.workload import Workload


@dataclass(frozen=True, slots=True)
class PolicyRun:
    policy: Policy
    figures: PolicyFigures
    results: tuple[AppResult, ...]
    cpu_seconds: float


def phase_of(seed: int, index: int) -> float:
    """A stable polling phase in [0, 30 s) for an app (KEDA starts each ScaledObject's timer on its own)."""
    return ((seed * 7919 + index * 104729) % 30_000) / 1000.0 % POLLING_INTERVAL_SECONDS


def run_policy(workload: Workload, policy: Policy, config: LabConfig) -> PolicyRun:
    started = time.process_time()
    results = []
    for index, app in enumerate(workload.apps):
        controller = policy.build(config, phase_of(config.seed, index))
        replay = AppReplay(app, config, controller, workload.seconds, (config.seed, index))
        results.append(replay.run())
    cpu = time.process_time() - started
    figures = policy_figures(policy.name, results, int(workload.seconds), config.target_concurrency)
    return PolicyRun(policy, figures, tuple(results), cpu)


def run_all(workload: Workload, policies: Sequence[Policy], config: LabConfig,
            progress: Callable[[PolicyRun], None] = lambda run: None) -> list[PolicyRun]:
    runs = []
    for policy in policies:
        run = run_policy(workload, policy, config)
        progress(run)
        runs.append(run)
    return runs
