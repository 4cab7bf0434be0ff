"""What a client holds until the gateway has it: the sans-I/O core.

Frames wait in two lines. ``unsent``: queued by the app, not yet written
to any socket (offline, or waiting for the batch). ``inflight``: written,
not yet answered. The gateway answers every frame but ``hello`` and
``end`` with exactly one ``ack`` or ``error``, in the order the frames
came, so the answer always belongs to the oldest frame in flight.

Events are numbered (``seq``) when queued, from 1 and never again within
the client, so a number names one event across reconnects and sessions.
After a reconnect :meth:`SendBuffer.resume` puts what was in flight back
in front of the unsent frames, minus what ``welcome`` says the gateway
already applied; the gateway recognises any other copy by its number
(``docs/protocol.md``, "Sequence numbers").

Both lines together hold at most ``limit`` frames; past it the oldest
event is dropped and counted in :attr:`SendBuffer.dropped` (other frames,
such as ``identify``, are kept: they are few and matter more).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Outgoing", "SendBuffer"]


@dataclass(slots=True)
class Outgoing:
    """One frame as the client holds it."""

    frame: dict[str, Any]
    #: The event's sequence number; None for other frames.
    seq: int | None = None


@dataclass(slots=True)
class SendBuffer:
    """The two lines of frames; see the module docstring."""

    limit: int = 1000
    unsent: deque[Outgoing] = field(default_factory=deque)
    inflight: deque[Outgoing] = field(default_factory=deque)
    #: Events dropped because the buffer was full, oldest first.
    dropped: int = 0
    #: Frames the gateway refused with an error, with that error.
    refused: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    next_seq: int = 1

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"the buffer limit must be at least 1, not {self.limit}")

    def __len__(self) -> int:
        return len(self.unsent) + len(self.inflight)

    @property
    def settled(self) -> bool:
        """Nothing waits to be sent or answered."""
        return not self.unsent and not self.inflight

    def add(self, frame: dict[str, Any], *, numbered: bool = False) -> int | None:
        """Queue a frame; an event gets the next ``seq`` (returned)."""
        seq = None
        if numbered:
            seq = self.next_seq
            self.next_seq += 1
            frame["seq"] = seq
        self.unsent.append(Outgoing(frame, seq))
        while len(self) > self.limit and self._drop_oldest_event():
            pass
        return seq

    def _drop_oldest_event(self) -> bool:
        for line in (self.inflight, self.unsent):
            for i, item in enumerate(line):
                if item.seq is not None:
                    del line[i]
                    self.dropped += 1
                    return True
        return False

    def take(self, count: int) -> list[dict[str, Any]]:
        """Move up to ``count`` frames from unsent to in flight; the frames
        to write now, in order."""
        frames: list[dict[str, Any]] = []
        while self.unsent and len(frames) < count:
            item = self.unsent.popleft()
            self.inflight.append(item)
            frames.append(item.frame)
        return frames

    def answered(self, answer: dict[str, Any]) -> Outgoing | None:
        """An ``ack`` or ``error`` came: it answers the oldest frame in
        flight, which is done with (an error puts it in ``refused``)."""
        if not self.inflight:
            return None
        item = self.inflight.popleft()
        if answer.get("type") == "error":
            self.refused.append((item.frame, answer))
        return item

    def resume(self, applied: int | None) -> None:
        """A new socket was welcomed: send again what was in flight.

        ``applied`` is the ``seq`` of ``welcome``: the highest number the
        gateway applied in this session; events up to it are not sent
        again. Frames without a number are sent again: each of them is
        idempotent (identify, consent, subscribe).
        """
        again = [
            item
            for item in self.inflight
            if applied is None or item.seq is None or item.seq > applied
        ]
        self.inflight.clear()
        self.unsent.extendleft(reversed(again))
