"""In-memory deadlines: grace periods, idle timeouts, absence windows, waits.

A pending deadline is a slot in four parallel arrays (due, kind, ref and the
handle that owns the slot) plus one place in the bucket of its second
(``int(due)``). It is not an object of its own: CPython's cyclic garbage
collector walks every tracked object on each full collection, and setting a
million deadlines as a million small objects both triggered those
collections and made each one walk the million: 0.7 to 1.1 µs of the
collector per schedule plus cancel, measured, more than the queue's own
work. Here setting a deadline allocates only its handle, an ``int``, which
the collector neither tracks nor counts towards its next collection.

A handle is ``stamp << 32 | slot``: the slot says where the deadline lives,
and the stamp, counting up with every deadline set, says which of the
deadlines that ever used the slot it is. A slot is reused as soon as its
deadline fires or is cancelled, so a stale handle (the deadline fired, or
was cancelled already) no longer matches its slot and cancelling it does
nothing. Cancelling is O(1): the slot is freed at once and the bucket's
copy of the handle is dropped when its bucket becomes current.

Only the earliest bucket is ordered, when it becomes current: its live
deadlines go into a heap by (due, handle). Handles grow in the order the
deadlines were set, so two deadlines due at the same instant always fire in
that order: replays depend on it to be deterministic.
"""

from __future__ import annotations

import heapq
from array import array
from typing import Any, NamedTuple, TypeAlias

__all__ = ["Deadline", "DeadlineQueue", "Due"]

#: A handle on a pending deadline, as :meth:`DeadlineQueue.push` returns it.
Deadline: TypeAlias = int

_SLOT_BITS = 32
_SLOT = (1 << _SLOT_BITS) - 1
_STAMP = 1 << _SLOT_BITS


class Due(NamedTuple):
    """A deadline that came due: what :meth:`DeadlineQueue.pop_due` returns."""

    handle: Deadline
    due: float
    kind: str
    ref: Any


class DeadlineQueue:
    """Deadlines in (due, order set) order; see the module docstring."""

    __slots__ = (
        "_buckets",
        "_current",
        "_current_key",
        "_due",
        "_free",
        "_handle",
        "_keys",
        "_kind",
        "_ref",
        "_stamp",
    )

    def __init__(self) -> None:
        # Per slot; a free slot has handle 0 (no handle is 0) and ref None,
        # so that a fired or cancelled deadline keeps nothing alive. The
        # slots keep their high-water count, so the free ones are an array
        # (8 bytes each) rather than a list of int objects (36).
        self._due = array("d")
        self._kind: list[str] = []
        self._ref: list[Any] = []
        self._handle: list[int] = []
        self._free = array("q")
        self._stamp = _STAMP
        # Handles of the buckets after the current one, by int(due), and a
        # heap of their keys. int() truncates towards zero, which still
        # never puts a later due in an earlier bucket.
        self._buckets: dict[int, list[int]] = {}
        self._keys: list[int] = []
        # The current bucket, and every deadline set later with a key up
        # to its key: (due, handle).
        self._current: list[tuple[float, int]] = []
        self._current_key: int | None = None

    def __len__(self) -> int:
        """The number of live (not cancelled, not fired) deadlines."""
        return len(self._handle) - len(self._free)

    def push(self, due: float, kind: str, ref: Any) -> Deadline:
        """Set a deadline at ``due`` (seconds, finite); returns its handle.

        Raises:
            ValueError: ``due`` is infinite or not a number.
        """
        try:
            key = int(due)
        except (OverflowError, ValueError):
            raise ValueError(f"a deadline must be a finite time, not {due!r}") from None
        free = self._free
        if free:
            slot = free.pop()
            handle = self._stamp | slot
            self._due[slot] = due
            self._kind[slot] = kind
            self._ref[slot] = ref
            self._handle[slot] = handle
        else:
            slot = len(self._handle)
            if slot > _SLOT:
                raise OverflowError(f"more than {_SLOT:,} deadlines pending")
            handle = self._stamp | slot
            self._due.append(due)
            self._kind.append(kind)
            self._ref.append(ref)
            self._handle.append(handle)
        self._stamp += _STAMP

        current = self._current_key
        if current is not None and key <= current:
            heapq.heappush(self._current, (due, handle))
        else:
            bucket = self._buckets.get(key)
            if bucket is None:
                self._buckets[key] = [handle]
                heapq.heappush(self._keys, key)
            else:
                bucket.append(handle)
        return handle

    def cancel(self, handle: Deadline) -> None:
        """Cancel a deadline; nothing happens if it fired or was cancelled."""
        slot = handle & _SLOT
        handles = self._handle
        if handles[slot] == handle:
            handles[slot] = 0
            self._ref[slot] = None
            self._free.append(slot)

    def due(self, handle: Deadline) -> float | None:
        """When a pending deadline is due; None if it fired or was cancelled."""
        slot = handle & _SLOT
        return self._due[slot] if self._handle[slot] == handle else None

    def ref(self, handle: Deadline) -> Any:
        """The ``ref`` a pending deadline was set with; None if it is gone."""
        slot = handle & _SLOT
        return self._ref[slot] if self._handle[slot] == handle else None

    def _release(self, slot: int) -> None:
        self._handle[slot] = 0
        self._ref[slot] = None
        self._free.append(slot)

    def _head(self) -> tuple[float, int] | None:
        """The earliest live deadline, making the next bucket current when
        the current one has none left."""
        current = self._current
        handles = self._handle
        while True:
            while current and handles[current[0][1] & _SLOT] != current[0][1]:
                heapq.heappop(current)
            if current:
                return current[0]
            if not self._keys:
                self._current_key = None
                return None
            key = heapq.heappop(self._keys)
            dues = self._due
            current[:] = [
                (dues[h & _SLOT], h)
                for h in self._buckets.pop(key)
                if handles[h & _SLOT] == h
            ]
            heapq.heapify(current)
            self._current_key = key

    def peek_due(self) -> float | None:
        """The due time of the earliest live deadline, or None."""
        head = self._head()
        return None if head is None else head[0]

    def pop_due(self, now: float) -> Due | None:
        """Remove and return the earliest live deadline due at or before now."""
        head = self._head()
        if head is None or head[0] > now:
            return None
        heapq.heappop(self._current)
        due, handle = head
        slot = handle & _SLOT
        fired = Due(handle, due, self._kind[slot], self._ref[slot])
        self._release(slot)
        return fired
