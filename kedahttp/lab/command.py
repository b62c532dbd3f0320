"""The ``kedahttp lab`` command line: options only; everything else is main.py, loaded when the command runs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kedahttp.lab.config import POLICY_NAMES, LabConfig

DEFAULTS = LabConfig()


@click.command()
@click.option("--trace", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="a folder in the Azure Functions 2019 layout (invocations.csv, durations.csv)")
@click.option("--requests", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="a per-request log: CSV with the header timestamp,app,duration_ms")
@click.option("--policies", default=",".join(POLICY_NAMES), show_default=True, help="comma-separated policy names")
@click.option("--json", "json_out", is_flag=True, help="print the figures as JSON for scripts")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), help="write the Markdown report here")
@click.option("--plots", type=click.Path(path_type=Path, file_okay=False),
              help="draw PNG plots into this folder (adds the fixed windows of the trade-off curve)")
@click.option("--timeline", multiple=True, help="an app (app-NNN or the trace's app id) to draw a timeline of")
@click.option("--target-concurrency", type=float, default=DEFAULTS.target_concurrency, show_default=True)
@click.option("--pod-start-median-seconds", type=float, default=DEFAULTS.pod_start_median_seconds,
              show_default=True)
@click.option("--pod-start-sigma", type=float, default=DEFAULTS.pod_start_sigma, show_default=True,
              help="log-normal sigma of pod start times")
@click.option("--cold-start-timeout-seconds", type=float, default=DEFAULTS.cold_start_timeout_seconds,
              show_default=True)
@click.option("--report-interval-seconds", type=float, default=DEFAULTS.report_interval_seconds, show_default=True)
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
def lab(trace: Path | None, requests: Path | None, policies: str, json_out: bool, report: Path | None,
        plots: Path | None, timeline: tuple[str, ...], target_concurrency: float, pod_start_median_seconds: float,
        pod_start_sigma: float, cold_start_timeout_seconds: float, report_interval_seconds: float,
        seed: int) -> None:
    """Replay a trace or request log against the scaling policies (kedahttp, fixed windows, the KEDA HTTP
    add-on, Knative, adaptive) in simulated time and report cold starts, wasted capacity and waits."""
    try:
        config = LabConfig(target_concurrency=target_concurrency, pod_start_median_seconds=pod_start_median_seconds,
                           pod_start_sigma=pod_start_sigma, cold_start_timeout_seconds=cold_start_timeout_seconds,
                           report_interval_seconds=report_interval_seconds, seed=seed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    names = tuple(n.strip() for n in policies.split(",") if n.strip())
    try:  # here, not at the top: every kedahttp command loads this module, only the lab needs numpy
        from kedahttp.lab.main import LabArgs, main
    except ImportError as exc:
        raise click.ClickException(f"kedahttp lab needs numpy and matplotlib (pip install 'kedahttp[lab]'): {exc}") from exc
    sys.exit(main(LabArgs(trace, requests, names, config, json_out, report, plots, timeline)))
