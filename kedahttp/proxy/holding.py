"""The hold queue of one backend: requests waiting for a cold backend to get a ready endpoint.

Pure bookkeeping, no clock and no I/O: the caller passes times in. A queue is bounded (past the limit the
caller answers 503) and ordered by arrival; each entry carries its own deadline, so a change of the
backend's timeout affects only requests held after it. Removal of a single entry (a client that went
away) is O(1): entries live in an insertion-ordered dict keyed by the held object itself.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class HoldQueue(Generic[T]):
    __slots__ = ("_entries", "_last_deadline", "_ordered", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: dict[T, float] = {}  # item -> deadline, in arrival order
        # Deadlines are usually in arrival order (one timeout per backend); then expiry and the next
        # deadline come from the front without a scan. A shorter timeout breaks the order until empty.
        self._ordered = True
        self._last_deadline = float("-inf")

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, item: object) -> bool:
        return item in self._entries

    @property
    def full(self) -> bool:
        return len(self._entries) >= self.limit

    def hold(self, item: T, deadline: float) -> bool:
        """Adds ``item``; False (and nothing held) when the queue is full."""
        if len(self._entries) >= self.limit:
            return False
        if deadline < self._last_deadline:
            self._ordered = False
        self._last_deadline = deadline
        self._entries[item] = deadline
        return True

    def remove(self, item: T) -> bool:
        found = self._entries.pop(item, None) is not None
        self._reset_order()
        return found

    def release_all(self) -> list[T]:
        """Empties the queue and returns its items in arrival order."""
        items = list(self._entries)
        self._entries.clear()
        self._reset_order()
        return items

    def _reset_order(self) -> None:
        if not self._entries:
            self._ordered = True
            self._last_deadline = float("-inf")

    def expired(self, now: float) -> list[T]:
        """Removes and returns every item whose deadline is at or before ``now``."""
        gone: list[T] = []
        if self._ordered:
            for item, deadline in self._entries.items():
                if deadline > now:
                    break
                gone.append(item)
        else:
            gone = [item for item, deadline in self._entries.items() if deadline <= now]
        for item in gone:
            del self._entries[item]
        self._reset_order()
        return gone

    def next_deadline(self) -> float | None:
        """The earliest deadline, or None when empty."""
        if not self._entries:
            return None
        if self._ordered:
            return next(iter(self._entries.values()))
        return min(self._entries.values())
