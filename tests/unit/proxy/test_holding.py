"""The hold queue: bounded, ordered, O(1) removal, deadlines in and out of arrival order."""

from __future__ import annotations

from kedahttp.proxy.holding import HoldQueue


def test_limit_order_and_release() -> None:
    q: HoldQueue[str] = HoldQueue(limit=2)
    assert q.hold("a", 10.0) and q.hold("b", 11.0)
    assert q.full and not q.hold("c", 12.0)
    assert "c" not in q and len(q) == 2
    assert q.release_all() == ["a", "b"]
    assert len(q) == 0 and q.next_deadline() is None


def test_remove_a_client_that_left() -> None:
    q: HoldQueue[str] = HoldQueue(limit=10)
    for i, item in enumerate("abc"):
        q.hold(item, 10.0 + i)
    assert q.remove("b") and not q.remove("b")
    assert q.release_all() == ["a", "c"]


def test_expiry_in_arrival_order() -> None:
    q: HoldQueue[str] = HoldQueue(limit=10)
    for i, item in enumerate("abcd"):
        q.hold(item, 10.0 + i)
    assert q.next_deadline() == 10.0
    assert q.expired(11.5) == ["a", "b"]
    assert q.next_deadline() == 12.0
    assert q.expired(100) == ["c", "d"]


def test_expiry_when_a_shorter_timeout_arrives_later() -> None:
    q: HoldQueue[str] = HoldQueue(limit=10)
    q.hold("long", 60.0)
    q.hold("short", 5.0)  # the backend's timeout was lowered
    assert q.next_deadline() == 5.0
    assert q.expired(6.0) == ["short"]
    assert q.next_deadline() == 60.0
    assert q.expired(61.0) == ["long"]
    q.hold("again", 70.0)
    assert q.next_deadline() == 70.0
