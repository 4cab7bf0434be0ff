"""The benchmark harness runs at a tiny scale: every event it sends is
acknowledged, probes are timed, servers and workers stop. No timing here is
asserted: numbers belong to ``python -m benchmarks``, not to the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.__main__ import print_table, targets
from benchmarks.gateway import run_phase, summarize
from benchmarks.loadgen import WorkerPlan

TINY = WorkerPlan(
    port=0, worker=0, n_workers=1, connections=6, events_limit=200, probes=2
)


@pytest.mark.parametrize("kind", ["sessionpush", "baseline"])
def test_a_single_frame_phase_counts_every_event_it_replays(
    kind: str, tmp_path: Path, data_dir: Path
) -> None:
    run = run_phase(kind, TINY, 1, tmp_path)
    assert run["failed"] == 0
    assert run["connections"] == 6
    assert run["events"] == run["frames"] == 200
    assert run["ack_ms_p99"] is not None
    if kind != "baseline":
        # The probe rules answer: an in-app message and a post-session push.
        assert len(run["errors"]) == 0
        assert run["message_ms_p50"] is not None
        assert run["end_to_outbox_ms"]["lines"] == 2


def test_a_batched_phase_sends_fewer_frames_than_events(
    tmp_path: Path, data_dir: Path
) -> None:
    plan = WorkerPlan(
        port=0, worker=0, n_workers=1, connections=4, events_limit=200, mode="batch"
    )
    run = run_phase("sessionpush", plan, 1, tmp_path)
    assert run["events"] == 200
    assert run["frames"] < 200


def test_the_targets_table_prints_every_target(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = {
        "events_per_cpu_s": 1000.0,
        "rss_per_connection": 10_000.0,
        "connections": 10,
        "ack_ms_p50": 1.0,
        "ack_ms_p99": 2.0,
        "message_ms_p50": None,
        "message_ms_p99": None,
        "end_to_outbox_ms": None,
    }
    phases = ["single", "batch", "half", "idle-plain", "idle-deflate"]
    kinds = ["baseline", "sessionpush"]
    results = {
        "gateway": {f"{p}/{k}": summarize([run]) for p in phases for k in kinds},
        "engine": [
            {
                "rules": n,
                "sessionpush": 6e5,
                "naive": 1e5,
                "rule-engine": 1e3,
                "durable_rules": None,
            }
            for n in (10, 100, 1000)
        ],
        "children": {"timers": ""},
    }
    rows = targets(results)
    print_table(rows)
    out = capsys.readouterr().out
    assert "matcher, 100 rules" in out
    assert ">= 85%" in out
    assert all(len(row) == 4 for row in rows)
