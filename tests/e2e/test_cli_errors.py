"""Mistakes on the command line get one clear line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from sessionpush.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = str(ROOT / "examples" / "rules")


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "1e400"])
def test_a_grace_or_idle_that_is_not_a_finite_positive_number_is_refused(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--idle", value])
    assert exit_info.value.code == 2
    assert "--idle" in capsys.readouterr().err


def test_a_missing_events_file_is_named_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.csv"
    status = main(
        ["replay", "--rules", EXAMPLES, "--events", str(missing), "--format", "rees46"]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert str(missing) in err
    assert "Traceback" not in err


def test_an_unwritable_out_fails_before_the_replay_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text('{"ts": 1700000000, "user": "u", "name": "view"}\n')
    blocker = tmp_path / "file"
    blocker.write_text("")
    status = main(
        [
            "replay",
            "--rules",
            EXAMPLES,
            "--events",
            str(events),
            "--format",
            "jsonl",
            "--out",
            str(blocker / "x.jsonl"),
        ]
    )
    assert status == 1
    assert "Traceback" not in capsys.readouterr().err


def test_a_time_outside_what_iso_8601_can_print_is_a_format_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text('{"ts": -1e12, "user": "u", "name": "view"}\n')
    status = main(
        ["replay", "--rules", EXAMPLES, "--events", str(events), "--format", "jsonl"]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert "line 1" in err
    assert "1970 to 9999" in err


def test_two_users_sharing_a_session_id_in_the_data_are_two_sessions(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "r.rules"
    rules.write_text(
        "rule bye { when session ends where session has cart "
        'push { title "bye {session.events}" } }'
    )
    events = tmp_path / "e.jsonl"
    events.write_text(
        '{"ts": 1700000000, "user": "a", "session": "shared", "name": "cart"}\n'
        '{"ts": 1700000001, "user": "b", "session": "shared", "name": "cart"}\n'
        '{"ts": 1700000002, "user": "b", "session": "shared", "name": "view"}\n'
    )
    out = tmp_path / "d.jsonl"
    assert (
        main(
            [
                "replay",
                "--rules",
                str(rules),
                "--events",
                str(events),
                "--format",
                "jsonl",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    records = [msgspec.json.decode(line) for line in out.read_bytes().splitlines()]
    titles = {r["user"]: r["message"]["title"] for r in records}
    assert titles == {"a": "bye 1", "b": "bye 2"}
