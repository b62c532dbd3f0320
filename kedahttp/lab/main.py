"""``kedahttp lab``: replay a trace or a request log against the scaling policies and report the figures.

Reading the input and parsing the options happen here, once; a bad input exits 2 with a message naming
the file and what is wrong. The work itself is run.py (replays), measure.py (figures), report.py (output).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kedahttp.lab.config import LabConfig
from kedahttp.lab.policies import CURVE_MINUTES, POLICIES, Policy, fixed
from kedahttp.lab.report import as_json, markdown, plot_timeline, plot_tradeoff
from kedahttp.lab.run import PolicyRun, run_all
from kedahttp.lab.workload import Workload, WorkloadError, load_azure, load_log


@dataclass(frozen=True, slots=True)
class LabArgs:
    trace: Path | None
    requests: Path | None
    policies: tuple[str, ...]
    config: LabConfig
    json_out: bool
    report: Path | None
    plots: Path | None
    timeline: tuple[str, ...]


def load(args: LabArgs) -> Workload:
    if (args.trace is None) == (args.requests is None):
        raise WorkloadError("give exactly one of --trace DIR and --requests FILE")
    if args.trace is not None:
        return load_azure(args.trace, seed=args.config.seed)
    assert args.requests is not None
    return load_log(args.requests)


def choose(names: Sequence[str]) -> list[Policy]:
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise WorkloadError(f"unknown policy {', '.join(unknown)}; known: {', '.join(POLICIES)}")
    return [POLICIES[n] for n in names]


def main(args: LabArgs) -> int:
    try:
        policies = choose(args.policies)
        workload = load(args)
    except WorkloadError as exc:
        print(f"kedahttp lab: {exc}", file=sys.stderr)
        return 2

    def progress(run: PolicyRun) -> None:
        print(f"  {run.policy.name}: {run.cpu_seconds:.1f} s CPU", file=sys.stderr)

    print(f"replaying {workload.name}: {len(workload.apps)} apps, {workload.requests:,} requests", file=sys.stderr)
    runs = run_all(workload, policies, args.config, progress)
    plots: list[str] = []
    if args.plots is not None:
        args.plots.mkdir(parents=True, exist_ok=True)
        have = {run.policy.name for run in runs}
        extra = [fixed(m) for m in CURVE_MINUTES if f"fixed-{m}m" not in have]
        curve = [r for r in runs if r.policy.name.startswith("fixed-")] + run_all(workload, extra, args.config, progress)
        path = args.plots / f"{workload.name}-tradeoff.png"
        plot_tradeoff(runs, curve, path, f"{workload.name}: cold starts vs wasted capacity")
        plots.append(str(path))
        for app in args.timeline:
            path = args.plots / f"{workload.name}-timeline-{app}.png"
            try:
                plot_timeline(workload, runs, app, path)
            except ValueError as exc:
                print(f"kedahttp lab: {exc}", file=sys.stderr)
                return 2
            plots.append(str(path))
    shown = [os.path.relpath(p, args.report.parent) for p in plots] if args.report is not None else plots
    text = markdown(workload, args.config, runs, shown)
    if args.report is not None:
        args.report.write_text(text)
    if args.json_out:
        print(as_json(runs))
    elif args.report is None:
        print(text, end="")
    return 0
