"""Log lines: JSON objects with the facts as fields when not on a terminal."""

from __future__ import annotations

import io
import logging

import msgspec

from sessionpush.logs import JsonFormatter, configure


def test_a_json_line_carries_the_message_and_its_extra_fields() -> None:
    record = logging.LogRecord(
        "sessionpush.engine",
        logging.INFO,
        "core.py",
        1,
        "session %s ended",
        ("s1",),
        None,
    )
    record.event = "session_ended"
    record.session = "s1"
    line = msgspec.json.decode(JsonFormatter().format(record))
    assert line["msg"] == "session s1 ended"
    assert line["level"] == "info"
    assert line["logger"] == "sessionpush.engine"
    assert (line["event"], line["session"]) == ("session_ended", "s1")
    assert line["ts"].endswith("+00:00")


def test_auto_writes_json_to_a_stream_that_is_not_a_terminal() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure("info", "auto", out)
        logging.getLogger("sessionpush.gateway").info(
            "gateway up", extra={"event": "gateway_up", "rules": 3}
        )
        logging.getLogger("sessionpush.gateway").debug("not at info")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    (line,) = out.getvalue().splitlines()
    assert msgspec.json.decode(line)["rules"] == 3


def test_text_format_stays_one_plain_line() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure("info", "text", out)
        logging.getLogger("sessionpush.cli").info("replaying %d events", 5)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert out.getvalue().rstrip().endswith("INFO sessionpush.cli: replaying 5 events")


def test_the_websocket_layer_says_nothing_per_socket_at_info() -> None:
    configure("info", "text", io.StringIO())
    layer = logging.getLogger("sessionpush.gateway.websocket")
    assert not layer.isEnabledFor(logging.INFO)
    assert layer.isEnabledFor(logging.WARNING)
    assert logging.getLogger("sessionpush.gateway").isEnabledFor(logging.INFO)
