"""Loading recorded clickstreams: counts, order, sessions and errors."""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionpush.replay import formats
from sessionpush.replay.formats import (
    SESSION_GAP,
    RecordedEvent,
    ReplayFormatError,
    gap_sessions,
    group_sessions,
    load_events,
)

REES46 = "rees46-2019oct-head.csv"
OTTO = "otto-sample.jsonl"
TAOBAO = "taobao-slice-20171126.csv"


@pytest.fixture(scope="module")
def rees46(data_dir: Path) -> list[RecordedEvent]:
    return load_events(data_dir / REES46, "rees46")


@pytest.fixture(scope="module")
def otto(data_dir: Path) -> list[RecordedEvent]:
    return load_events(data_dir / OTTO, "otto")


def write_jsonl(path: Path, *lines: dict[str, Any] | str) -> Path:
    """Write one line per item: dicts as JSON, strings verbatim."""
    text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


def names(events: list[RecordedEvent]) -> Counter[str]:
    return Counter(event.name for event in events)


def has(events: list[RecordedEvent], name: str) -> bool:
    return any(event.name == name for event in events)


# --- REES46 ---------------------------------------------------------------------


def test_rees46_loads_every_row_with_its_event_name(
    rees46: list[RecordedEvent],
) -> None:
    assert len(rees46) == 4999
    assert names(rees46) == {"view": 4895, "cart": 50, "purchase": 54}
    assert len({event.user for event in rees46}) == 1747


def test_rees46_splits_the_one_session_with_a_half_hour_gap(
    rees46: list[RecordedEvent],
) -> None:
    sessions = group_sessions(rees46)
    split = [sid for sid in sessions if "~" in sid]

    # 1,898 recorded sessions; exactly one has an idle gap over 30 minutes.
    assert len(sessions) == 1899
    assert split == ["0afad7d7-6ea0-402c-b769-2c3e519259dd~2"]
    first = sessions["0afad7d7-6ea0-402c-b769-2c3e519259dd"]
    second = sessions[split[0]]
    assert second[0].ts - first[-1].ts > SESSION_GAP
    assert {event.user for event in first + second} == {first[0].user}


def test_rees46_cart_sessions_match_the_data_readme(
    rees46: list[RecordedEvent],
) -> None:
    sessions = group_sessions(rees46).values()
    carts = [events for events in sessions if has(events, "cart")]

    assert len(carts) == 35
    assert sum(not has(events, "purchase") for events in carts) == 24


def test_rees46_keeps_64_bit_ids_exact_and_leaves_out_empty_fields(
    rees46: list[RecordedEvent],
) -> None:
    first, second = rees46[0], rees46[1]

    assert first.ts == 1569888000.0  # 2019-10-01 00:00:00 UTC
    assert first.user == "541312140"
    assert first.session == "72d76fde-8bb3-4e00-8c23-a032dfed738c"
    assert first.props == {
        "product_id": "44600062",
        "category_id": "2103807459595387724",
        "brand": "shiseido",
        "price": 35.79,
    }
    assert second.props["category_code"] == "appliances.environment.water_heater"
    assert second.props["category_id"] == "2053013552326770905"


def test_rees46_events_in_the_same_second_keep_file_order(
    rees46: list[RecordedEvent], data_dir: Path
) -> None:
    # The file is sorted by time, so a stable sort must give the file back.
    with (data_dir / REES46).open(newline="") as f:
        rows = list(csv.DictReader(f))

    loaded = [(e.user, e.props["product_id"], e.name) for e in rees46]
    recorded = [(r["user_id"], r["product_id"], r["event_type"]) for r in rows]
    assert loaded == recorded


# --- OTTO -----------------------------------------------------------------------


def test_otto_loads_every_event_with_engine_names(otto: list[RecordedEvent]) -> None:
    assert len(otto) == 862
    assert names(otto) == {"view": 800, "cart": 52, "purchase": 10}
    assert len({event.user for event in otto}) == 20


def test_otto_shoppers_are_split_into_visits_at_half_hour_gaps(
    otto: list[RecordedEvent],
) -> None:
    sessions = group_sessions(otto).values()
    carts = [events for events in sessions if has(events, "cart")]

    assert len(sessions) == 144
    assert len(carts) == 21
    assert sum(not has(events, "purchase") for events in carts) == 17


def test_otto_times_are_seconds_and_the_shopper_is_the_user(
    otto: list[RecordedEvent],
) -> None:
    first = otto[0]

    assert first.ts == 1659304800025 / 1000
    assert first.user == "0"
    assert first.session == "0-1"
    assert first.props == {"product_id": 1517085}


def test_otto_orders_at_the_same_millisecond_keep_file_order(
    otto: list[RecordedEvent],
) -> None:
    orders = [
        event.props["product_id"]
        for event in otto
        if event.user == "0" and event.ts == 1659370027105 / 1000
    ]
    assert orders == [305831, 461689]


# --- Taobao ---------------------------------------------------------------------


def test_taobao_loads_every_row_with_engine_names(data_dir: Path) -> None:
    events = load_events(data_dir / TAOBAO, "taobao")

    assert len(events) == 110_300
    assert names(events) == {
        "view": 98_361,
        "cart": 6_063,
        "favorite": 3_383,
        "purchase": 2_493,
    }
    assert len({event.user for event in events}) == 66_454
    assert events[0].props == {"product_id": 1715, "category_id": 1464116}
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(events))


# --- jsonl ----------------------------------------------------------------------


def test_jsonl_reads_iso_and_numeric_times_as_utc_seconds(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "t.jsonl",
        {"ts": "2024-05-01T12:00:00Z", "user": "u", "name": "view"},
        {"ts": "2024-05-01T14:00:01+02:00", "user": "u", "name": "view"},
        {"ts": "2024-05-01T12:00:02", "user": "u", "name": "view"},
        {"ts": 1714564803, "user": "u", "name": "view"},
        {"ts": 1714564803.5, "user": "u", "name": "cart", "props": {"sku": "a"}},
    )
    events = load_events(path, "jsonl")

    assert [e.ts for e in events] == [
        1714564800.0,
        1714564801.0,
        1714564802.0,
        1714564803.0,
        1714564803.5,
    ]
    assert events[0].props == {}
    assert events[-1].props == {"sku": "a"}


def test_jsonl_events_with_equal_times_keep_file_order(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "t.jsonl",
        {"ts": 5, "user": "u", "name": "a"},
        {"ts": 1, "user": "u", "name": "b"},
        {"ts": 5, "user": "u", "name": "c"},
        {"ts": 1, "user": "u", "name": "d"},
        {"ts": 5, "user": "u", "name": "e"},
    )
    assert [e.name for e in load_events(path, "jsonl")] == ["b", "d", "a", "c", "e"]


def test_jsonl_without_session_splits_only_gaps_over_thirty_minutes(
    tmp_path: Path,
) -> None:
    path = write_jsonl(
        tmp_path / "t.jsonl",
        {"ts": 0, "user": "u", "name": "view"},
        {"ts": 1800, "user": "u", "name": "view"},
        {"ts": 3600.001, "user": "u", "name": "view"},
        {"ts": 3601, "user": "v", "name": "view"},
    )
    assert [e.session for e in load_events(path, "jsonl")] == [
        "u-1",
        "u-1",
        "u-2",
        "v-1",
    ]


def test_jsonl_recorded_sessions_are_split_where_the_server_would_end_them(
    tmp_path: Path,
) -> None:
    path = write_jsonl(
        tmp_path / "t.jsonl",
        {"ts": 0, "user": "u", "session": "s", "name": "view"},
        {"ts": 1000, "user": "u", "session": "s", "name": "view"},
        {"ts": 4000, "user": "u", "session": "s", "name": "view"},
        {"ts": 9000, "user": "u", "session": "s", "name": "view"},
        {"ts": 9001, "user": "u", "session": "t", "name": "view"},
    )
    sessions = group_sessions(load_events(path, "jsonl"))

    assert {sid: len(events) for sid, events in sessions.items()} == {
        "s": 2,
        "s~2": 1,
        "s~3": 1,
        "t": 1,
    }


# --- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "malformed"),
        ('{"ts": 1, "user": "u"}', "missing required field `name`"),
        ('{"ts": 1, "user": 7, "name": "view"}', "$.user"),
        ('{"ts": "yesterday", "user": "u", "name": "view"}', "'yesterday'"),
        ('{"ts": true, "user": "u", "name": "view"}', "$.ts"),
        ('{"ts": 1, "user": "u", "name": "view", "x": 1}', "unknown field `x`"),
    ],
)
def test_a_bad_jsonl_line_is_reported_with_file_and_line_number(
    tmp_path: Path, line: str, problem: str
) -> None:
    good = {"ts": 1, "user": "u", "name": "view"}
    path = write_jsonl(tmp_path / "t.jsonl", good, "", line, good)

    with pytest.raises(ReplayFormatError) as info:
        load_events(path, "jsonl")

    assert info.value.line == 3
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}, line 3: ")
    assert problem in str(info.value).lower()


def test_a_bad_rees46_row_is_reported_with_its_line_number(
    tmp_path: Path, data_dir: Path
) -> None:
    head = (data_dir / REES46).read_text().splitlines()[:4]
    head[2] = head[2].replace(",view,", ",wishlist,")
    path = tmp_path / "r.csv"
    path.write_text("\n".join(head) + "\n")

    with pytest.raises(ReplayFormatError, match=r"line 3: event_type must be"):
        load_events(path, "rees46")


def test_a_rees46_file_without_its_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,time\n")

    with pytest.raises(ReplayFormatError, match=r"line 1: expected the header"):
        load_events(path, "rees46")


def test_a_bad_otto_event_type_is_reported_with_its_line_number(
    tmp_path: Path,
) -> None:
    path = write_jsonl(
        tmp_path / "o.jsonl",
        {"session": 1, "events": [{"aid": 1, "ts": 1000, "type": "clicks"}]},
        {"session": 2, "events": [{"aid": 1, "ts": 1000, "type": "wishes"}]},
    )
    with pytest.raises(ReplayFormatError, match=r"line 2: .*\$\.events\[0\]\.type"):
        load_events(path, "otto")


def test_a_bad_taobao_row_is_reported_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("1,2,3,pv,1511658000\n1,2,3,pv,soon\n")

    with pytest.raises(ReplayFormatError, match=r"line 2: epoch_seconds must be"):
        load_events(path, "taobao")


def test_an_unknown_format_names_the_accepted_ones(tmp_path: Path) -> None:
    with pytest.raises(ReplayFormatError) as info:
        load_events(tmp_path / "x", "parquet")

    assert "'parquet'" in str(info.value)
    assert "rees46, otto, taobao, jsonl" in str(info.value)


# --- sessions -------------------------------------------------------------------


def test_group_sessions_orders_sessions_by_their_first_event() -> None:
    events = [
        RecordedEvent(ts=t, user="u", session=s, name="view", props={})
        for t, s in [(1, "b"), (2, "a"), (3, "b")]
    ]
    grouped = group_sessions(events)

    assert list(grouped) == ["b", "a"]
    assert [e.ts for e in grouped["b"]] == [1, 3]


def test_gap_sessions_refuses_points_out_of_time_order() -> None:
    with pytest.raises(ValueError, match="sorted by time"):
        gap_sessions([(2.0, "u"), (1.0, "u")])


_gaps = st.one_of(
    st.sampled_from([0.0, 1.0, 1799.0, 1800.0, 1801.0]),
    st.floats(min_value=0, max_value=4 * SESSION_GAP),
)


@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]),
        st.lists(_gaps, min_size=1, max_size=30),
        min_size=1,
    )
)
def test_gap_splitter_keeps_a_session_iff_the_gap_is_at_most_thirty_minutes(
    gaps_by_user: dict[str, list[float]],
) -> None:
    times: dict[str, list[float]] = {}
    for user, gaps in gaps_by_user.items():
        clock = 0.0
        times[user] = []
        for gap in gaps:
            clock += gap
            times[user].append(clock)
    points = sorted(
        ((t, user) for user, ts in times.items() for t in ts), key=lambda p: p[0]
    )

    sessions = gap_sessions(points)

    by_user: dict[str, list[tuple[float, str]]] = {}
    for (t, user), sid in zip(points, sessions, strict=True):
        by_user.setdefault(user, []).append((t, sid))
    for user, seen in by_user.items():
        assert seen[0][1] == f"{user}-1"
        for (t0, s0), (t1, s1) in itertools.pairwise(seen):
            assert (s0 == s1) == (t1 - t0 <= SESSION_GAP)
            # A new session is always the next number, never a reused one.
            n0, n1 = int(s0.rsplit("-", 1)[1]), int(s1.rsplit("-", 1)[1])
            assert n1 == n0 + (s0 != s1)


def test_the_public_names_are_the_intended_ones() -> None:
    assert set(formats.__all__) == {
        "FORMATS",
        "SESSION_GAP",
        "RecordedEvent",
        "ReplayFormatError",
        "gap_sessions",
        "group_sessions",
        "load_events",
        "split_recorded_sessions",
    }
