"""The ``echod`` command: ``echod serve`` runs the daemon in the foreground."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from echod import __version__

USAGE = """\
usage: echod COMMAND [ARGS...]

commands:
  serve [OPTIONS]   run the echo daemon in the foreground
                    (the same as: twistd -n --pidfile= echod [OPTIONS];
                    see: echod serve --help)
  version           print echod's version
"""


def serve(args: Sequence[str]) -> int:
    """Run twistd in the foreground with the echod plugin and C{args}."""
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", "--nodaemon", "--pidfile=", "echod", *args]
    run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``echod`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "serve":
        return serve(rest)
    if command in ("version", "--version"):
        print(f"echod {__version__}")
        return 0
    sys.stderr.write(f"echod: error: unknown command {command!r} (see: echod --help)\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
