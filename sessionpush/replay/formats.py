"""Loaders that turn recorded clickstreams into one stream of events.

A replay drives the engine with what real shops recorded. Each supported
format is read line by line (the files can be large, and a bad line should
be reported where it is), mapped to the engine's event vocabulary (``view``,
``cart``, ``purchase``, ...) and sorted by time with a stable sort, so that
events recorded in the same second keep the order the shop logged them in.

Sessions follow the live server's rule: a user who is idle for more than
:data:`SESSION_GAP` seconds has ended the session. Data without session ids
is split by that gap; recorded session ids are kept but split at the same
gap, because the live server would have ended such a session by its idle
timeout and started a new one.

Formats:

``rees46``
    The REES46 / Open CDP e-commerce CSV (``event_time, event_type,
    product_id, category_id, category_code, brand, price, user_id,
    user_session``).
``otto``
    The OTTO recommender data set's JSON lines (one shopper per line, with
    ``aid``, ``ts`` in epoch milliseconds and ``type``). An OTTO "session"
    is a whole shopper history, so it becomes the user id.
``taobao``
    The Taobao UserBehavior CSV without a header (``user_id, item_id,
    category_id, behavior, epoch_seconds``).
``jsonl``
    Our own format, one object per line: ``{"ts": <epoch seconds or an
    ISO-8601 string>, "user": str, "session": str (optional), "name": str,
    "props": {...} (optional)}``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import msgspec

from sessionpush.errors import SessionpushError

__all__ = [
    "FORMATS",
    "SESSION_GAP",
    "RecordedEvent",
    "ReplayFormatError",
    "gap_sessions",
    "group_sessions",
    "load_events",
    "split_recorded_sessions",
]

#: Idle seconds after which the live server ends a session. A gap of exactly
#: this long still belongs to the same session; only a longer one splits.
SESSION_GAP = 1800.0


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded event, in the engine's vocabulary.

    Attributes:
        ts: When it happened, UTC seconds since the epoch.
        user: The user id.
        session: The session id after the idle-gap split.
        name: The event name (``view``, ``cart``, ``purchase``, ...).
        props: The event's properties (``product_id``, ``price``, ...).
    """

    ts: float
    user: str
    session: str
    name: str
    props: dict[str, Any] = {}


class ReplayFormatError(SessionpushError):
    """A recorded file could not be read: names the file, line and problem."""

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {problem}")


class _Row(NamedTuple):
    """An event before sessions are assigned.

    ``session`` is the recorded session id, or None where the data has none.
    """

    ts: float
    user: str
    session: str | None
    name: str
    props: dict[str, Any]


class _BadLine(Exception):
    """Raised by the per-line parsers, which do not know where they are."""


@contextmanager
def _at(path: Path, line: int) -> Iterator[None]:
    try:
        yield
    except _BadLine as exc:
        raise ReplayFormatError(path, line, str(exc)) from exc


# --- session assignment -------------------------------------------------------


def _split(
    points: Sequence[tuple[float, str]],
    name: Callable[[str, int], str],
    gap: float,
) -> list[str]:
    # One pass in time order: each key remembers its last time and how many
    # parts it has had, and a gap longer than ``gap`` opens the next part.
    last: dict[str, tuple[float, int]] = {}
    out: list[str] = []
    previous = -math.inf
    for ts, key in points:
        if ts < previous:
            raise ValueError(f"points must be sorted by time: {ts} after {previous}")
        previous = ts
        seen = last.get(key)
        if seen is None:
            part = 1
        elif ts - seen[0] > gap:
            part = seen[1] + 1
        else:
            part = seen[1]
        last[key] = (ts, part)
        out.append(name(key, part))
    return out


def gap_sessions(
    points: Sequence[tuple[float, str]], gap: float = SESSION_GAP
) -> list[str]:
    """Split each user's events into sessions at idle gaps.

    Args:
        points: ``(ts, user)`` pairs sorted by time.
        gap: Two consecutive events of a user more than this many seconds
            apart fall into different sessions.

    Returns:
        The session id of each point, ``f"{user}-{n}"`` with ``n`` counting
        from 1 per user.

    Raises:
        ValueError: If the points are not sorted by time.
    """
    return _split(points, lambda user, n: f"{user}-{n}", gap)


def split_recorded_sessions(
    points: Sequence[tuple[float, str]], gap: float = SESSION_GAP
) -> list[str]:
    """Split recorded sessions where the live server would have ended them.

    Args:
        points: ``(ts, session_id)`` pairs sorted by time.
        gap: Idle seconds after which the live server ends a session.

    Returns:
        The session id of each point: the recorded id for the first part,
        then ``f"{sid}~2"``, ``f"{sid}~3"``, ... after each longer gap.

    Raises:
        ValueError: If the points are not sorted by time.
    """
    return _split(points, lambda sid, n: sid if n == 1 else f"{sid}~{n}", gap)


def _assign_sessions(rows: list[_Row]) -> list[RecordedEvent]:
    # Rows are already sorted by time. Recorded and missing session ids are
    # split separately; a jsonl file may mix both.
    recorded = [(r.ts, r.session) for r in rows if r.session is not None]
    missing = [(r.ts, r.user) for r in rows if r.session is None]
    recorded_ids = iter(split_recorded_sessions(recorded))
    gap_ids = iter(gap_sessions(missing))
    return [
        RecordedEvent(
            ts=r.ts,
            user=r.user,
            session=next(gap_ids) if r.session is None else next(recorded_ids),
            name=r.name,
            props=r.props,
        )
        for r in rows
    ]


def group_sessions(events: Iterable[RecordedEvent]) -> dict[str, list[RecordedEvent]]:
    """Group events by session id.

    Sessions appear in the order of their first event and keep their events
    in the order given (time order, for the output of :func:`load_events`).
    """
    sessions: dict[str, list[RecordedEvent]] = {}
    for event in events:
        sessions.setdefault(event.session, []).append(event)
    return sessions


# --- per-format line parsers --------------------------------------------------

_REES46_COLUMNS = [
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
]
_REES46_NAMES = frozenset({"view", "cart", "purchase", "remove_from_cart"})
_OTTO_NAMES = {"clicks": "view", "carts": "cart", "orders": "purchase"}
_TAOBAO_NAMES = {"pv": "view", "cart": "cart", "buy": "purchase", "fav": "favorite"}


def _int_string(value: str, column: str) -> str:
    # REES46 ids are 64-bit integers: kept as the digits themselves, because
    # a float would round category ids such as 2053013552326770905.
    if not value.isdigit():
        raise _BadLine(f"{column} must be a non-negative integer, got {value!r}")
    return value


def _finite_float(value: str, column: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _BadLine(f"{column} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise _BadLine(f"{column} must be finite, got {value!r}")
    return number


def _int(value: str, column: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _BadLine(f"{column} must be an integer, got {value!r}") from None


def _csv_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    # line_num is the physical line the record ends on, not a record count,
    # so the number reported is one an editor can jump to.
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        while True:
            try:
                fields = next(reader, None)
            except csv.Error as exc:
                raise ReplayFormatError(path, reader.line_num, str(exc)) from exc
            except UnicodeDecodeError as exc:
                # Decoding happens a buffer at a time, ahead of the lines.
                raise ReplayFormatError(path, None, f"not UTF-8: {exc}") from exc
            if fields is None:
                return
            yield reader.line_num, fields


def _rees46_rows(path: Path) -> Iterator[_Row]:
    lines = _csv_lines(path)
    first = next(lines, None)
    if first is None or first[1] != _REES46_COLUMNS:
        raise ReplayFormatError(
            path, 1, f"expected the header {','.join(_REES46_COLUMNS)}"
        )
    for number, fields in lines:
        with _at(path, number):
            row = _rees46_row(fields)
        yield row


def _rees46_row(fields: list[str]) -> _Row:
    if len(fields) != len(_REES46_COLUMNS):
        raise _BadLine(f"expected 9 columns, got {len(fields)}")
    time_, type_, product, category, code, brand, price, user, session = fields
    try:
        when = datetime.strptime(time_, "%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        raise _BadLine(
            f"event_time must look like '2019-10-01 00:00:00 UTC', got {time_!r}"
        ) from None
    if type_ not in _REES46_NAMES:
        raise _BadLine(
            f"event_type must be one of {', '.join(sorted(_REES46_NAMES))}, "
            f"got {type_!r}"
        )
    if not user:
        raise _BadLine("user_id is empty")
    if not session:
        raise _BadLine("user_session is empty")
    props: dict[str, Any] = {
        "product_id": _int_string(product, "product_id"),
        "category_id": _int_string(category, "category_id"),
    }
    if code:
        props["category_code"] = code
    if brand:
        props["brand"] = brand
    props["price"] = _finite_float(price, "price")
    return _Row(when.replace(tzinfo=UTC).timestamp(), user, session, type_, props)


class _OttoEvent(msgspec.Struct, forbid_unknown_fields=True):
    aid: int
    ts: int
    type: Literal["clicks", "carts", "orders"]


class _OttoSession(msgspec.Struct, forbid_unknown_fields=True):
    session: int
    events: list[_OttoEvent]


_T = TypeVar("_T")
_otto_decoder = msgspec.json.Decoder(_OttoSession)


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    # Bytes, not text: msgspec checks the UTF-8 itself, line by line, so a
    # bad byte is reported on its own line.
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            # Blank lines (a trailing newline, a hand-edited file) carry no
            # event, so they are skipped rather than reported.
            if line.strip():
                yield number, line


def _decode(decoder: msgspec.json.Decoder[_T], line: bytes) -> _T:
    try:
        return decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise _BadLine(str(exc)) from exc


def _otto_rows(path: Path) -> Iterator[_Row]:
    for number, line in _lines(path):
        with _at(path, number):
            rows = _otto_line(line)
        yield from rows


def _otto_line(line: bytes) -> list[_Row]:
    shopper = _decode(_otto_decoder, line)
    user = str(shopper.session)
    return [
        _Row(e.ts / 1000, user, None, _OTTO_NAMES[e.type], {"product_id": e.aid})
        for e in shopper.events
    ]


def _taobao_rows(path: Path) -> Iterator[_Row]:
    for number, fields in _csv_lines(path):
        with _at(path, number):
            row = _taobao_row(fields)
        yield row


def _taobao_row(fields: list[str]) -> _Row:
    if len(fields) != 5:
        raise _BadLine(
            "expected 5 columns (user_id,item_id,category_id,behavior,"
            f"epoch_seconds), got {len(fields)}"
        )
    user, item, category, behavior, ts = fields
    name = _TAOBAO_NAMES.get(behavior)
    if name is None:
        raise _BadLine(
            f"behavior must be one of {', '.join(_TAOBAO_NAMES)}, got {behavior!r}"
        )
    if not user:
        raise _BadLine("user_id is empty")
    props = {
        "product_id": _int(item, "item_id"),
        "category_id": _int(category, "category_id"),
    }
    return _Row(float(_int(ts, "epoch_seconds")), user, None, name, props)


class _JsonlEvent(msgspec.Struct, forbid_unknown_fields=True):
    ts: float | str
    user: str
    name: str
    session: str | None = None
    props: dict[str, Any] = {}


_jsonl_decoder = msgspec.json.Decoder(_JsonlEvent)


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    for number, line in _lines(path):
        with _at(path, number):
            row = _jsonl_row(line)
        yield row


def _jsonl_row(line: bytes) -> _Row:
    event = _decode(_jsonl_decoder, line)
    if isinstance(event.ts, str):
        try:
            when = datetime.fromisoformat(event.ts)
        except ValueError:
            raise _BadLine(
                f"ts must be epoch seconds or ISO-8601, got {event.ts!r}"
            ) from None
        # A time without an offset is taken as UTC, the engine's only clock.
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        ts = when.timestamp()
    else:
        ts = event.ts
    # Epoch seconds between 1970 and 9999: what ISO-8601 UTC can print.
    if not math.isfinite(ts) or not 0 <= ts < 253_402_300_800:
        raise _BadLine(f"ts must be epoch seconds from 1970 to 9999, got {ts}")
    if not event.user:
        raise _BadLine("user is empty")
    if not event.name:
        raise _BadLine("name is empty")
    if event.session == "":
        raise _BadLine("session is empty: leave it out to split by idle gaps")
    return _Row(ts, event.user, event.session, event.name, event.props)


# --- entry point --------------------------------------------------------------

_Reader = Callable[[Path], Iterator[_Row]]

_READERS: dict[str, _Reader] = {
    "rees46": _rees46_rows,
    "otto": _otto_rows,
    "taobao": _taobao_rows,
    "jsonl": _jsonl_rows,
}

#: The accepted values of ``fmt``.
FORMATS = tuple(_READERS)


def load_events(path: str | Path, fmt: str) -> list[RecordedEvent]:
    """Read a recorded clickstream into time-ordered events with sessions.

    Args:
        path: The file to read.
        fmt: One of :data:`FORMATS` (``rees46``, ``otto``, ``taobao``,
            ``jsonl``).

    Returns:
        The events sorted by ``ts``; events with the same ``ts`` keep their
        order in the file.

    Raises:
        ReplayFormatError: If ``fmt`` is unknown, or a line of the file is
            malformed (the error names the file and line).
        OSError: If the file cannot be opened.
    """
    reader = _READERS.get(fmt)
    if reader is None:
        raise ReplayFormatError(
            path, None, f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}"
        )
    path = Path(path)
    rows = list(reader(path))
    # list.sort is stable: ties keep file order, which is the shop's order.
    rows.sort(key=lambda row: row.ts)
    return _assign_sessions(rows)
