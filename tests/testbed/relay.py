"""One guestfwd connection: relay stdin/stdout to a TCP port on host loopback.

QEMU's user network runs `guestfwd=tcp:ADDR:PORT-cmd:...` once per connection
the dom0 opens to ADDR:PORT, with that connection on stdin and stdout. A
chardev target (`-tcp:127.0.0.1:PORT`) would instead open ONE connection at
QEMU start and share it between all guest connections, which breaks Redis and
PostgreSQL clients that open several. Standard library only; never writes to
stderr, because stderr is the guest's connection too.

    relay.py PORT      (the target is always 127.0.0.1)
"""

from __future__ import annotations

import os
import selectors
import socket
import sys


def relay(port: int) -> None:
    upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
    upstream.settimeout(None)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "guest")
    sel.register(upstream, selectors.EVENT_READ, "host")
    while True:
        for key, _ in sel.select():
            if key.data == "guest":
                data = os.read(0, 65536)
                if not data:
                    # The guest closed its side: let the server finish, then stop.
                    sel.unregister(0)
                    upstream.shutdown(socket.SHUT_WR)
                    continue
                upstream.sendall(data)
            else:
                data = upstream.recv(65536)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view) :]


def main() -> int:
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - see the module docstring
    try:
        relay(int(sys.argv[1]))
    except (OSError, ValueError, IndexError):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
