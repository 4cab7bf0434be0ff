"""The outbox: every push as one JSON line in a file.

It is the push channel when no provider is configured, so that a fresh
install shows what it would send with nothing set up, and it is what tests
and replays read. Each line is written and flushed whole, so a reader that
tails the file never sees half a message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import msgspec

from sessionpush.engine.clock import iso
from sessionpush.store.base import Subscription
from sessionpush.transports.base import DeliveryResult, OutboundMessage

__all__ = ["Outbox"]

_encoder = msgspec.json.Encoder()


class Outbox:
    """Appends each message to ``path`` (``-`` is standard output)."""

    name = "outbox"

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)
        self._file: IO[bytes] | None = None

    def _open(self) -> IO[bytes] | None:
        if self._file is None and self.path is not None:
            if str(self.path) == "-":
                import sys

                self._file = sys.stdout.buffer
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "ab")  # noqa: SIM115 - kept open
        return self._file

    async def send(
        self, message: OutboundMessage, subscription: Subscription | None
    ) -> DeliveryResult:
        out = self._open()
        if out is None:
            return DeliveryResult(ok=True, detail="outbox disabled")
        record = msgspec.structs.asdict(message)
        record["at"] = iso(message.at)
        if subscription is not None:
            record["device"] = subscription.device_id
        out.write(_encoder.encode(record) + b"\n")
        out.flush()
        return DeliveryResult(ok=True, detail=f"written to {self.path}")

    async def close(self) -> None:
        if self._file is not None and str(self.path) != "-":
            self._file.close()
        self._file = None
