"""Fixtures for the manifest tests: each kustomization is rendered once per session."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tests.manifests import render
from tests.manifests.render import Build

DIRS = render.kustomization_dirs()
# The installs an operator picks from (each is a full kedahttp), and the example app.
INSTALLS = ("overlays/dev", "overlays/nats", "overlays/redis")
EXAMPLE = "examples/hello"


@functools.cache
def rendered(name: str) -> Build:
    return Build(name, render.build(render.MANIFESTS / name))


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
