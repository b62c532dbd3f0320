import asyncio

from kedahttp.process.lifecycle import BaseComponent, Lifecycle
from kedahttp.process.tasks import TaskOwner


class Recorder(BaseComponent):
    def __init__(self, name: str, events: list[str], fail_start: bool = False) -> None:
        self.name = name
        self.events = events
        self.fail_start = fail_start

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError("cannot bind")
        self.events.append(f"start {self.name}")

    def mark_not_ready(self) -> None:
        self.events.append(f"not-ready {self.name}")

    async def stop_accepting(self) -> None:
        self.events.append(f"stop-accepting {self.name}")

    async def drain(self, deadline: float) -> None:
        self.events.append(f"drain {self.name}")

    async def close(self) -> None:
        self.events.append(f"close {self.name}")


async def test_staged_shutdown_order() -> None:
    events: list[str] = []
    life = Lifecycle([Recorder("a", events), Recorder("b", events)], shutdown_delay_seconds=0.01)
    runner = asyncio.create_task(life.run(install_signals=False))
    await asyncio.sleep(0.01)
    life.request_stop()
    await asyncio.wait_for(runner, 2)
    assert events == [
        "start a", "start b",
        "not-ready a", "not-ready b",
        "stop-accepting a", "stop-accepting b",
        "drain a", "drain b",
        "close b", "close a",
    ]


async def test_failed_start_closes_what_started() -> None:
    events: list[str] = []
    life = Lifecycle([Recorder("a", events), Recorder("b", events, fail_start=True)])
    try:
        await life.run(install_signals=False)
        raise AssertionError("start failure was swallowed")
    except RuntimeError as exc:
        assert "cannot bind" in str(exc)
    assert events == ["start a", "close a"]


async def test_task_owner_cancels_on_close_and_logs_deaths(caplog) -> None:
    owner = TaskOwner("test")
    never = asyncio.Event()
    waiter = owner.spawn(never.wait(), "waiter")

    async def boom() -> None:
        raise ValueError("died")

    owner.spawn(boom(), "boom")
    await asyncio.sleep(0.01)
    assert "background task test/boom died" in caplog.text
    assert "ValueError: died" in caplog.text
    assert len(owner) == 1
    await owner.close()
    assert waiter.cancelled()
