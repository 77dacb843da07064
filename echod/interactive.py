"""``echod client`` on a terminal: an ``input>`` prompt with line editing and
history (readline) in the main thread, the reactor in another. Replies are
printed as they arrive, above the line being typed, which is then redrawn;
``exit`` or Ctrl-D quits (Ctrl-D first half-closes and prints what is still
coming)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

from twisted.python.failure import Failure

from echod.clienterrors import OK, classify
from echod.session import Session, ended

PROMPT = "input> "


class Terminal:
    """Prints replies above the line being typed, then redraws it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending = b""
        self.flush_call: Any = None
        try:
            import readline
        except ImportError:  # pragma: no cover - readline is on every Linux
            self.readline: Any = None
        else:
            self.readline = readline

    def show(self, text: str) -> None:
        """Print C{text} (whole lines) above the prompt and the typed line."""
        with self.lock:
            typed = self.readline.get_line_buffer() if self.readline else ""
            sys.stdout.write("\r\x1b[K" + text + PROMPT + typed)
            sys.stdout.flush()

    def reply(self, data: bytes, reactor: Any) -> None:
        """Bytes from the peer: print whole lines now, a partial line soon."""
        self.pending += data
        if b"\n" in self.pending:
            lines, _, self.pending = self.pending.rpartition(b"\n")
            self.show(lines.decode("utf-8", "replace") + "\n")
        if self.flush_call is not None and self.flush_call.active():
            self.flush_call.cancel()
        if self.pending:
            self.flush_call = reactor.callLater(0.3, self.flush)

    def flush(self) -> None:
        """A partial line that stayed partial: print it as it is."""
        if self.pending:
            text, self.pending = self.pending.decode("utf-8", "replace"), b""
            self.show(text + "\n")


def run_interactive(
    reactor: Any, session: Session, label: str, ending: bytes = b"\n"
) -> int:
    """The prompt loop, in this thread; the reactor runs in another.

    Each line typed goes with C{ending} (C{-C}: CR LF).
    """
    terminal = Terminal()
    session.on_data = lambda data: terminal.reply(data, reactor)
    outcome: list[int] = []
    at_prompt = threading.Event()

    def closed(reason: Failure) -> None:
        terminal.flush()
        code = ended(reason)
        note = session.closed_note if code == OK else str(classify(reason))
        terminal.show(f"({note})\n")
        outcome.append(code)
        if at_prompt.is_set():
            # Wake the prompt: a real SIGINT interrupts readline's blocking read.
            os.kill(os.getpid(), signal.SIGINT)

    def wait_for_end(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not outcome and time.monotonic() < deadline:
            time.sleep(0.02)

    session.on_close(closed)
    sys.stdout.write(f"connected to {label}; 'exit' or Ctrl-D quits\n")
    try:
        while not outcome:
            at_prompt.set()
            try:
                line = input(PROMPT)
            except EOFError:
                at_prompt.clear()
                sys.stdout.write("\n")
                reactor.callFromThread(half_close_or_close, session)
                wait_for_end(5)
                break
            finally:
                at_prompt.clear()
            if outcome or line == "exit":
                break
            reactor.callFromThread(send_line, session, line, ending)
        if not outcome:
            reactor.callFromThread(close_session, session)
            wait_for_end(2)
    except KeyboardInterrupt:
        if not outcome:  # Ctrl-C from the user, not our wake-up call
            sys.stdout.write("\n")
            reactor.callFromThread(close_session, session)
            wait_for_end(2)
    return outcome[0] if outcome else OK


def send_line(session: Session, line: str, ending: bytes = b"\n") -> None:
    """One typed line, with its line ending, to the peer."""
    if session.transport is not None:
        session.transport.write(line.encode() + ending)


def half_close_or_close(session: Session) -> None:
    """Ctrl-D: half-close (or, over TLS, close after a moment)."""
    if session.transport is None:
        return
    if not session.half_close():
        session.transport.loseConnection()


def close_session(session: Session) -> None:
    """Close the connection."""
    if session.transport is not None:
        session.transport.loseConnection()
