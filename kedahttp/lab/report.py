"""What a lab run shows: a Markdown report, the JSON for scripts, and PNG plots.

The trade-off plot is the one "Serverless in the Wild" (ATC'20) draws: the cold-start percentage of the
75th-percentile app against wasted capacity, a curve over fixed keep-alive windows with every other
policy as a point. The timeline shows one app: its requests per minute and each policy's replicas.
matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kedahttp.lab.config import LabConfig
from kedahttp.lab.run import PolicyRun
from kedahttp.lab.workload import Workload

TIMELINE_POLICIES = ("kedahttp", "fixed-10m", "adaptive", "knative", "http-add-on")


def as_json(runs: Sequence[PolicyRun]) -> str:
    return json.dumps({"policies": {run.policy.name: run.figures.as_json() for run in runs}}, indent=2)


def markdown(workload: Workload, config: LabConfig, runs: Sequence[PolicyRun], plots: Sequence[str] = ()) -> str:
    lines = [
        f"# Replay of `{workload.name}`",
        "",
        f"{len(workload.apps)} apps, {workload.requests:,} requests over {workload.seconds / 3600:g} h. Target "
        f"concurrency {config.target_concurrency:g} per pod; pod start log-normal, median "
        f"{config.pod_start_median_seconds:g} s, sigma {config.pod_start_sigma:g}; cold-start timeout "
        f"{config.cold_start_timeout_seconds:g} s; reports every {config.report_interval_seconds:g} s; seed {config.seed}.",
        "",
        "| policy | cold-start % median app | cold-start % p75 app | cold starts | wasted pod-hours "
        "| pod-seconds / oracle | failed | added wait p50 / p99 ms | replay CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        f = run.figures
        lines.append(
            f"| `{f.name}` | {f.cold_start_pct_median_app:.2f} | {f.cold_start_pct_p75_app:.2f} | {f.cold_starts:,} "
            f"| {f.wasted_pod_seconds / 3600:,.1f} | {f.pod_seconds_vs_oracle:.2f} | {f.failed_requests:,} "
            f"| {f.added_wait_p50_ms:,.0f} / {f.added_wait_p99_ms:,.0f} | {run.cpu_seconds:.1f} |"
        )
    lines += ["", "Policies:", ""]
    lines += [f"- `{run.policy.name}`: {run.policy.description}" for run in runs]
    lines += [""]
    lines += [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tradeoff(runs: Sequence[PolicyRun], curve: Sequence[PolicyRun], path: Path, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ordered = sorted(curve, key=lambda r: r.figures.wasted_pod_seconds)
    xs = [r.figures.wasted_pod_seconds / 3600 for r in ordered]
    ys = [r.figures.cold_start_pct_p75_app for r in ordered]
    ax.plot(xs, ys, "-o", color="0.45", label="fixed keep-alive")
    for run, x, y in zip(ordered, xs, ys, strict=True):
        ax.annotate(run.policy.name.removeprefix("fixed-"), (x, y), textcoords="offset points", xytext=(4, 4),
                    fontsize=8, color="0.3")
    markers = iter("sD^vP*X")
    for run in runs:
        if run.policy.name.startswith("fixed-"):
            continue
        f = run.figures
        ax.plot([f.wasted_pod_seconds / 3600], [f.cold_start_pct_p75_app], next(markers, "o"), markersize=9,
                label=run.policy.name)
    ax.set_xlabel("wasted pod-hours (a pod up beyond ceil(concurrency / target))")
    ax.set_ylabel("cold-start % of the 75th-percentile app")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_timeline(workload: Workload, runs: Sequence[PolicyRun], app_name: str, path: Path) -> None:
    index = next((i for i, a in enumerate(workload.apps) if app_name in (a.name, a.source)), None)
    if index is None:
        raise ValueError(f"no app {app_name!r} in {workload.name} (names are app-000..., or the trace's app id)")
    app = workload.apps[index]
    shown = [r for r in runs if r.policy.name in TIMELINE_POLICIES] or list(runs)
    plt = _pyplot()
    fig, axes = plt.subplots(len(shown) + 1, 1, figsize=(10, 1.4 * (len(shown) + 1) + 0.8), dpi=110, sharex=True)
    hours = workload.seconds / 3600
    per_minute = np.bincount((app.arrivals // 60).astype(int), minlength=int(workload.seconds // 60))
    axes[0].bar(np.arange(len(per_minute)) / 60, per_minute, width=1 / 60, color="tab:blue")
    axes[0].set_ylabel("req/min")
    axes[0].set_title(f"{app.name} ({app.source[:12]}, {app.trigger or 'log'}): {app.requests:,} requests")
    for ax, run in zip(axes[1:], shown, strict=True):
        result = run.results[index]
        times = np.array([0.0] + [t for t, _ in result.scale_events] + [workload.seconds]) / 3600
        counts = [0] + [n for _, n in result.scale_events]
        counts.append(counts[-1])  # the last count holds to the end of the trace
        ax.step(times, counts, where="post", color="tab:green")
        ax.fill_between(times, counts, step="post", alpha=0.25, color="tab:green")
        ax.set_ylabel("pods")
        ax.set_ylim(0, max([*counts, 1]) + 0.5)
        ax.text(0.005, 0.8, f"{run.policy.name}: {result.cold} cold of {result.requests}",
                transform=ax.transAxes, fontsize=8)
    axes[-1].set_xlabel("hours into the trace")
    axes[-1].set_xlim(0, hours)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
