"""PyTCP 2.7.10 as a TCP sink and source on a TAP, for the bench's ``pytcp`` figures.

This script runs under CPython 3.12 (PyTCP's ``requires-python``), never under the repository's
own interpreter: ``tests/bench/tcp_bench.py`` (``PyTcp``) starts it inside the bench's network
namespace as::

    python3.12 -I -O pytcp_runner.py SRC TAP MAC ADDRESS/PREFIX

``SRC`` is a checkout of PyTCP's 2.7.10 tag (its package ``pytcp`` is imported from there; it
needs nothing beyond the standard library); ``TAP`` an existing TAP device, up, that it attaches
to with PyTCP's own ``initialize_tap``; ``MAC`` and ``ADDRESS/PREFIX`` its Ethernet and IPv4
addresses (IPv6 is switched off). ``-O`` because PyTCP's logging sits behind ``__debug__``.

It prints ``ready`` once PyTCP has claimed its address (``TcpIpStack.start`` returns after the
ARP probes), then obeys commands read from stdin, one a line, each answered on stdout:

``sink PORT``
    listen on PORT (prints ``listening``), accept one connection, read to EOF, close
    (prints ``done BYTES``): Linux's sender times it, as it times ``layers``.
``send HOST PORT BYTES``
    connect to HOST:PORT, send BYTES of the bench's pattern, close (prints ``done BYTES``):
    Linux's sink times it, from the first byte to EOF.

At EOF on stdin it stops PyTCP and exits.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    src, tap, mac, address = argv
    sys.path.insert(0, src)
    # imported here: only SRC has PyTCP
    from pytcp import TcpIpStack, config, initialize_tap

    config.LOG_CHANEL = set()
    from pytcp.lib import socket

    # an IPv6 address given, PyTCP does not autoconfigure; switched off before start(), it
    # neither runs duplicate address detection nor answers IPv6
    stack = TcpIpStack(fd=initialize_tap(tap_name=tap), mac_address=mac, ip4_address=address,
                       ip6_address="fe80::7/64")
    config.IP6_SUPPORT = False
    stack.start()
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "sink":
            listener = socket.socket(family=socket.AF_INET4, type=socket.SOCK_STREAM)
            listener.bind(("0.0.0.0", int(words[1])))
            listener.listen()
            print("listening", flush=True)
            conn, _peer = listener.accept()
            got = 0
            while data := conn.recv():
                got += len(data)
            conn.close()
            print("done", got, flush=True)
        elif words[0] == "send":
            host, port, size = words[1], int(words[2]), int(words[3])
            payload = bytes(range(256)) * (size // 256)
            conn = socket.socket(family=socket.AF_INET4, type=socket.SOCK_STREAM)
            conn.connect((host, port))
            for i in range(0, len(payload), 1 << 16):
                conn.send(payload[i:i + (1 << 16)])
            conn.close()
            print("done", len(payload), flush=True)
        else:
            print("unknown command", line.strip(), flush=True)
    stack.stop()
    sys.stdout.flush()
    os._exit(0)  # PyTCP's service threads are not daemons: do not wait for them


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
