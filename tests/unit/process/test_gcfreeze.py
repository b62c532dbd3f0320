"""The collector is kept off settled structures: a freeze once the version holds still, none while it moves."""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import Iterator

import pytest

from kedahttp.process.gcfreeze import FreezeWhenSettled
from tests.harness.waiting import until


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session is not frozen with this test


async def test_what_start_up_built_is_frozen_once_it_settles() -> None:
    freezer = FreezeWhenSettled(lambda: 0, check_seconds=0.01)
    await freezer.start()
    try:
        await until(lambda: freezer.freezes == 1, 5, "a freeze after start-up")
        assert gc.get_freeze_count() > 0
        await asyncio.sleep(0.1)
        assert freezer.freezes == 1  # nothing changed since: no second freeze
    finally:
        await freezer.close()


async def test_no_freeze_while_the_version_moves_and_one_after_it_stops() -> None:
    changes = itertools.count()
    moving = [False]
    freezer = FreezeWhenSettled(lambda: next(changes) if moving[0] else -1, check_seconds=0.01)
    await freezer.start()
    try:
        await until(lambda: freezer.freezes == 1, 5, "the start-up freeze")
        moving[0] = True  # a new version at every look: never settled
        await asyncio.sleep(0.2)
        assert freezer.freezes == 1
        moving[0] = False
        await until(lambda: freezer.freezes == 2, 5, "a freeze once the changes stop")
    finally:
        await freezer.close()


def test_young_garbage_in_cycles_is_collected_not_frozen() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    gc.collect()
    Node()  # unreachable at once, freed only by the collector (a cycle)
    before = sum(isinstance(o, Node) for o in gc.get_objects())
    assert before == 1
    FreezeWhenSettled(lambda: 0).freeze()
    assert not any(isinstance(o, Node) for o in gc.get_objects())
    assert gc.get_freeze_count() > 0
