"""A sliding window over whole wall-clock seconds: a ring of cumulative sums, read in two lookups.

The ring keeps, for every second ``s`` of the last ``capacity`` seconds, the running total ``C[s]`` of
everything added at or before ``s``. The sum over any window of whole seconds is then one subtraction,
``C[last] - C[first - 1]``, whatever its length: O(1) per read. An update normally touches the newest
one or two slots; the only loops are filling seconds skipped while idle (bounded by the capacity, once
per skipped second) and a late value, which must raise every later running total (bounded by the
distance to the newest second). Totals only grow and are only subtracted from their own earlier
values, so a window with nothing added reads exactly 0.0 and never a negative number.

Pure: plain numbers in and out, no clock of its own; callers pass the time.
"""

from __future__ import annotations

import math
from array import array


def placement(start: float, end: float) -> tuple[int, tuple[float, ...]]:
    """Where a value spread evenly over ``[start, end]`` lands: the first second it touches, and for that
    second and each following one but the last, the share of the value accumulated through it.

    An integral ``end`` belongs to the second before it; a zero-length interval lands in ``end``'s second.
    """
    first = math.floor(start)
    span = end - start
    if span <= 0.0:
        return math.floor(end), ()
    last = math.ceil(end) - 1
    if last <= first:
        return first, ()
    return first, tuple((s + 1 - start) / span for s in range(first, last))


class CumulativeRing:
    """Running totals per whole second over the last ``capacity`` seconds.

    ``head`` is the newest second filled; slots hold ``C[s]`` for ``s`` in ``[head - capacity + 1, head]``
    and ``base`` holds ``C[head - capacity]``, so a window may start right at the oldest slot.
    """

    __slots__ = ("_c", "base", "capacity", "head")

    def __init__(self, capacity: int, second: int) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2 seconds")
        self.capacity = capacity
        self._c = array("d", bytes(8 * capacity))
        self.head = second
        self.base = 0.0

    @property
    def total(self) -> float:
        """Everything ever added (the running total at the newest second)."""
        return self._c[self.head % self.capacity]

    def advance(self, second: int) -> None:
        """Makes ``second`` the newest slot, carrying the running total through the skipped seconds."""
        head = self.head
        if second <= head:
            return
        c = self._c
        cap = self.capacity
        value = c[head % cap]
        if second - head >= cap:
            for i in range(cap):
                c[i] = value
            self.base = value
        else:
            base = self.base
            for s in range(head + 1, second + 1):
                i = s % cap
                base = c[i]  # C[s - cap] leaves the ring and becomes the value before its oldest slot
                c[i] = value
            self.base = base
        self.head = second

    def add(self, second: int, amount: float) -> None:
        """Adds ``amount`` at ``second`` (an older second than the ring holds lands before every slot)."""
        if amount <= 0.0:
            return
        if second > self.head:
            self.advance(second)
        c = self._c
        cap = self.capacity
        head = self.head
        oldest = head - cap + 1
        if second < oldest:
            self.base += amount
            second = oldest
        for s in range(second, head + 1):
            c[s % cap] += amount

    def spread(self, start: float, end: float, amount: float) -> None:
        """Adds ``amount`` spread evenly over the wall-clock interval ``[start, end]`` (``start <= end``).

        Each second receives the share of the interval it overlaps. A zero-length interval puts it all
        in the second that contains ``end``.
        """
        first, shares = placement(start, end)
        self.place(first, shares, amount)

    def place(self, first: int, shares: tuple[float, ...], amount: float) -> None:
        """Adds ``amount`` over the seconds ``first .. first + len(shares)`` as computed by ``placement``.

        Many values share one interval (every backend in a report), so the shares are computed once.
        """
        if amount <= 0.0:
            return
        last = first + len(shares)
        head = self.head
        if last > head:
            self.advance(last)
            head = last
        c = self._c
        cap = self.capacity
        if not shares and last == head:  # the common case: this second, nothing later to raise
            c[head % cap] += amount
            return
        oldest = head - cap + 1
        if first < oldest:
            # The seconds before the ring: their accumulated share goes into the total before it.
            before = oldest - 1 - first
            self.base += amount * shares[before] if before < len(shares) else amount
            shares = shares[before + 1:]
            first = oldest
            last = first + len(shares)
        s = first
        for share in shares:
            c[s % cap] += amount * share
            s += 1
        for s in range(last, head + 1):
            c[s % cap] += amount

    def at(self, second: int) -> float:
        """The running total ``C[second]``: everything added at or before ``second``."""
        head = self.head
        if second >= head:
            return self._c[head % self.capacity]
        if second <= head - self.capacity:
            return self.base
        return self._c[second % self.capacity]

    def window(self, end: int, seconds: int) -> float:
        """The sum over the ``seconds`` whole seconds before ``end``: ``[end - seconds, end - 1]``."""
        value = self.at(end - 1) - self.at(end - 1 - seconds)
        return value if value > 0.0 else 0.0

    def expired(self, second: int) -> bool:
        """True when nothing was added in the ``capacity`` seconds before ``second``: every window it can
        answer from then on reads 0, so the ring can be dropped."""
        return self.head <= second - self.capacity
