"""The outbox: every push as one JSON line in a file.

It is the push channel when no provider is configured, so that a fresh
install shows what it would send with nothing set up, and it is what tests
and replays read.

Each line goes to the file in one ``write(2)`` on a descriptor opened with
``O_APPEND``: the kernel moves to the end and writes in one step, so a
reader that tails the file never sees half a message, and several
processes of one host may append to one file without mixing their lines.
That shared file is also what makes a timer sent again after a crash
effectively-once: :meth:`Outbox.has_sent` finds the line the crashed
process wrote (see ``docs/deploy.md``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import msgspec

from sessionpush.engine.clock import iso
from sessionpush.store.base import Subscription
from sessionpush.transports.base import DeliveryResult, OutboundMessage

__all__ = ["Outbox"]

_encoder = msgspec.json.Encoder()


class _Id(msgspec.Struct):
    """The one field of a line that :meth:`Outbox.has_sent` reads."""

    id: str


_id_decoder = msgspec.json.Decoder(_Id)


class Outbox:
    """Appends each message to ``path`` (``-`` is standard output)."""

    name = "outbox"

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)
        self._fd: int | None = None

    def _open(self) -> int | None:
        if self._fd is None and self.path is not None:
            if str(self.path) == "-":
                self._fd = -1  # standard output: written through sys.stdout
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
                self._fd = os.open(self.path, flags, 0o644)
        return self._fd

    async def send(
        self, message: OutboundMessage, subscription: Subscription | None
    ) -> DeliveryResult:
        fd = self._open()
        if fd is None:
            return DeliveryResult(ok=True, detail="outbox disabled")
        record = msgspec.structs.asdict(message)
        record["at"] = iso(message.at)
        if subscription is not None:
            record["device"] = subscription.device_id
        line = _encoder.encode(record) + b"\n"
        if str(self.path) == "-":
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
            return DeliveryResult(ok=True, detail="written to standard output")
        # One write: a short write to a regular file happens only when the
        # disk is full, and then the line is lost either way.
        os.write(fd, line)
        return DeliveryResult(ok=True, detail=f"written to {self.path}")

    def has_sent(self, message_id: str) -> bool:
        """Whether a line of the file carries ``message_id``.

        It reads the whole file, so it is for the rare resend of a timer
        whose earlier claimant died mid-send, not for every message.
        """
        if self.path is None or str(self.path) == "-" or not self.path.exists():
            return False
        needle = message_id.encode()
        with self.path.open("rb") as lines:
            for line in lines:
                # The substring test skips decoding nearly every line.
                if (
                    needle in line
                    and line.endswith(b"\n")
                    and _id_decoder.decode(line).id == message_id
                ):
                    return True
        return False

    async def close(self) -> None:
        if self._fd is not None and self._fd >= 0:
            os.close(self._fd)
        self._fd = None
