"""Reference: the least a Python echo can do, bench/cecho.c line for line in Python.

One thread, level-triggered epoll, no framework and no bookkeeping: read up
to 64 KiB, write it back, and while bytes are left unsent stop reading that
connection (bounded, like echod). EOF from the client: flush, then close.
No Python function is called per message, so what it costs per request is
the interpreter's floor (the loop's bytecode and three system calls made
from Python), which any Python echo server pays at least.
"""

from __future__ import annotations

import select
import socket
import sys

BUFSZ = 65536


def serve(port: int) -> None:
    """Echo on 127.0.0.1:C{port} until killed."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    listener.setblocking(False)
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN)
    listen_fd = listener.fileno()
    sockets: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}  # unsent bytes, only while there are some
    while True:
        for fd, event in poller.poll(-1, 256):
            if fd == listen_fd:
                while True:
                    try:
                        conn, _addr = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    sockets[conn.fileno()] = conn
                    poller.register(conn.fileno(), select.EPOLLIN)
                continue
            conn = sockets[fd]
            writing = event & select.EPOLLOUT  # level-triggered: the interest
            data = pending.pop(fd, b"")
            try:
                if not data:  # nothing pending: read
                    data = conn.recv(BUFSZ)
                sent = conn.send(data) if data else -1
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = -1
            if sent < 0:  # EOF with nothing pending, or an error: done
                poller.unregister(fd)
                del sockets[fd]
                conn.close()
            elif sent < len(data):
                pending[fd] = data[sent:]
                if not writing:
                    poller.modify(fd, select.EPOLLOUT)
            elif writing:
                poller.modify(fd, select.EPOLLIN)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
