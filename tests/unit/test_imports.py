"""Every import edge is where the layout says: tests share only tests/harness/, and kedahttp has no circles.

Tests import shared code from tests/harness/ and nothing else under tests/ (not another test module, not
a conftest: fixtures reach tests through pytest, not through imports). The package has no import circle
at any depth, imports under TYPE_CHECKING included; the edges pyproject.toml's acyclic contract ignores
(each naming the issue that removes it) are the only exceptions, read from there so the two agree.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
HARNESS = "tests.harness"


def imported_modules(path: Path, package: str | None = None) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, wherever it sits (functions included);
    ``package`` (for relative imports) defaults to the file's own under the repository."""
    if package is None:
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            if node.module is None or node.level:  # "from . import x" names modules too
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}"
            else:
                yield node.lineno, base


def test_imports_between_tests_only_go_to_the_harness() -> None:
    wrong = []
    for path in sorted(TESTS.rglob("*.py")):
        for line, module in imported_modules(path):
            if (module == "tests" or module.startswith("tests.")) and not (
                module == HARNESS or module.startswith(HARNESS + ".")
            ):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "tests import shared code only from tests/harness/:\n" + "\n".join(wrong)


def test_the_check_sees_every_kind_of_test_import(tmp_path: Path) -> None:
    """The scanner above finds plain, from-, relative and function-level imports of test modules."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import tests.faults.conftest\n"
        "from tests.unit.kube import test_appspec\n"
        "from .test_readme import ROOT\n"
        "from . import test_protos\n"
        "def f():\n    from ..integration.proxy.conftest import upstream\n"
        "from tests.harness.waiting import until\n"
    )
    found = sorted(module for _, module in imported_modules(sample, "tests.unit"))
    assert found == [
        "tests.faults.conftest", "tests.harness.waiting", "tests.integration.proxy.conftest.upstream",
        "tests.unit.kube", "tests.unit.test_protos", "tests.unit.test_readme.ROOT",
    ]


def allowed_cycle_edges() -> set[tuple[str, str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [acyclic] = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "acyclic_siblings"]
    edges = set()
    for text in acyclic.get("ignore_imports", []):
        importer, _, imported = text.partition(" -> ")
        edges.add((importer.strip(), imported.strip()))
    return edges


def import_cycles(graph: grimp.ImportGraph, ignored: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def successors(module: str) -> list[str]:
        return sorted(m for m in graph.find_modules_directly_imported_by(module)
                      if m.startswith("kedahttp") and (module, m) not in ignored)

    for root in sorted(m for m in graph.modules if m.startswith("kedahttp")):
        if root in index:
            continue
        work = [(root, iter(successors(root)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors(child))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_kedahttp_has_no_import_cycle() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        graph = grimp.build_graph("kedahttp", cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))
    cycles = import_cycles(graph, allowed_cycle_edges())
    assert not cycles, f"import cycles in kedahttp: {cycles}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("kedahttp", "kedahttp.a", "kedahttp.b", "kedahttp.c"):
        graph.add_module(module)
    graph.add_import(importer="kedahttp.a", imported="kedahttp.b")
    graph.add_import(importer="kedahttp.b", imported="kedahttp.c")
    graph.add_import(importer="kedahttp.c", imported="kedahttp.a")
    assert import_cycles(graph, set()) == [["kedahttp.a", "kedahttp.b", "kedahttp.c"]]
    assert import_cycles(graph, {("kedahttp.c", "kedahttp.a")}) == []
