"""The ``echod`` command: ``echod serve`` runs the daemon in the foreground."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from echod import __version__

USAGE = """\
usage: echod COMMAND [ARGS...]

commands:
  serve [OPTIONS]   run the echo daemon in the foreground
                    (the same as: twistd -n --pidfile= echod [OPTIONS];
                    see: echod serve --help)
  cache-plugins     rebuild Twisted's plugin cache (dropin.cache) beside the
                    installed plugins; run it after installing, as the user
                    who may write there (see deploy/README.md)
  version           print echod's version
"""


def serve(args: Sequence[str]) -> int:
    """Run twistd in the foreground with the echod plugin and C{args}."""
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``echod`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "serve":
        return serve(rest)
    if command == "cache-plugins":
        return cache_plugins()
    if command in ("version", "--version"):
        print(f"echod {__version__}")
        return 0
    sys.stderr.write(f"echod: error: unknown command {command!r} (see: echod --help)\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
