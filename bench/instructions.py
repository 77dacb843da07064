#!/usr/bin/env python3
"""Instructions per echoed request, counted by callgrind: figures noise cannot move.

    python bench/instructions.py                         # c-epoll, uvloop, echod
    python bench/instructions.py --servers echod,asyncio --connections 1 --size 64

Timed ratios on a shared two-core machine move by tens of percent from run to
run (docs/PERFORMANCE.md). Valgrind's callgrind counts the instructions a
process executes instead, which do not depend on what else the machine does.
Each server runs under callgrind twice, with the same warm-up and a short and
a long ping-pong load from bench/run.py's C generator; the difference in
instructions over the difference in requests is the cost of one request in
the steady state, with start-up, connection set-up and exit cancelled out.

Only user space is counted: the system calls themselves (recv, send,
epoll_wait) are the kernel's and cost the same to every server, so this is the
code around them, where the servers differ. Valgrind runs a program some
50 times slower; the figures are instructions, not time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # bench/run.py: the servers and the generator

SHORT = 2.0  # seconds of load in the short run (under valgrind)


def callgrind() -> str:
    """The valgrind command, or exit with one line if it is missing."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("bench/instructions.py: needs valgrind (apt-get install valgrind)")
    return valgrind


def counted_run(
    server: bench.Server, load_args: list[str], seconds: float, out: Path
) -> tuple[int, int]:
    """C{server} under callgrind with C{seconds} of load: (instructions, requests)."""
    port = bench.free_port()
    command = [
        callgrind(), "--tool=callgrind", f"--callgrind-out-file={out}",
        "--dump-instr=no", "--dump-line=no", *server.command(port),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONHASHSEED="0")
    process = subprocess.Popen(
        bench.pinned(bench.SERVER_CORE, command), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, cwd=bench.BUILD, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        bench.wait_until_accepting(port, process, 300, server.name)
        bench.load([*load_args, "-d", "1"], port, timeout=300)  # warm-up
        figures = bench.load([*load_args, "-d", f"{seconds:g}"], port, timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # callgrind writes its file
        process.wait(300)
    return total_instructions(out), int(figures["requests"])


def total_instructions(path: Path) -> int:
    """The C{summary:} (or C{totals:}) line of a callgrind output file."""
    text = path.read_text()
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction total in {path}")
    return int(found.group(1))


def by_function(path: Path) -> dict[str, int]:
    """Instructions per C function of a callgrind output (callgrind_annotate)."""
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    counts = {}
    for line in out.stdout.splitlines():
        found = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S+)", line)
        if found and found.group(2) != "PROGRAM":
            counts[found.group(2)] = int(found.group(1).replace(",", ""))
    return counts


def per_request(
    server: bench.Server, load_args: list[str], seconds: float, work: Path
) -> tuple[float, dict[str, float]]:
    """Instructions of one request (the long run less the short), and by function."""
    short_out, long_out = work / f"{server.name}.short", work / f"{server.name}.long"
    # A third of the long run at most, so that the difference is mostly
    # requests even when a busy machine slows one run down.
    short = counted_run(server, load_args, min(SHORT, seconds / 3), short_out)
    long = counted_run(server, load_args, seconds, long_out)
    requests = long[1] - short[1]
    if requests <= 0:
        raise RuntimeError(
            f"{server.name}: the long run did no more requests than the short "
            f"({long[1]} and {short[1]}): a machine this busy cannot count; run again"
        )
    before, after = by_function(short_out), by_function(long_out)
    functions = {
        name: (after.get(name, 0) - before.get(name, 0)) / requests
        for name in before.keys() | after.keys()
    }
    return (long[0] - short[0]) / requests, functions


def main(argv: list[str] | None = None) -> int:
    """Print a Markdown table of instructions per request."""
    bench.stop_on_sigterm()  # the servers run in sessions of their own
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="c-epoll,uvloop,echod")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument(
        "--functions",
        type=int,
        default=0,
        metavar="N",
        help="also list the N C functions with the most instructions per request",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=12.0,
        help="load in the long run (the short has 2 s); longer dilutes start-up noise",
    )
    args = parser.parse_args(argv)
    names = args.servers.split(",")
    known = {s.name: s for s in bench.SERVERS}
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown server(s): {', '.join(unknown)}")
    bench.build()
    load_args = ["pingpong", "-c", str(args.connections), "-s", str(args.size)]
    print(f"ping-pong {args.connections} x {args.size} B, callgrind, user space only")
    print()
    print("| server | instructions per request | ÷ c-epoll |")
    print("|---|---|---|")
    baseline = None
    breakdowns: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as work:
        for name in names:
            server = known[name]
            if not server.available():
                print(f"| {name} | not available | |")
                continue
            count, functions = per_request(server, load_args, args.seconds, Path(work))
            if name == "c-epoll":
                baseline = count
            ratio = f"{count / baseline:.1f}" if baseline else ""
            print(f"| {name} | {count:,.0f} | {ratio} |", flush=True)
            breakdowns.append((name, functions))
    for name, functions in breakdowns if args.functions else []:
        print(f"\n{name}: instructions per request by C function (self)")
        top = sorted(functions.items(), key=lambda item: -item[1])[: args.functions]
        for function, count in top:
            print(f"  {count:8,.0f}  {function}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
