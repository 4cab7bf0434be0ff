"""Sessions: one visit of one user, across reconnects and tabs.

A session begins with ``hello`` and ends exactly once, at the first of: an
explicit ``end``; the last socket closing with no resume inside the grace
period; no event for the idle timeout. Its lifecycle is a small state
machine; an impossible transition is a bug and raises.

The same object carries what rules read while matching (``seen``,
``last``, counters, absence windows), kept flat in slots because it is
touched on every event.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessionpush.engine.deadlines import Deadline

__all__ = ["Session", "SessionState", "TransitionError"]


class SessionState(enum.Enum):
    ACTIVE = "active"  # at least one socket attached
    DETACHED = "detached"  # no socket; the grace period runs
    ENDED = "ended"  # final


class TransitionError(RuntimeError):
    """A lifecycle transition that cannot happen: a bug in the caller."""


class Session:
    """One session; see the module docstring."""

    __slots__ = (
        "absence",
        "after_end",
        "app",
        "applied_seq",
        "armed_bound",
        "bound",
        "counts",
        "device",
        "end_reason",
        "ended_at",
        "events",
        "grace",
        "id",
        "idle",
        "idle_next",
        "idle_rule",
        "last",
        "last_at",
        "peers",
        "progress",
        "seen",
        "started_at",
        "state",
        "tally",
        "user",
        "user_attributes",
    )

    def __init__(
        self,
        app: str,
        user: str,
        session_id: str,
        started_at: float,
        device: dict[str, Any],
        user_attributes: dict[str, Any],
    ) -> None:
        self.app = app
        self.user = user
        self.id = session_id
        self.device = device
        self.user_attributes = user_attributes
        self.state = SessionState.ACTIVE
        self.started_at = started_at
        self.last_at = started_at
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.events = 0
        # Only event names that some rule asks about are recorded, so this
        # stays as small as the rule set, whatever the client sends.
        self.seen: set[str] = set()
        self.last: dict[str, dict[str, Any]] = {}
        # Match state is keyed by rule name, not position, so that a reload
        # that reorders the rules hands no state to another rule
        # (``RuleSet.keep_state`` drops the state of rules that changed).
        # rule name -> due time of its open absence window, and the events
        # bound with ``as`` on the way to opening it
        self.absence: dict[str, float] = {}
        self.armed_bound: dict[str, dict[str, Any]] = {}
        # rule name -> per step of a sequence, the latest (time, bindings)
        # that reached it; a step is consumed when the next one takes it
        self.progress: dict[str, list[tuple[float, dict[str, Any]] | None]] = {}
        # rule name -> times of the matches inside a ``N times`` window
        self.counts: dict[str, deque[float]] = {}
        # event name -> how many came, for ``session.count(E)``
        self.tally: dict[str, int] = {}
        # the events bound with ``as`` for the rule being matched right now
        self.bound: dict[str, Any] = {}
        # ``when idle D`` rules: the next one to fire, and its deadline
        self.idle_next = 0
        self.idle_rule: Deadline | None = None
        # triggers of ``wait D after session end`` rules, scheduled at the end
        self.after_end: list[Any] = []
        self.peers: set[Any] = set()
        self.grace: Deadline | None = None
        self.idle: Deadline | None = None
        # the highest event seq applied; read and written only by the
        # gateway's sequence module, kept here to live and die with the
        # session across reconnects
        self.applied_seq: int | None = None

    @property
    def duration(self) -> float:
        """Seconds from the session's start to its latest event."""
        return self.last_at - self.started_at

    def attach(self, peer: Any) -> None:
        if self.state is SessionState.ENDED:
            raise TransitionError(f"session {self.id} has ended; cannot attach")
        self.peers.add(peer)
        self.state = SessionState.ACTIVE

    def detach(self, peer: Any) -> bool:
        """Remove a socket; True when it was the last one (grace begins)."""
        if self.state is not SessionState.ACTIVE or peer not in self.peers:
            raise TransitionError(f"session {self.id}: detach of an unknown socket")
        self.peers.discard(peer)
        if self.peers:
            return False
        self.state = SessionState.DETACHED
        return True

    def end(self, at: float, reason: str) -> None:
        if self.state is SessionState.ENDED:
            raise TransitionError(f"session {self.id} ended twice")
        self.state = SessionState.ENDED
        self.ended_at = at
        self.end_reason = reason

    def __repr__(self) -> str:
        return f"Session({self.app}/{self.user}/{self.id}, {self.state.value})"
