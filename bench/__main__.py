"""``make bench``: runs every benchmark scenario in bench/ and records its figures in the repo.

A scenario is a module here with ``NAME`` and ``run(quick: bool) -> dict``. Figures are ratios against a
reference measured in the same run where one exists (nginx for the proxy, a direct connection for
latency), so they mean something on another machine too. Results go to bench/results/<NAME>.json and
the summary table in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def scenarios() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))


def machine() -> dict[str, Any]:
    import os

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


LOG_MARK = "# Changes measured"  # RESULTS.md from this heading on is written by hand and kept


def write_summary() -> None:
    old = (HERE / "RESULTS.md").read_text() if (HERE / "RESULTS.md").exists() else ""
    log = old[old.index(LOG_MARK):] if LOG_MARK in old else ""
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (bench/__main__.py); each section is one scenario's latest run.",
        "Raw figures: bench/results/*.json.",
        "",
    ]
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        lines += [f"## {path.stem}", "", f"run {data['finished']} ({'quick' if data['quick'] else 'full'}), "
                  f"{data['machine']['cpus']} CPUs, Python {data['machine']['python']}", ""]
        lines += ["| figure | value |", "|---|---|"]
        for key, value in _flatten(data["figures"]):
            lines.append(f"| {key} | {value} |")
        lines.append("")
    (HERE / "RESULTS.md").write_text("\n".join(lines) + ("\n" + log if log else ""))


def _flatten(figures: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten(value, name + ".")
        else:
            out.append((name, round(value, 4) if isinstance(value, float) else value))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"scenarios to run (default: all of {', '.join(scenarios())})")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke check, not figures to record)")
    args = parser.parse_args()
    names = args.names or scenarios()
    RESULTS.mkdir(exist_ok=True)
    failed = 0
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name}", flush=True)
        started = time.time()
        try:
            figures = module.run(args.quick)
        except Exception:
            traceback.print_exc()
            failed += 1
            continue
        record = {
            "scenario": getattr(module, "NAME", name),
            "quick": args.quick,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "seconds": round(time.time() - started, 1),
            "machine": machine(),
            "figures": figures,
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps(figures, indent=2), flush=True)
    write_summary()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
