"""Log output: one JSON object per line for log shippers (``--log-format json``)."""

from __future__ import annotations

import json
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from twisted.logger import ILogObserver, LogEvent, formatEvent
from twisted.python.logfile import LogFile
from zope.interface import implementer

_PLAIN = (str, int, float, bool, type(None))


class TextOutput(Protocol):
    """Where log lines go: a text stream, or Twisted's rotating L{LogFile}."""

    def write(self, data: str) -> Any:
        """Write C{data}."""

    def flush(self) -> Any:
        """Flush what was written."""


@implementer(ILogObserver)
class JSONLinesObserver:
    """Writes each event as one JSON object on one line.

    Every object has C{time} (ISO 8601, UTC), C{level}, C{namespace} and
    C{message} (the formatted text); the event's own plain fields (peer,
    bytes_in, reason, ...) follow as they are, so a shipper can index them.
    """

    def __init__(self, out: TextOutput) -> None:
        self.out = out

    def __call__(self, event: LogEvent) -> None:
        """Write C{event}; never raises (a log observer must not)."""
        try:
            self.out.write(event_as_json(event) + "\n")
            self.out.flush()
        except Exception:
            pass


def json_log_observer(path: Path | None, reactor: Any) -> JSONLinesObserver:
    """The observer of C{--log-format json}: stdout (C{path} None), or C{path}
    as twistd keeps its own log file: rotated at 1 MB and on SIGUSR1."""
    if path is None:
        return JSONLinesObserver(sys.stdout)
    log_file = LogFile.fromFullPath(str(path))
    if not signal.getsignal(signal.SIGUSR1):  # as twistd: unless already taken
        signal.signal(
            signal.SIGUSR1, lambda *_: reactor.callFromThread(log_file.rotate)
        )
    return JSONLinesObserver(log_file)


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
