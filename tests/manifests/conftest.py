"""Fixtures for the manifest tests: each kustomization is rendered once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import render
from tests.harness.render import EXAMPLE, INSTALLS, Build, rendered

DIRS = render.kustomization_dirs()


@pytest.fixture(scope="session", params=DIRS, ids=render.rel)
def built(request: pytest.FixtureRequest) -> Build:
    """Every kustomization under manifests/, base and example included."""
    directory: Path = request.param
    return rendered(render.rel(directory))


@pytest.fixture(scope="session", params=INSTALLS)
def install(request: pytest.FixtureRequest) -> Build:
    """Every overlay that installs kedahttp."""
    return rendered(request.param)


@pytest.fixture(scope="session")
def base() -> Build:
    return rendered("base")


@pytest.fixture(scope="session")
def example() -> Build:
    return rendered(EXAMPLE)
