"""The client's send buffer, without sockets: numbering, answers, resume,
and what is dropped when it is full."""

from __future__ import annotations

import pytest

from sessionpush.client import SendBuffer


def event(name: str) -> dict[str, object]:
    return {"type": "event", "name": name, "props": {}}


def test_events_are_numbered_from_one_and_other_frames_are_not() -> None:
    buffer = SendBuffer()
    assert buffer.add(event("view"), numbered=True) == 1
    assert buffer.add({"type": "consent", "granted": True}) is None
    assert buffer.add(event("cart"), numbered=True) == 2
    frames = buffer.take(10)
    assert [f.get("seq") for f in frames] == [1, None, 2]


def test_each_answer_settles_the_oldest_frame_in_flight() -> None:
    buffer = SendBuffer()
    for name in ("view", "bad", "cart"):
        buffer.add(event(name), numbered=True)
    buffer.take(3)
    buffer.answered({"type": "ack", "seq": 1})
    error = {"type": "error", "code": "too_large", "seq": 2}
    buffer.answered(error)
    assert not buffer.settled
    buffer.answered({"type": "ack", "seq": 3})
    assert buffer.settled
    assert buffer.refused == [({**event("bad"), "seq": 2}, error)]


def test_resume_sends_again_what_the_gateway_had_not_applied_first() -> None:
    buffer = SendBuffer()
    for name in ("a", "b", "c", "d"):
        buffer.add(event(name), numbered=True)
    buffer.take(3)  # a, b, c written; the socket dies before any ack
    buffer.resume(applied=1)
    assert [f["name"] for f in buffer.take(10)] == ["b", "c", "d"]


def test_resume_into_a_new_session_sends_everything_in_flight_again() -> None:
    buffer = SendBuffer()
    buffer.add(event("a"), numbered=True)
    buffer.add({"type": "identify", "user": "alice"})
    buffer.take(2)
    buffer.resume(applied=None)
    assert [f["type"] for f in buffer.take(10)] == ["event", "identify"]


def test_a_full_buffer_drops_the_oldest_event_and_counts_it() -> None:
    buffer = SendBuffer(limit=3)
    buffer.add({"type": "identify", "user": "alice"})
    for name in ("a", "b", "c", "d"):
        buffer.add(event(name), numbered=True)
    assert buffer.dropped == 2
    assert [(f["type"], f.get("name")) for f in buffer.take(10)] == [
        ("identify", None),
        ("event", "c"),
        ("event", "d"),
    ]


def test_a_buffer_of_no_frames_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1, not 0"):
        SendBuffer(limit=0)
