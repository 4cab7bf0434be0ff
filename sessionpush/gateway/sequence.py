"""Sequence numbers: each event of a session is applied at most once.

A client numbers the events of a session (``seq``) and keeps each one until
an ``ack`` covers it; after a reconnect it sends again whatever was not
covered. The gateway keeps, per session, the highest number it applied, so
that a copy is recognised and acknowledged without reaching the rules:

- ``seq`` above the highest applied: applied, and it becomes the highest.
  Numbers skipped on the way (a gap) are never applied later: a late frame
  with a skipped number counts as a copy. Events reach the rules in the
  order they were numbered, never out of it.
- ``seq`` at or below the highest applied: a copy; not applied, answered
  with an ``ack`` of the highest applied.
- no ``seq``: applied every time it comes (the client does not resend).

The number lives on the session, so it survives reconnects inside the grace
period and goes with the session when it ends. ``welcome`` carries it, so a
resuming client knows where the gateway stands before it resends.
"""

from __future__ import annotations

import logging
from typing import Any

from sessionpush.engine.session import Session

__all__ = ["ack_frame", "admit", "last_applied"]

log = logging.getLogger("sessionpush.gateway")


def last_applied(session: Session) -> int | None:
    """The highest ``seq`` applied in ``session`` (None: none yet)."""
    return session.applied_seq


def admit(session: Session, seq: int | None) -> bool:
    """Whether an event numbered ``seq`` is to be applied; if so it is
    recorded as applied now, before the rules run, so that a copy arriving
    while they run is not applied a second time."""
    if seq is None:
        return True
    last = session.applied_seq
    if last is not None and seq <= last:
        log.debug("session %s: seq %d is a copy (up to %d)", session.id, seq, last)
        return False
    if last is not None and seq > last + 1:
        log.debug("session %s: seq %d skips %d-%d", session.id, seq, last + 1, seq - 1)
    session.applied_seq = seq
    return True


def ack_frame(session: Session | None, seq: int | None) -> dict[str, Any]:
    """The answer to an event numbered ``seq``: the highest number applied,
    which covers ``seq`` whether it was applied now or before."""
    if seq is None or session is None:
        return {"type": "ack", "seq": seq}
    return {"type": "ack", "seq": session.applied_seq}
