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
        [sys.executable, str(ROOT / "bench" / "run.py"), "--servers",
         "c-epoll,python-epoll,echod", "--runs", "1", "--seconds", "0.5",
         "--idle", "200"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "| echod |" in out and "| c-epoll |" in out
    floor_row = next(x for x in out.splitlines() if x.startswith("| python-epoll |"))
    assert "| yes |" in floor_row
    assert "Problems seen" not in out
    echod_row = next(line for line in out.splitlines() if line.startswith("| echod |"))
    assert "| yes |" in echod_row  # all bytes back after half-close


@pytest.mark.slow
def test_micro_benchmarks_run_and_report_each_part() -> None:
    """bench/micro.py, the source of the in-process figures in PERFORMANCE.md."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "micro.py")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for heading in ("1. a reactor turn", "2. Python of one readable event",
                    "3. send + recv of 1 KiB"):  # fmt: skip
        assert any(line.startswith(heading) for line in lines), heading
    assert any(line.strip().startswith("fresh   256 KiB") for line in lines)
    assert any(line.strip().startswith("raised  256 KiB") for line in lines)


@pytest.mark.slow
def test_instruction_counts_run_under_callgrind() -> None:
    """bench/instructions.py, the source of the noise-free figures (C only: quick)."""
    need_tool("valgrind")
    need_tool("cc")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "instructions.py"), "--servers",
         "c-epoll", "--connections", "2", "--size", "64", "--seconds", "3",
         "--functions", "3"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(x for x in result.stdout.splitlines() if x.startswith("| c-epoll |"))
    count = int(row.split("|")[2].replace(",", ""))
    assert 10 < count < 1000, row  # a few dozen instructions around two syscalls
    breakdown = result.stdout.split("c-epoll: instructions per request by C function")
    assert len(breakdown) == 2 and len(breakdown[1].strip().splitlines()) == 4


def test_reliability_table_marks_cases_without_a_figure(tmp_path: Path) -> None:
    figures = tmp_path / "figures.jsonl"
    figures.write_text(
        '{"case": "test_port_in_use_at_start", "expectation": "one | line", '
        '"figure": "exit 1", "rerun": "python -m pytest \'x\'", "scale": "ci"}\n'
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "reliability_table.py"), str(figures)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1  # the other cases have no figure
    assert "| port in use at start | one \\| line | exit 1 |" in result.stdout
    assert "no figure: the case failed or did not run" in result.stdout
    assert "case(s) without a figure" in result.stderr
