"""Instructions per request in the proxy's own data path, counted by callgrind: a figure machine noise
does not move.

bench/_datapath_loop.py serves requests in one process with fake transports (parsing, routing, dispatch,
pool, counters, head rewriting, the upstream's response parsed and re-framed: everything but the
kernel and the event loop). It runs twice under callgrind, with a short and a long loop; the difference
divided by the extra requests is the cost of one request, start-up cancelled out. Two requests: what
wrk sends (one header) and what a browser sends (10 headers). A third run with both connections
replaced by stubs counts the loop and fake transports alone; ``data_path_instructions_per_request``
is the rest.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from typing import Any

NAME = "datapath_instructions"
VALGRIND = shutil.which("valgrind")


def _instructions(kind: str, count: int) -> int:
    assert VALGRIND, "valgrind is not installed (apt-get install valgrind)"
    proc = subprocess.run(
        [VALGRIND, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
         "bench._datapath_loop", kind, str(count)],
        capture_output=True, text=True, check=True,
    )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    assert found, proc.stderr[-2000:]
    return int(found.group(1))


def per_request(kind: str, short: int, long: int) -> int:
    return round((_instructions(kind, long) - _instructions(kind, short)) / (long - short))


def run(quick: bool) -> dict[str, Any]:
    from kedahttp.proxy.compiled import data_path

    short, long = (500, 1500) if quick else (1000, 5000)
    counts = {kind: per_request(kind, short, long) for kind in ("plain", "browser", "harness")}
    harness = counts.pop("harness")
    return {
        "data_path": data_path(),
        "instructions_per_request": counts,
        "harness_instructions_per_request": harness,  # the loop and fake transports, included above
        "data_path_instructions_per_request": {kind: n - harness for kind, n in counts.items()},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), indent=2))
