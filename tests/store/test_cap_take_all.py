"""Several caps of one send are taken together or not at all."""

from __future__ import annotations

from sessionpush.store.sqlite import SQLiteStore


async def test_all_caps_with_room_are_counted_together() -> None:
    store = SQLiteStore(":memory:")
    await store.open()
    caps = [("session", 2, float("-inf")), ("user-day", 5, 0.0)]
    assert await store.cap_take_all(caps, 10.0) is None
    assert await store.cap_count("session", float("-inf")) == 1
    assert await store.cap_count("user-day", 0.0) == 1
    await store.close()


async def test_a_full_second_cap_leaves_the_first_untouched() -> None:
    store = SQLiteStore(":memory:")
    await store.open()
    assert await store.cap_take("user-day", 1, 0.0, 5.0)
    caps = [("session", 3, float("-inf")), ("user-day", 1, 0.0)]
    assert await store.cap_take_all(caps, 10.0) == 1
    assert await store.cap_count("session", float("-inf")) == 0
    assert await store.cap_count("user-day", 0.0) == 1
    await store.close()
