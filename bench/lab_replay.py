"""How fast ``kedahttp lab`` replays the shipped 250-function Azure sample: CPU seconds per policy, and the
speed-up over the 8 hours of real time the sample covers.

Each policy replays every app of the sample (246 apps, 567,403 requests) through the proxy's counters, our
scaler's state and the KEDA and HPA cores, on one core (process time, so a shared machine does not
inflate it). ``--quick`` replays the 10-function sample instead. Timing lives here, not in the tests.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

from kedahttp.lab.config import LabConfig
from kedahttp.lab.policies import POLICIES
from kedahttp.lab.run import run_policy
from kedahttp.lab.workload import load_azure

NAME = "lab_replay"
TRACES = Path(__file__).resolve().parents[1] / "kedahttp" / "lab" / "traces"


def run(quick: bool) -> dict[str, Any]:
    folder = TRACES / ("azure2019-sample10" if quick else "azure2019-sample250")
    started = time.process_time()
    workload = load_azure(folder)
    load_cpu = time.process_time() - started
    figures: dict[str, Any] = {
        "scenario": f"{folder.name}: {len(workload.apps)} apps, {workload.requests} requests, "
                    f"{workload.seconds / 3600:g} h of trace; one policy = every app replayed once",
        "load_cpu_seconds": round(load_cpu, 2),
    }
    total = load_cpu
    for name, policy in POLICIES.items():
        run_ = run_policy(workload, policy, LabConfig())
        total += run_.cpu_seconds
        figures[name] = {
            "cpu_seconds": round(run_.cpu_seconds, 2),
            "speedup_over_real_time": round(workload.seconds / run_.cpu_seconds),
            "requests_per_cpu_second": round(workload.requests / run_.cpu_seconds),
        }
    figures["all_policies_cpu_seconds"] = round(total, 1)
    figures["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return figures
