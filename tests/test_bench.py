"""The benchmark runs end to end (briefly) and verifies every byte it moves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import need_tool

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_quick_run_reports_a_table() -> None:
    need_tool("cc")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--servers", "c-epoll,echod",
         "--runs", "1", "--seconds", "0.5", "--idle", "200"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "| echod |" in out and "| c-epoll |" in out
    assert "Problems seen" not in out
    echod_row = next(line for line in out.splitlines() if line.startswith("| echod |"))
    assert "| yes |" in echod_row  # all bytes back after half-close
