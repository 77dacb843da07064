"""The reliability suite's plumbing: its scale knob and the figures it reports.

``ECHOD_SCALE=large`` runs every case of tests/test_reliability.py at soak
size (``bench/soak`` sets it); the default is the CI size. Each case calls
C{report(expectation, figure)} once its assertions hold; with
``ECHOD_FIGURES=FILE`` set, every report is appended to FILE as one JSON
line, from which ``bench/reliability_table.py`` writes docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

from echod.fdlimit import raise_file_limit

SCALE = os.environ.get("ECHOD_SCALE", "ci")
LARGE = SCALE == "large"


def scaled(ci: int, large: int) -> int:
    """C{ci} at CI size, C{large} when soaking."""
    return large if LARGE else ci


def record(case: str, node: str, expectation: str, figure: str) -> None:
    """Append a figure to $ECHOD_FIGURES (if set), and print it."""
    print(f"[{case}] {figure}")
    path = os.environ.get("ECHOD_FIGURES")
    if not path:
        return
    line = {
        "case": case,
        "expectation": expectation,
        "figure": figure,
        "rerun": f"python -m pytest '{node}'",
        "scale": SCALE,
    }
    with Path(path).open("a") as out:
        out.write(json.dumps(line) + "\n")


def raise_file_limit_to(want: int) -> int:
    """Raise this process's file limit (inherited by what it starts) to C{want}.

    Past the hard limit only where allowed (root outside a container); else as
    far as echod itself goes (L{echod.fdlimit.raise_file_limit}). Returns the
    soft limit now.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        new_hard = hard if hard == resource.RLIM_INFINITY else max(hard, want)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, new_hard))
    except (ValueError, OSError):
        return raise_file_limit()
    return want


def open_fds(pid: int) -> int:
    """How many file descriptors process C{pid} holds."""
    return len(os.listdir(f"/proc/{pid}/fd"))
