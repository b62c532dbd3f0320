"""The Dockerfile builds the image the manifests run. No image can be built here, so the tests check the
Dockerfile against the manifests and packaging, and build the wheel that ``pip install .`` would build
from exactly the files .dockerignore lets into the build context.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from kedahttp.proxy import compiled
from tests.harness.render import REPO, Build


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for word, rest in instructions(path):
        if word == "FROM":
            result.append([])
        assert result, "the Dockerfile must start with FROM"
        result[-1].append((word, rest))
    return result


def ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it (``**`` crosses directories, ``*`` does not)."""
    pattern = pattern.strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def build_context(root: Path) -> list[str]:
    """The files of the work tree (as a clone has them) that .dockerignore lets into the build."""
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, ignore_regex(line.lstrip("!"))))
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    kept = []
    for path in listed:
        if not (root / path).is_file():
            continue
        parts = path.split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]  # a rule on a folder covers it
        excluded = False
        for negated, regex in rules:
            if any(regex.match(c) for c in candidates):
                excluded = not negated
        if not excluded:
            kept.append(path)
    return kept


def test_ignore_patterns_read_like_docker() -> None:
    assert ignore_regex("*").match("kedahttp") and not ignore_regex("*").match("kedahttp/x.py")
    assert ignore_regex("**/__pycache__").match("kedahttp/cli/__pycache__")
    assert ignore_regex("**/__pycache__").match("__pycache__")
    assert ignore_regex("kedahttp/").match("kedahttp")


@pytest.fixture(scope="module")
def dockerfile() -> list[list[tuple[str, str]]]:
    return stages(REPO / "Dockerfile")


def test_multi_stage_on_the_supported_python(dockerfile: list[list[tuple[str, str]]]) -> None:
    assert len(dockerfile) >= 2, "build in one stage, ship only the virtualenv in another"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(n) for n in re.findall(r"\d+", requires)[:2])
    for stage in dockerfile:
        image = stage[0][1].split()[0]
        match = re.fullmatch(r"python:(\d+)\.(\d+)-slim", image)
        assert match, f"stage base {image}: use python:3.X-slim"
        assert (int(match[1]), int(match[2])) >= minimum, f"{image} is older than requires-python {requires}"
    build_steps = [rest for stage in dockerfile[:-1] for word, rest in stage if word == "RUN"]
    assert any(re.search(r"pip install\s+\.(\s|$)", step) for step in build_steps), (
        "pip install . in a build stage"
    )
    final = dockerfile[-1]
    copies = [rest for word, rest in final if word in {"COPY", "ADD"}]
    assert copies and all(c.startswith("--from=") for c in copies), "the final stage takes only built files"


def test_the_image_runs_kedahttp_as_the_manifests_user(
    dockerfile: list[list[tuple[str, str]]], base: Build
) -> None:
    final = dict((word, rest) for word, rest in dockerfile[-1] if word in {"USER", "ENTRYPOINT"})
    assert json.loads(final["ENTRYPOINT"]) == ["kedahttp"], (
        "exec-form ENTRYPOINT, so kedahttp is PID 1 and gets SIGTERM"
    )
    for component in ("proxy", "scaler"):
        workload, _ = base.component(component)
        context = workload["spec"]["template"]["spec"]["securityContext"]
        assert final["USER"] == f"{context['runAsUser']}:{context['runAsGroup']}", component


def test_the_image_exposes_every_container_port(dockerfile: list[list[tuple[str, str]]], base: Build) -> None:
    exposed = {
        int(p.split("/")[0]) for word, rest in dockerfile[-1] if word == "EXPOSE" for p in rest.split()
    }
    for component in ("proxy", "scaler"):
        _, container = base.component(component)
        assert {p["containerPort"] for p in container["ports"]} <= exposed


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="setuptools is not in the venv")
def test_the_build_context_builds_the_whole_package(
    tmp_path: Path, dockerfile: list[list[tuple[str, str]]]
) -> None:
    context = build_context(REPO)
    assert "pyproject.toml" in context and "README.md" in context and "setup.py" in context
    assert not [p for p in context if p.startswith((".venv/", ".git/", "tests/", "manifests/"))]
    sources = sorted(p for p in context if p.startswith("kedahttp/") and p.endswith((".py", ".pyi", ".yaml")))
    assert "kedahttp/cli/main.py" in sources
    copied = [rest.split()[:-1] for stage in dockerfile[:-1] for word, rest in stage if word == "COPY"]
    for sources_of_copy in copied:
        for source in sources_of_copy:
            assert any(p == source or p.startswith(source.rstrip("/") + "/") for p in context), (
                f"COPY {source}: not in the build context .dockerignore leaves"
            )

    tree = tmp_path / "context"
    for path in context:
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(REPO / path, tree / path)
        except FileNotFoundError:  # an editor's temporary file, gone since git listed it
            continue
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(tree),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("kedahttp-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    missing = [p for p in sources if p not in names]
    assert not missing, f"the image would lack {missing}: a package without __init__.py, or package-data?"
    # the data path is compiled (setup.py): one extension per module plus mypyc's shared library
    extensions = {n for n in names if n.endswith(".so")}
    for module in compiled.COMPILED_MODULES:
        prefix = module.replace(".", "/") + "."
        assert any(n.startswith(prefix) for n in extensions), f"{module} is not compiled in the wheel"
    assert any(n.startswith("kedahttp/proxy/native__mypyc.") for n in extensions), sorted(extensions)
    assert re.search(r"^kedahttp = kedahttp\.cli\.main:main$", entry_points, re.M)
