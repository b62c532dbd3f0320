"""Fixtures of the scaler tests that run a real scaler: a fresh in-memory bus, the scaler on it, and a
client that calls it the way KEDA does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.harness.scaler import KedaClient, Scaler, running_scaler


@pytest.fixture
def bus() -> str:
    return f"memory://scaler-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def scaler(bus: str) -> AsyncIterator[Scaler]:
    async with running_scaler(bus) as running:
        yield running


@pytest.fixture
async def keda(scaler: Scaler) -> AsyncIterator[KedaClient]:
    client = KedaClient(scaler.target)
    yield client
    await client.close()
