"""The repository stands alone: a clone with nothing beside it builds and tests.

What the tests, benchmarks, Makefile and CI read must be inside the repository (KEDA's CRDs live in
tests/schemas/). Two checks: no file names a place outside (the ``shared`` folder beside a checkout, an absolute path of this
machine, ``REPO.parent``), and no ``Path(__file__).parents[N]`` climbs above the repository's root.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(
    r"\.\./shared|\.\./\.\.|(?<![\w.])/work/|(?<![\w.])/tmp/shared|\b(REPO|ROOT|HERE)\.parent\b|"
    r"parent\s*/\s*[\"']shared[\"']"
)
CLIMB = re.compile(r"Path\(__file__\)\.resolve\(\)\.parents\[(\d+)\]")


def scanned_files() -> list[Path]:
    files = [ROOT / "Makefile", ROOT / "setup.py", ROOT / "pyproject.toml", *sorted((ROOT / ".ci").iterdir())]
    for folder in ("tests", "bench"):
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in {".py", ".sh", ".md",
                                                                                           ".yaml", ".toml", ""})
    return [p for p in files if p.is_file() and "__pycache__" not in p.parts]


def outside_references(path: Path, text: str) -> list[str]:
    """Where ``text`` (the contents of ``path``) names a file outside the repository."""
    found = [f"{m.group(0)!r}" for m in OUTSIDE.finditer(text)]
    depth = len(path.relative_to(ROOT).parts)  # parents[depth - 1] is the repository's root
    found += [f"parents[{m.group(1)}]" for m in CLIMB.finditer(text) if int(m.group(1)) >= depth]
    return found


def test_no_test_bench_or_build_file_names_a_path_outside_the_repository() -> None:
    me = Path(__file__).resolve()
    offenders = {
        str(path.relative_to(ROOT)): refs
        for path in scanned_files()
        if path != me and (refs := outside_references(path, path.read_text(errors="replace")))
    }
    assert not offenders, f"files that read outside the repository: {offenders}"


def test_the_check_catches_what_the_first_build_did() -> None:
    """Guards the scanner: the lines that once read the folder beside the clone are caught, the hostile
    payloads are not (spelled in pieces here, so this file names no outside path itself)."""
    kube = ROOT / "tests" / "unit" / "kube" / "schemas.py"
    assert outside_references(kube, 'SCHEMAS = REPO.parent / "shared" / "schemas"')
    assert outside_references(kube, "crd = Path('" + ".." + "/shared/schemas/keda.yaml')")
    assert outside_references(kube, "ROOT = Path(__file__).resolve().parents[4]")
    assert not outside_references(kube, "ROOT = Path(__file__).resolve().parents[3]")
    assert not outside_references(kube, 'names = ["../kube-system/coredns", "/x/../y"]')


def test_the_keda_schema_checks_read_the_repositorys_copy() -> None:
    for name in ("keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml"):
        assert (ROOT / "tests" / "schemas" / "keda" / name).is_file()
        assert name in (ROOT / "tests" / "schemas" / "README.md").read_text()  # with its source noted
    for reader in ("tests/harness/schemas.py", "tests/harness/render.py"):
        assert '"tests" / "schemas" / "keda"' in (ROOT / reader).read_text()


def make_dry_run(target: str) -> str:
    import subprocess

    out = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_make_run_installs_only_what_kedahttp_dev_needs() -> None:
    run = make_dry_run("run")
    assert "kedahttp dev" in run
    for tool in ("redis-server", "apt-get", "kubectl"):  # dev runs on the in-memory bus, without a cluster
        assert tool not in run, f"make run would install {tool}"
    test = make_dry_run("test")
    assert "redis-server" in test and "requirements/kubectl.txt" in test  # the tests install and say so
