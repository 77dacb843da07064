"""Reference: the tutorial's blocking echo server, one client at a time."""

from __future__ import annotations

import contextlib
import socket
import sys


def main() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(sys.argv[1])))
        s.listen(1)
        while True:
            conn, _ = s.accept()
            # The tutorial's loop; a client that resets mid-echo (a load
            # generator that stops) ends its connection, not the server.
            with conn, contextlib.suppress(ConnectionError):
                while True:
                    data = conn.recv(1024)
                    if not data:
                        break
                    conn.sendall(data)


if __name__ == "__main__":
    main()
