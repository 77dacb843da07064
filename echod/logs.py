"""Log output: one JSON object per line for log shippers (``--log-format json``)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import ILogObserver, LogEvent, formatEvent
from zope.interface import implementer

_PLAIN = (str, int, float, bool, type(None))


@implementer(ILogObserver)
class JSONLinesObserver:
    """Writes each event as one JSON object on one line.

    Every object has C{time} (ISO 8601, UTC), C{level}, C{namespace} and
    C{message} (the formatted text); the event's own plain fields (peer,
    bytes_in, reason, ...) follow as they are, so a shipper can index them.
    """

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, event: LogEvent) -> None:
        """Write C{event}; never raises (a log observer must not)."""
        try:
            self.out.write(event_as_json(event) + "\n")
            self.out.flush()
        except Exception:
            pass


def worth_logging(count: int) -> bool:
    """Whether the C{count}th event of a kind gets a log line: the first, then
    every 1000th, so that a flood is not a flood of log lines."""
    return count % 1000 == 1


def event_as_json(event: LogEvent) -> str:
    """The JSON line for one event."""
    stamp = event.get("log_time")
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(
            stamp if isinstance(stamp, (int, float)) else 0, tz=timezone.utc
        ).isoformat(timespec="milliseconds"),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        record["error"] = failure.getErrorMessage()
    for key, value in event.items():
        if key.startswith("log_") or key in record or key == "format":
            continue
        if isinstance(value, _PLAIN):
            record[key] = value
    return json.dumps(record, separators=(",", ":"))
