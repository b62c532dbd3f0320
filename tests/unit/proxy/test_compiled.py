"""The data path is compiled with mypyc from the same source (setup.py); these keep the build honest."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from kedahttp.proxy import compiled

REPO = Path(__file__).resolve().parents[3]


def test_setup_compiles_exactly_the_modules_compiled_py_names() -> None:
    tree = ast.parse((REPO / "setup.py").read_text())
    listed = next(
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED"
    )
    paths = [ast.literal_eval(element) for element in listed.elts]  # type: ignore[attr-defined]
    assert [p.removesuffix(".py").replace("/", ".") for p in paths] == list(compiled.COMPILED_MODULES)


def test_the_suite_runs_the_build_it_was_asked_for() -> None:
    # `make test` compiles unless KEDAHTTP_COMPILE=0; a build that silently fell back to plain Python (or
    # half of it) would pass every other test while shipping the slow path.
    expected = "python" if os.environ.get("KEDAHTTP_COMPILE") == "0" else "compiled"
    assert compiled.data_path() == expected, "run `make compile` (or make test, which does)"
    assert compiled.stale_modules() == []
