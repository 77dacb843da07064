"""Unit tests of echod.logs: the JSON lines format and the fast text lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

from twisted.logger import (
    LogLevel,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)
from twisted.python.failure import Failure

from echod.logs import (
    ClassicText,
    JSONLinesObserver,
    event_as_json,
    log_token,
    text_log_observer,
)


def test_event_fields_become_json_keys() -> None:
    event = {
        "log_format": "closed {peer} in={bytes_in}",
        "log_level": LogLevel.info,
        "log_namespace": "echod",
        "log_time": 0.5,
        "peer": "192.0.2.1:5",
        "bytes_in": 3,
        "reason": "eof",
        "an_object": object(),
    }
    record = json.loads(event_as_json(event))
    assert record == {
        "time": "1970-01-01T00:00:00.500+00:00",
        "level": "info",
        "namespace": "echod",
        "message": "closed 192.0.2.1:5 in=3",
        "peer": "192.0.2.1:5",
        "bytes_in": 3,
        "reason": "eof",
    }


def test_failures_give_their_message_not_a_traceback() -> None:
    try:
        raise ValueError("broken pipe dream")
    except ValueError:
        failure = Failure()
    event = {
        "log_format": "oops",
        "log_level": LogLevel.error,
        "log_time": 1.0,
        "log_failure": failure,
    }
    record = json.loads(event_as_json(event))
    assert record["error"] == "broken pipe dream"
    assert record["level"] == "error"


def test_observer_writes_one_line_per_event() -> None:
    out = io.StringIO()
    observer = JSONLinesObserver(out)
    observer({"log_format": "a", "log_time": 1.0})
    observer({"log_format": "b\nc", "log_time": 2.0})
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["a", "b\nc"]


def classic_events() -> list[dict[str, object]]:
    """Events of every shape twistd's text log meets."""
    try:
        raise ValueError("broken")
    except ValueError:
        failure = Failure()

    class Thing:
        name = "thing"

        def __repr__(self) -> str:
            return "<Thing>"

    base = {"log_time": 1_700_000_000.75, "log_level": LogLevel.info}
    shapes: list[dict[str, object]] = [
        {"log_format": "closed {peer} in={bytes_in} duration={d:.3f}s", "peer": "a:1",
         "bytes_in": 5, "d": 0.000123, "log_namespace": "echod"},
        {"log_format": "two\nlines {x!r} {t!r} {t.name}", "x": "é", "t": Thing(),
         "log_system": "-"},
        {"log_format": "no namespace, no level", "log_level": None},
        {"log_format": "a call: {f()}", "f": lambda: "called"},
        {"log_format": "an index: {xs[0]}", "xs": [1]},
        {"log_format": "missing {nothing}"},
        {"log_format": "oops", "log_failure": failure},
        {"log_format": b"bytes {x}", "x": 1},
        {"log_format": ""},
        {"no": "format"},
        {"log_format": "no time", "log_time": None},
        {"log_format": "{0}"},
    ]  # fmt: skip
    return [{**base, **shape} for shape in shapes]


def test_classic_text_is_twisted_s_line() -> None:
    """ClassicText makes the line Twisted's own formatter makes, event by event
    (the fast path, and every case it leaves to Twisted)."""
    classic = ClassicText()

    def twisted_line(event: dict[str, object]) -> str | None:
        return formatEventAsClassicLogText(
            event, formatTime=lambda when: formatTime(when, timeFormatRFC3339)
        )

    for event in classic_events():
        assert classic(event) == twisted_line(event), event
    for when in (0.0, 0.999, 1.0, 59.5, 60.0, 1_700_000_000.25, 1_700_000_001.0):
        event = {"log_format": "t", "log_time": when, "log_namespace": "n"}
        assert classic(event) == twisted_line(event), when


def test_text_observer_writes_twisted_s_lines_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "twistd.log"
    observer = text_log_observer(path, reactor=None)
    events = [e for e in classic_events() if "log_failure" not in e]
    for event in events:
        observer(event)
    expected = "".join(
        line
        for e in events
        if (
            line := formatEventAsClassicLogText(
                e, formatTime=lambda w: formatTime(w, timeFormatRFC3339)
            )
        )
    )
    assert path.read_text() == expected


def test_json_message_is_twisted_s_text() -> None:
    for event in classic_events():
        assert json.loads(event_as_json(event))["message"] == formatEvent(event), event


def test_a_peer_s_text_is_one_log_token() -> None:
    """An SNI or a certificate's name, chosen by a client, stays one token."""
    assert log_token(b"echo.test") == "echo.test"
    assert log_token(b"a b\nc\x00") == "a\\x20b\\x0ac\\x00"
    assert log_token("bücher.test".encode()) == "bücher.test"
    assert log_token(b"\xff") == "\\xff"
    assert len(log_token(b"x" * 1000)) == 255


def test_control_characters_are_shown_not_written() -> None:
    """A NUL (Twisted names an abstract socket's port by its path) or an escape
    sequence in an event is \\xNN in the text line; tabs and a traceback's
    newlines stay, on either of ClassicText's paths."""
    text = ClassicText()
    event = {
        "log_format": "port {name} closed\tok",
        "name": "\x00abstract\x1b[31m",
        "log_level": LogLevel.info,
        "log_namespace": "echod",
        "log_time": 0.0,
    }
    line = text(event)
    assert line is not None
    assert line.endswith("port \\x00abstract\\x1b[31m closed\tok\n"), line
    # a call in the format: Twisted's own formatter makes the line
    calling = {**event, "log_format": "port {name} {said()}", "said": lambda: "x"}
    line = text(calling)
    assert line is not None and line.endswith("port \\x00abstract\\x1b[31m x\n")
