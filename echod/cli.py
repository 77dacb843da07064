"""The ``echod`` command: ``echod serve`` runs the daemon in the foreground."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from echod import __version__
from echod.stdstreams import report_stdout, reserve_standard_fds

USAGE = """\
usage: echod COMMAND [ARGS...]

commands:
  serve [OPTIONS]   run the echo daemon in the foreground
                    (the same as: twistd -n --pidfile= echod [OPTIONS];
                    see: echod serve --help)
  serve --workers N [OPTIONS]
                    run N such daemons sharing their listeners (tcp, tcp6,
                    ssl, tls by SO_REUSEPORT; systemd sockets): one per core;
                    SIGTERM stops them all
  client [OPTIONS] [TARGET]
                    talk to a TCP, TLS or UDP (--udp) service: a prompt on
                    a terminal, a pipe otherwise (like nc -N), a probe with
                    --count (see: echod client --help)
  fetch [OPTIONS] URL
                    fetch an http or https URL and show exactly what crossed
                    the wire: header as received, body saved
                    (see: echod fetch --help)
  bench [OPTIONS] [TARGET]
                    load-test an echo server: many connections, every byte
                    verified; req/s, MB/s, latency percentiles
                    (see: echod bench --help)
  cert DIRECTORY [NAME...]
                    write a private CA, a server and a client certificate
                    (to try TLS and mutual TLS; see: echod cert --help)
  cache-plugins     rebuild Twisted's plugin cache (dropin.cache) beside the
                    installed plugins; run it after installing, as the user
                    who may write there (see deploy/README.md)
  version           print echod's version
"""


def options_apply(options: list[str]) -> str:
    """C{--a applies}, or C{--a and --b apply}: the start of a message about
    options given where they have no effect."""
    verb = "applies" if len(options) == 1 else "apply"
    return f"{' and '.join(options)} {verb}"


def add_family_options(group: argparse._ActionsContainer, long: bool) -> None:
    """C{-4} and C{-6} (with C{--ipv4}, C{--ipv6} when C{long}), as curl, nc
    and ncat have them: the addresses of one IP version only (C{family}).

    argparse stops taking C{-1} as an option's value once an option looks
    like a negative number, so that C{--interval -1} would be "expected one
    argument" instead of its own message; C{-4} and C{-6} are matched as
    options before that check, so it is turned off again (argparse keeps the
    flag in one list shared by a parser and its groups).
    """
    family = group.add_mutually_exclusive_group()
    for version in (4, 6):
        names = [f"-{version}"] + [f"--ipv{version}"] * long
        family.add_argument(
            *names,
            dest="family",
            action="store_const",
            const=version,
            help=f"IPv{version} addresses only",
        )
    negative_optionals = getattr(group, "_has_negative_number_optionals", None)
    if isinstance(negative_optionals, list):
        negative_optionals.clear()


def is_port(number: int) -> bool:
    """Whether C{number} is a TCP or UDP port a peer can have: 1 to 65535."""
    return 1 <= number <= 65535


def port_number(text: str) -> int:
    """An argparse type: a TCP or UDP port number, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not is_port(port):
        raise argparse.ArgumentTypeError(f"{text!r}: ports are 1 to 65535")
    return port


def parse_arguments(
    parser: argparse.ArgumentParser, argv: Sequence[str]
) -> argparse.Namespace | int:
    """The parsed options, or the exit code once argparse has spoken.

    0 after C{--help}, 2 after a usage error (argparse has printed the line).
    """
    try:
        return parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0


def serve(args: Sequence[str]) -> int:
    """Run twistd in the foreground with the echod plugin and C{args}."""
    if args[:1] == ["--workers"] or (args and args[0].startswith("--workers=")):
        count, rest = (
            (args[1], args[2:]) if args[0] == "--workers" and len(args) > 1
            else (args[0].partition("=")[2], args[1:])
        )  # fmt: skip
        if not count.isdigit() or int(count) < 1:
            sys.stderr.write(
                f"echod: error: --workers takes a number of processes, 1 or more, "
                f"not {count!r}\n"
            )
            return 2
        from echod.workers import WORKERS_PER_CPU, most_workers, serve_workers

        most = most_workers()
        if int(count) > most:
            sys.stderr.write(
                f"echod: error: --workers {count}: at most {most} here "
                f"({WORKERS_PER_CPU} per CPU this process may run on)\n"
            )
            return 2
        return serve_workers(int(count), rest)
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", "--nodaemon", "--pidfile=", "echod", *args]
    run()
    return 0


def cache_plugins() -> int:
    """Rebuild Twisted's plugin cache, so a read-only install logs no cache errors."""
    from twisted.plugin import IPlugin, getPlugins

    from twisted.plugins import __path__ as plugin_dirs

    names = sorted(getattr(p, "tapname", repr(p)) for p in getPlugins(IPlugin))
    where = [d for d in plugin_dirs if os.path.isdir(d)]
    print(f"plugin cache rebuilt in {', '.join(where)} ({len(names)} plugins)")
    return 0


REPORT_LOST = 13
"""Exit code when stdout could not take the report (echod fetch's 13)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``echod`` console script."""
    reserve_standard_fds()
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["fetch"], ["serve"]):
        # fetch's stdout is the output asked for: failing to write it is an
        # error (exit 13), as in curl; serve's is the daemon's log. For the
        # other commands stdout is a report.
        return run_command(args)
    with report_stdout() as report:
        code = run_command(args)
    if report.error is not None and code == 0:
        sys.stderr.write(
            f"echod: cannot write to stdout: {report.error.strerror} "
            f"(the report is lost)\n"
        )
        return REPORT_LOST
    return code


def run_command(args: list[str]) -> int:
    """Run the command in C{args}; the result is the exit code."""
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "serve":
        return serve(rest)
    if command == "client":
        from echod.client import main as client_main

        return client_main(rest)
    if command == "fetch":
        from echod.fetchcli import main as fetch_main

        return fetch_main(rest)
    if command == "bench":
        from echod.benchcli import main as bench_main

        return bench_main(rest)
    if command == "cert":
        from echod.certs import main as cert_main

        return cert_main(rest)
    if command == "cache-plugins":
        return cache_plugins()
    if command in ("version", "--version"):
        print(f"echod {__version__}")
        return 0
    sys.stderr.write(f"echod: error: unknown command {command!r} (see: echod --help)\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
