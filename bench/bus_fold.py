"""How many activity reports one scaler process folds per second: decode (codec.decode) + Aggregator.fold.

Scenario (issue 2): 10,000 backends, 50 proxy instances, each reporting every 0.25 s, so the scaler
must fold 200 reports/s. Every backend is busy somewhere, so all 10,000 have windows allocated. Two mixes
of how many backends one report carries (only backends with activity that interval are listed):

* ``sparse``: 50 backends per report (each instance sees 10,000 backends over 50 s of traffic);
* ``dense``: 1,000 backends per report (every backend active on every instance every few seconds).

Reports are encoded beforehand with their real timestamps, advancing 0.25 s per round, and folded with
``now`` following them, as the feed would deliver them live. Figures: reports/s and backend-entries/s
folded per CPU-second (process time: the machine may be shared), and the headroom over the 200
reports/s the scenario needs. A metrics read (GetMetrics' work) over all backends is timed too.
"""

from __future__ import annotations

import math
import os
import random
import resource
import time
from typing import Any

from kedahttp.activity import codec
from kedahttp.activity.aggregate import Aggregator
from kedahttp.activity.model import BackendActivity, Report

NAME = "bus_fold"
BACKENDS = 10_000
INSTANCES = 50
INTERVAL = 0.25
REQUIRED_REPORTS_PER_SECOND = INSTANCES / INTERVAL


def envelopes(per_report: int, rounds: int, t0: float, seed: int = 1) -> list[tuple[bytes, float]]:
    rng = random.Random(seed)
    names = [f"ns{i % 100}/app{i}" for i in range(BACKENDS)]
    out = []
    offset = 0
    for r in range(rounds):
        sent_at = t0 + (r + 1) * INTERVAL
        for i in range(INSTANCES):
            entries = []
            for k in range(per_report):
                in_flight = rng.randint(0, 3)
                started = rng.randint(0, 4)
                entries.append(BackendActivity(
                    backend=names[(offset + k) % BACKENDS], in_flight=in_flight, held=0, started=started,
                    completed=started, busy_seconds=in_flight * INTERVAL + 0.01 * started,
                    last_request_at=sent_at - 0.1 if started else 0.0,
                ))
            offset += per_report
            report = Report(f"proxy-{i}", r + 1, sent_at, sent_at - INTERVAL, INTERVAL, tuple(entries))
            out.append((codec.encode_report(report), sent_at + 0.002))
    return out


def fold_rate(per_report: int, rounds: int) -> dict[str, Any]:
    t0 = math.floor(time.time()) + 0.1
    payloads = envelopes(per_report, rounds, t0)
    agg = Aggregator()
    decode = codec.decode
    fold = agg.fold
    # CPU time of this process, not wall time: the machine is shared, and CPU is what the figure is about.
    started = time.process_time()
    for payload, now in payloads:
        fold(decode(payload), now)
    elapsed = time.process_time() - started
    reports_per_second = len(payloads) / elapsed
    now = payloads[-1][1]
    names = [f"ns{i % 100}/app{i}" for i in range(BACKENDS)]
    read_started = time.process_time()
    for name in names:
        agg.metrics(name, now, 60, 60)
    read_us = (time.process_time() - read_started) / len(names) * 1e6
    return {
        "backends_per_report": per_report,
        "reports_folded": len(payloads),
        "reports_per_second": round(reports_per_second),
        "backend_entries_per_second": round(reports_per_second * per_report),
        "headroom_over_200_reports_per_second": round(reports_per_second / REQUIRED_REPORTS_PER_SECOND, 2),
        "cpu_share_at_200_reports_per_second": round(REQUIRED_REPORTS_PER_SECOND / reports_per_second, 3),
        "backends_tracked": agg.backends,
        "metrics_read_us_per_backend": round(read_us, 2),
    }


def run(quick: bool) -> dict[str, Any]:
    rounds_sparse, rounds_dense = (400, 12) if quick else (800, 24)
    figures: dict[str, Any] = {
        "scenario": f"{BACKENDS} backends, {INSTANCES} instances reporting every {INTERVAL} s "
                    f"(needs {REQUIRED_REPORTS_PER_SECOND:.0f} reports/s); decode + fold",
        "sparse": fold_rate(50, rounds_sparse),
        "dense": fold_rate(1000, rounds_dense),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_average_at_end": round(os.getloadavg()[0], 2),
    }
    return figures


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
