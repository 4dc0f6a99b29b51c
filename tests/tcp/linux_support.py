"""Our stack on a TAP inside a test namespace, and Linux TCP peers run there.

Linux peers run as Python subprocesses inside the namespace (so they use the other CPU and
the stack's loop stays ours), or as sockets created while this thread is inside the namespace
(for short exchanges driven from the test's own loop).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import linux_tools
from linux_tools import blob, kernel_socket, peer_process

from layers.links.base import Link
from layers.netns import NetNamespace
from layers.stack import Stack

__all__ = ["LINUX_IP", "PEER_SCRIPT", "PLUGINS", "STACK_IP", "blob", "linux_peer",
           "linux_socket", "stack_on_tap"]

LINUX_IP = "10.79.0.1"
STACK_IP = "10.79.0.2"
PLUGINS = ["arp", "ipv4", "icmp", "tcp"]

#: Linux side, as a subprocess. Modes:
#:   echo-server PORT         accept one connection, echo until EOF, shut down writing, close
#:   sink-server PORT         accept one, read to EOF, print "<bytes> <sha256> <seconds>"
#:   reset-server PORT        accept one, read a little, close with SO_LINGER 0 (RST)
#:   echo-client HOST PORT N  send N bytes (seeded), shut down writing, read the echo to EOF,
#:                            print "<sent sha256> <received bytes> <received sha256>"
#:   send-client HOST PORT N  send N bytes, shut down writing, wait for EOF, print seconds
PEER_SCRIPT = r"""
import hashlib, random, socket, struct, sys, threading, time
mode = sys.argv[1]

def blob(n):
    return random.Random(7).randbytes(n)

if mode.endswith("-server"):
    port = int(sys.argv[2])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(4)
    print("listening", flush=True)
    s, _ = ls.accept()
    if mode == "echo-server":
        while data := s.recv(1 << 20):
            s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    elif mode == "sink-server":
        h = hashlib.sha256()
        n = 0
        t0 = None
        while data := s.recv(1 << 20):
            if t0 is None:
                t0 = time.perf_counter()
            n += len(data)
            h.update(data)
        dt = time.perf_counter() - (t0 or time.perf_counter())
        print(n, h.hexdigest(), dt, flush=True)
    elif mode == "reset-server":
        s.recv(100)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
else:
    host, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    data = blob(n)
    s = socket.create_connection((host, port), timeout=60)
    if mode == "echo-client":
        got = []
        def reader():
            while chunk := s.recv(1 << 20):
                got.append(chunk)
        t = threading.Thread(target=reader)
        t.start()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        t.join()
        rx = b"".join(got)
        print(hashlib.sha256(data).hexdigest(), len(rx), hashlib.sha256(rx).hexdigest(),
              flush=True)
    elif mode == "send-client":
        t0 = time.perf_counter()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
        print(time.perf_counter() - t0, flush=True)
    s.close()
"""


@contextlib.asynccontextmanager
async def stack_on_tap(
    netns: NetNamespace, *, offload: bool = True, settings: dict[str, Any] | None = None,
    faults: dict[str, Any] | None = None, wrap: Callable[[Link], Link] | None = None,
    plugins: Sequence[str] = PLUGINS,
) -> AsyncIterator[Stack]:
    """Our stack at STACK_IP on a TAP (linux_tools.stack_on_tap); ``wrap`` wraps the TAP (a
    shaper, say) before ``faults`` do."""
    async with linux_tools.stack_on_tap(
        netns, linux_ip=LINUX_IP, stack_ip=STACK_IP, plugins=plugins, offload=offload,
        settings=settings, faults=faults, wrap=wrap, name="tcp-linux", prefix="tcp",
    ) as (stack, _dev):
        yield stack


def linux_peer(netns: NetNamespace, args: Sequence[str]) -> AbstractAsyncContextManager[Any]:
    """This directory's peer script in the namespace (see linux_tools.peer_process)."""
    return peer_process(netns, PEER_SCRIPT, args)


def linux_socket(netns: NetNamespace) -> socket.socket:
    """A TCP socket that belongs to the namespace, for the test's own loop."""
    return kernel_socket(netns)
