"""The README's settings table, written from the settings table (SPECS), so the two cannot disagree.

``python -m kedahttp.process.settings_doc README.md`` (``make docs``) rewrites the block between the
markers; tests/unit/test_readme.py fails when the README's block differs from what this module writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kedahttp.process.settings import SPECS, Spec, default_for, env_name, flag_name, metavar

BEGIN = "<!-- settings table: written by `make docs` from kedahttp/process/settings.py -->"
END = "<!-- end of settings table -->"


def _default(spec: Spec) -> str:
    def shown(value: str) -> str:
        return f"`{value}`" if value else "none"

    base = spec.default or ""
    main = next((p for p in spec.processes if default_for(spec, p) == base), spec.processes[0])
    text = shown(default_for(spec, main))
    others = [f"{p}: {shown(default_for(spec, p))}" for p in spec.processes
              if default_for(spec, p) != default_for(spec, main)]
    return text + (f" ({'; '.join(others)})" if others else "")


def table() -> str:
    lines = ["| env / flag | type | used by | default | meaning |", "|---|---|---|---|---|"]
    for spec in SPECS:
        kind = metavar(spec).replace("|", " \\| ")
        lines.append(
            f"| `{env_name(spec.name)}` / `--{flag_name(spec.name)}` | {kind} | {', '.join(spec.processes)} "
            f"| {_default(spec)} | {spec.help.replace('|', chr(92) + '|')} |"
        )
    return "\n".join(lines)


def block() -> str:
    return f"{BEGIN}\n{table()}\n{END}"


def rewrite(text: str) -> str:
    """``text`` (a README) with its settings block replaced by the current one."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + block() + text[end:]


def current(text: str) -> str:
    """The settings block as ``text`` has it."""
    return text[text.index(BEGIN) : text.index(END) + len(END)]


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(rewrite(path.read_text()))
