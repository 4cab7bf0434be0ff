"""Records with real-looking values for the store tests."""

from __future__ import annotations

from typing import Any

from sessionpush.store.base import Decision, GoalEvent, PendingTimer


def timer(timer_id: str, **fields: Any) -> PendingTimer:
    values: dict[str, Any] = {
        "app": "shop",
        "user": "u1",
        "session": "s1",
        "rule": "cart",
        "due": 1000.0,
        "triggered_at": 100.0,
    }
    values.update(fields)
    return PendingTimer(timer_id=timer_id, **values)


def decision(**fields: Any) -> Decision:
    values: dict[str, Any] = {
        "app": "shop",
        "rule": "cart",
        "user": "u1",
        "session": "s1",
        "decision": "sent",
        "reason": "all checks passed",
        "at": 2000.0,
        "channel": "webpush",
        "triggered_at": 1000.0,
    }
    values.update(fields)
    return Decision(**values)


def goal(**fields: Any) -> GoalEvent:
    values: dict[str, Any] = {
        "app": "shop",
        "rule": "cart",
        "user": "u1",
        "session": "s1",
        "at": 1700000400.0,
    }
    values.update(fields)
    return GoalEvent(**values)
