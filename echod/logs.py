"""Log output: twistd's text lines, formatted faster, and one JSON object per
line for log shippers (``--log-format json``)."""

from __future__ import annotations

import json
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol, cast

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)
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


def log_output(path: Path | None, reactor: Any) -> TextOutput:
    """Where twistd would write its log: stdout (C{path} None), or C{path} as
    twistd keeps its own log file: rotated at 1 MB and on SIGUSR1."""
    if path is None:
        return sys.stdout
    log_file = LogFile.fromFullPath(str(path))
    if not signal.getsignal(signal.SIGUSR1):  # as twistd: unless already taken
        signal.signal(
            signal.SIGUSR1, lambda *_: reactor.callFromThread(log_file.rotate)
        )
    return cast(TextOutput, log_file)


def json_log_observer(path: Path | None, reactor: Any) -> JSONLinesObserver:
    """The observer of C{--log-format json}, writing where twistd would."""
    return JSONLinesObserver(log_output(path, reactor))


def text_log_observer(path: Path | None, reactor: Any) -> FileLogObserver:
    """twistd's own text log observer, with L{ClassicText} for its formatter."""
    return FileLogObserver(cast(IO[Any], log_output(path, reactor)), ClassicText())


def format_in_c(event: LogEvent) -> str | None:
    """C{formatEvent(event)} made by C{str.format_map}, in C; None where only
    Twisted's own formatter can make it (a call in the format, a flattened
    or non-text format, any formatting error)."""
    log_format = event.get("log_format")
    if type(log_format) is not str or "log_flattened" in event:
        return None
    try:
        return log_format.format_map(event)
    except Exception:
        return None


CONTROLS = {c: f"\\x{c:02x}" for c in (*range(32), 127) if c not in (9, 10)}
"""Control characters as C{str.translate} shows them in a text log line: a
tab and a newline (a traceback's) stay, every other one is C{\\xNN}."""


class ClassicText:
    """Twisted's C{formatEventAsClassicLogText} (twistd's text log line:
    C{TIME [SYSTEM] TEXT}), the same text at a tenth of the cost, with any
    control character but a tab and a newline shown as C{\\xNN} (Twisted
    wrote an abstract UNIX socket's name, which starts with a NUL, as it is:
    a text log with a NUL in it is a binary file to grep).

    Twisted formats each event's C{log_format} with a L{string.Formatter} in
    Python (to allow C{{name()}}, a call) and its time stamp anew for every
    line: about 25 microseconds a line, half of what a short connection
    costs echod with its C{closed} line. Here the format is C{str.format_map}
    (C) and the time stamp is made once a second (it shows whole seconds).
    Whatever this cannot do exactly as Twisted does (a call in the format, a
    failure's traceback, a flattened or non-text format, any formatting
    error) is left to Twisted's own function.
    """

    def __init__(self) -> None:
        self._second: int | None = None
        self._stamp = ""

    def stamp(self, when: float | None) -> str:
        """The event's time as Twisted shows it (RFC 3339, whole seconds)."""
        if when is None:
            return "-"
        second = int(when)
        if second != self._second:
            self._stamp = formatTime(second, timeFormatRFC3339)
            self._second = second
        return self._stamp

    def __call__(self, event: LogEvent) -> str | None:
        """The event's line, as C{formatEventAsClassicLogText} would make it."""
        text = None if "log_failure" in event else format_in_c(event)
        if text is None:
            line = formatEventAsClassicLogText(event, formatTime=self.stamp)
            return None if line is None else line.translate(CONTROLS)
        if not text:
            return None
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            namespace = event.get("log_namespace", "-")
            system = f"{namespace}#{'-' if level is None else level.name}"
        else:
            try:
                system = str(system)
            except Exception:
                system = "UNFORMATTABLE"
        line = f"{self.stamp(event.get('log_time'))} [{system}] {text}"
        return line.translate(CONTROLS).replace("\n", "\n\t") + "\n"


MAX_TOKEN = 255
"""Most characters of a peer's text kept in a log line."""


def log_token(value: bytes) -> str:
    """A peer's text (an SNI, a certificate's name) as one log token: control
    characters, spaces and anything not UTF-8 escaped, at most L{MAX_TOKEN}
    characters."""
    text = value[: MAX_TOKEN * 4].decode("utf-8", "backslashreplace")[:MAX_TOKEN]
    return "".join(
        c if c.isprintable() and not c.isspace() else f"\\x{ord(c):02x}" for c in text
    )


def given(**fields: str | None) -> dict[str, str]:
    """C{fields} without those that are None: a log line's optional fields."""
    return {name: value for name, value in fields.items() if value is not None}


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
        "message": format_in_c(event) or formatEvent(event),
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
