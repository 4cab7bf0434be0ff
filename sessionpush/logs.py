"""Log output: JSON lines for machines, plain lines for people.

The package only names loggers (``sessionpush.gateway``, ``.engine``,
``.store``, ``.transports``, ``.cli``) and passes the facts of a line as
``extra`` fields; the CLI is the one place that attaches a handler, with
:func:`configure`. A process whose standard error is not a terminal (a
service manager, a container) logs JSON, one object a line, so that the
facts can be queried without parsing sentences.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import msgspec

__all__ = ["JsonFormatter", "configure", "fields"]

# The attributes every LogRecord has; anything else came in through extra.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields a log call attached to ``record``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, extra fields.

    Extra fields that are not JSON (a path, an exception object) are written
    as their ``str``, so that a log line never fails to be written.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **fields(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(line, enc_hook=str).decode()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is written, so that a
    caller who swaps it (a test capturing output) never leaves the handler
    holding a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def configure(level: str, fmt: str = "auto", stream: IO[str] | None = None) -> None:
    """Attach the one handler of the process to the root logger.

    ``fmt`` is ``json``, ``text`` or ``auto`` (JSON unless ``stream`` is a
    terminal).
    """
    out = sys.stderr if stream is None else stream
    if fmt == "auto":
        fmt = "text" if out.isatty() else "json"
    handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    # websockets' Sans-I/O layer under the session socket says "connection
    # open" and "closed" at INFO for every socket (and every frame at
    # DEBUG): two lines per visitor drown the gateway's own. Lower this
    # logger's level again to see them.
    logging.getLogger("sessionpush.gateway.websocket").setLevel(logging.WARNING)
