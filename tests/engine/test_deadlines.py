"""The deadline queue: due order, ties in insertion order, O(1) cancel."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sessionpush.engine.deadlines import DeadlineQueue


def test_deadlines_due_at_the_same_time_fire_in_the_order_they_were_set() -> None:
    queue = DeadlineQueue()
    for name in "abc":
        queue.push(5.0, "k", name)
    queue.push(1.0, "k", "first")
    popped = [queue.pop_due(10.0) for _ in range(4)]
    assert [e.ref for e in popped if e is not None] == ["first", "a", "b", "c"]
    assert queue.pop_due(10.0) is None


def test_nothing_pops_before_it_is_due_and_cancelled_entries_never_pop() -> None:
    queue = DeadlineQueue()
    early = queue.push(1.0, "k", "early")
    queue.push(2.0, "k", "late")
    assert queue.pop_due(0.5) is None
    queue.cancel(early)
    queue.cancel(early)
    assert len(queue) == 1
    assert queue.peek_due() == 2.0
    entry = queue.pop_due(2.0)
    assert entry is not None and entry.ref == "late"
    assert len(queue) == 0


@given(
    st.lists(st.tuples(st.integers(0, 50), st.booleans()), max_size=60),
    st.integers(0, 60),
)
def test_the_queue_pops_exactly_the_live_due_entries_in_order(
    entries: list[tuple[int, bool]], now: int
) -> None:
    queue = DeadlineQueue()
    expected = []
    for seq, (due, cancel) in enumerate(entries):
        entry = queue.push(float(due), "k", seq)
        if cancel:
            queue.cancel(entry)
        elif due <= now:
            expected.append((due, seq))
    popped = []
    while (entry := queue.pop_due(float(now))) is not None:
        popped.append((int(entry.due), entry.ref))
    assert popped == sorted(expected)
    assert len(queue) == sum(1 for due, cancel in entries if not cancel and due > now)
