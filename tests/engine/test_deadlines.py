"""The deadline queue: due order, ties in insertion order, O(1) cancel."""

from __future__ import annotations

import gc
import sys

import pytest
from hypothesis import given, settings
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


# Steps of a random workload: push a deadline (due in quarter seconds, so
# that many share a one-second bucket, and some are negative), cancel the
# n-th entry pushed so far (fired or not), or pop what is due at a time.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(-4, 16)),
        st.tuples(st.just("cancel"), st.integers(0, 60)),
        st.tuples(st.just("pop"), st.integers(-4, 16)),
    ),
    max_size=60,
)


@settings(max_examples=400)
@given(steps)
def test_any_mix_of_pushes_cancels_and_pops_fires_in_due_then_set_order(
    workload: list[tuple[str, int]],
) -> None:
    queue = DeadlineQueue()
    handles: list[int] = []
    dues: list[float] = []
    # The model: live (due, order set) pairs; a plain sort is the spec.
    live: set[tuple[float, int]] = set()
    for step, value in workload:
        if step == "push":
            due = value / 4
            handles.append(queue.push(due, f"kind-{len(dues)}", len(dues)))
            live.add((due, len(dues)))
            dues.append(due)
        elif step == "cancel" and value < len(handles):
            queue.cancel(handles[value])
            live.discard((dues[value], value))
        elif step == "pop":
            now = value / 4
            popped = []
            while (entry := queue.pop_due(now)) is not None:
                assert entry.handle == handles[entry.ref]
                assert entry.kind == f"kind-{entry.ref}"
                popped.append((entry.due, entry.ref))
            expected = sorted(pair for pair in live if pair[0] <= now)
            assert popped == expected
            live -= set(expected)
        assert len(queue) == len(live)
        assert queue.peek_due() == (min(live)[0] if live else None)
        # Handles of fired and cancelled deadlines say so, even once their
        # slot holds a newer deadline.
        pending = {order for _, order in live}
        for order, handle in enumerate(handles):
            if order in pending:
                assert (queue.due(handle), queue.ref(handle)) == (dues[order], order)
            else:
                assert (queue.due(handle), queue.ref(handle)) == (None, None)


def test_a_stale_handle_does_not_cancel_the_deadline_that_reuses_its_slot() -> None:
    queue = DeadlineQueue()
    fired = queue.push(1.0, "k", "fired")
    cancelled = queue.push(2.0, "k", "cancelled")
    entry = queue.pop_due(1.0)
    assert entry is not None and entry.handle == fired
    queue.cancel(cancelled)
    later = [queue.push(3.0, "k", name) for name in ("a", "b")]
    queue.cancel(fired)
    queue.cancel(cancelled)
    assert len(queue) == 2
    assert [queue.ref(handle) for handle in later] == ["a", "b"]
    popped = [queue.pop_due(3.0), queue.pop_due(3.0), queue.pop_due(3.0)]
    assert [e.ref for e in popped if e is not None] == ["a", "b"]


def test_a_fired_or_cancelled_deadline_keeps_no_reference_to_its_ref() -> None:
    queue = DeadlineQueue()
    refs = [object(), object()]
    fired = queue.push(1.0, "k", refs[0])
    cancelled = queue.push(2.0, "k", refs[1])
    queue.pop_due(1.0)
    queue.cancel(cancelled)
    assert queue.ref(fired) is None and queue.ref(cancelled) is None
    assert all(sys.getrefcount(ref) == 3 for ref in refs)  # refs, ref, the call


def test_setting_and_cancelling_deadlines_allocates_no_collected_objects() -> None:
    """A pending deadline is no object the cyclic garbage collector tracks:
    a million of them neither trigger collections nor lengthen them."""
    queue = DeadlineQueue()
    session = object()
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        handles = [
            queue.push(1000.0 + i / 1000, "idle", session) for i in range(10_000)
        ]
        for handle in handles:
            queue.cancel(handle)
        # One list per second of due times (ten here) and the test's own
        # list of handles, where a tracked entry per deadline made 10,000.
        assert gc.get_count()[0] - before < 50
    finally:
        gc.enable()


def test_an_infinite_due_time_is_refused_with_the_value() -> None:
    queue = DeadlineQueue()
    with pytest.raises(ValueError, match="a deadline must be a finite time, not inf"):
        queue.push(float("inf"), "k", None)
    assert len(queue) == 0
