"""In-memory deadlines: grace periods, idle timeouts, absence windows, waits.

Deadlines wait in buckets of one second (``int(due)``), each a plain list in
the order the deadlines were set, as ``performance-notes.md`` measured: a
deadline costs one small object and one list slot, about half a binary
heap's tuple, sequence number and entry. Only the earliest bucket is
ordered, when it becomes current: its entries go into a heap by
(due, place in the bucket). The place in the bucket is the order the
deadlines were set, so two deadlines due at the same instant always fire
in that order: replays depend on it to be deterministic.

Cancelling marks the entry dead instead of searching for it (O(1)); dead
entries are dropped when their bucket becomes current or when they reach
the top of its heap.
"""

from __future__ import annotations

import heapq
from typing import Any

__all__ = ["Deadline", "DeadlineQueue"]


class Deadline:
    """One entry of the queue; ``kind`` and ``ref`` say what to do when due."""

    __slots__ = ("alive", "due", "kind", "ref")

    def __init__(self, due: float, kind: str, ref: Any) -> None:
        self.due = due
        self.kind = kind
        self.ref = ref
        self.alive = True

    def __repr__(self) -> str:
        return f"Deadline({self.due!r}, {self.kind!r}, alive={self.alive})"


class DeadlineQueue:
    """Deadlines in (due, order set) order; see the module docstring."""

    def __init__(self) -> None:
        # Buckets after the current one, by int(due), and a heap of their
        # keys. int() truncates towards zero, which still never puts a
        # later due in an earlier bucket.
        self._buckets: dict[int, list[Deadline]] = {}
        self._keys: list[int] = []
        # The current bucket, and every deadline set later with a key up
        # to its key: (due, place, entry), places counting on from the
        # bucket's length so that they keep the order deadlines were set.
        self._current: list[tuple[float, int, Deadline]] = []
        self._current_key: int | None = None
        self._place = 0
        self._alive = 0

    def __len__(self) -> int:
        """The number of live (not cancelled, not fired) deadlines."""
        return self._alive

    def push(self, due: float, kind: str, ref: Any) -> Deadline:
        """Set a deadline at ``due`` (seconds, finite).

        Raises:
            ValueError: ``due`` is infinite or not a number.
        """
        entry = Deadline(due, kind, ref)
        try:
            key = int(due)
        except (OverflowError, ValueError):
            raise ValueError(f"a deadline must be a finite time, not {due!r}") from None
        current = self._current_key
        if current is not None and key <= current:
            heapq.heappush(self._current, (due, self._place, entry))
            self._place += 1
        else:
            bucket = self._buckets.get(key)
            if bucket is None:
                self._buckets[key] = [entry]
                heapq.heappush(self._keys, key)
            else:
                bucket.append(entry)
        self._alive += 1
        return entry

    def cancel(self, entry: Deadline) -> None:
        if entry.alive:
            entry.alive = False
            self._alive -= 1

    def _head(self) -> tuple[float, int, Deadline] | None:
        """The earliest live deadline, making the next bucket current when
        the current one has none left."""
        current = self._current
        while True:
            while current and not current[0][2].alive:
                heapq.heappop(current)
            if current:
                return current[0]
            if not self._keys:
                self._current_key = None
                return None
            key = heapq.heappop(self._keys)
            bucket = self._buckets.pop(key)
            current[:] = [(e.due, i, e) for i, e in enumerate(bucket) if e.alive]
            heapq.heapify(current)
            self._current_key = key
            self._place = len(bucket)

    def peek_due(self) -> float | None:
        """The due time of the earliest live deadline, or None."""
        head = self._head()
        return None if head is None else head[0]

    def pop_due(self, now: float) -> Deadline | None:
        """Remove and return the earliest live deadline due at or before now."""
        head = self._head()
        if head is None or head[0] > now:
            return None
        heapq.heappop(self._current)
        entry = head[2]
        entry.alive = False
        self._alive -= 1
        return entry
