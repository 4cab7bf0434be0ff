"""In-memory deadlines: grace periods, idle timeouts, absence windows, waits.

A binary heap ordered by (due, sequence). Cancelling marks the entry dead
instead of searching the heap for it (O(1)); dead entries are dropped when
they reach the top. The sequence number makes the order total, so that two
deadlines due at the same instant always fire in the order they were set:
replays depend on that to be deterministic.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

__all__ = ["Deadline", "DeadlineQueue"]


class Deadline:
    """One entry of the queue; ``kind`` and ``ref`` say what to do when due."""

    __slots__ = ("alive", "due", "kind", "ref", "seq")

    def __init__(self, due: float, seq: int, kind: str, ref: Any) -> None:
        self.due = due
        self.seq = seq
        self.kind = kind
        self.ref = ref
        self.alive = True

    def __repr__(self) -> str:
        return f"Deadline({self.due!r}, {self.kind!r}, alive={self.alive})"


class DeadlineQueue:
    """Deadlines in due order; see the module docstring."""

    def __init__(self) -> None:
        # (due, seq, entry) tuples: tuples compare in C, an entry's own
        # __lt__ would be a Python call per comparison.
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count()
        self._alive = 0

    def __len__(self) -> int:
        """The number of live (not cancelled, not fired) deadlines."""
        return self._alive

    def push(self, due: float, kind: str, ref: Any) -> Deadline:
        seq = next(self._seq)
        entry = Deadline(due, seq, kind, ref)
        heapq.heappush(self._heap, (due, seq, entry))
        self._alive += 1
        return entry

    def cancel(self, entry: Deadline) -> None:
        if entry.alive:
            entry.alive = False
            self._alive -= 1

    def peek_due(self) -> float | None:
        """The due time of the earliest live deadline, or None."""
        heap = self._heap
        while heap and not heap[0][2].alive:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> Deadline | None:
        """Remove and return the earliest live deadline due at or before now."""
        due = self.peek_due()
        if due is None or due > now:
            return None
        entry = heapq.heappop(self._heap)[2]
        entry.alive = False
        self._alive -= 1
        return entry
