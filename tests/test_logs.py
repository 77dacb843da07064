"""Unit tests of echod.logs: the JSON lines format."""

from __future__ import annotations

import io
import json

from twisted.logger import LogLevel
from twisted.python.failure import Failure

from echod.logs import JSONLinesObserver, event_as_json


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
