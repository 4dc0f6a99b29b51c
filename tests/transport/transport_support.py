"""Shared pieces of the transport tests against Linux: a stack on a TAP in the test's
namespace (driven by the test's loop), kernel sockets made inside the namespace, a Linux peer
script run as a subprocess there, and nftables faults on the Linux side.

nftables (docs/architecture.md, "Testing and measuring"): the kernel here has no netem, so loss
toward the stack is an ``inet`` ``output`` rule on ``oifname DEV``, loss from the stack a
``netdev`` ``ingress`` rule on DEV, duplicates toward the stack a ``netdev`` ``egress`` rule
with ``dup to DEV``. The tables live in the test's namespace and vanish with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import linux_tools
from linux_tools import blob, kernel_socket, nft, peer_process

from layers.links.tuntap import TapLink
from layers.netns import NetNamespace
from layers.stack import Stack

__all__ = ["LINUX_IP", "PEER_SCRIPT", "PLUGINS", "STACK_IP", "blob", "kernel_connect",
           "kernel_server", "kernel_socket", "linux_peer", "nft", "nft_duplicate_toward_stack",
           "nft_loss_from_stack", "nft_loss_toward_stack", "nft_packets", "premade_tap", "sha",
           "stack_on_tap", "tap_device"]

LINUX_IP = "10.77.0.1"
STACK_IP = "10.77.0.2"
PLUGINS = ["arp", "ipv4", "icmp", "udp", "tcp"]


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def tap_device(netns: NetNamespace, *, offload: bool = True, prefix: str = "tr") -> TapLink:
    """A TAP opened inside ``netns`` with Linux's side at LINUX_IP, up."""
    return linux_tools.tap_device(netns, LINUX_IP, offload=offload, prefix=prefix)


@contextlib.asynccontextmanager
async def stack_on_tap(
    netns: NetNamespace, *, offload: bool = True, settings: dict[str, Any] | None = None,
    faults: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Stack, str]]:
    """Our stack at STACK_IP on a fresh TAP, run by the current loop; yields (stack, device
    name) (linux_tools.stack_on_tap)."""
    async with linux_tools.stack_on_tap(
        netns, linux_ip=LINUX_IP, stack_ip=STACK_IP, plugins=PLUGINS, offload=offload,
        settings=settings, faults=faults, name="transport", prefix="tr",
    ) as found:
        yield found


async def kernel_connect(
    netns: NetNamespace, host: str, port: int, timeout: float = 10.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Linux's TCP connecting to ``host:port``, as asyncio streams on the test's loop."""
    sock = kernel_socket(netns)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)),
                               timeout)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


async def kernel_server(
    netns: NetNamespace, handler: Any, port: int, backlog: int = 1024
) -> asyncio.Server:
    """A Linux TCP server inside ``netns``, served by the test's loop."""
    sock = kernel_socket(netns)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LINUX_IP, port))
    sock.listen(backlog)
    return await asyncio.start_server(handler, sock=sock, limit=1 << 20)


#: The Linux peer as a subprocess in the namespace (its own CPU, the kernel's TCP), modes:
#:   echo-client HOST PORT N   send N seeded bytes, shut down writing, read the echo to EOF,
#:                             print "<sent sha256> <received bytes> <received sha256>"
#:   sink-server PORT          accept one, read to EOF, print "<bytes> <sha256>", close
#:   source-server PORT N      accept one, send N seeded bytes, shut down, wait for EOF
PEER_SCRIPT = r"""
import hashlib, random, socket, sys, threading
mode = sys.argv[1]
if mode.endswith("-server"):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", int(sys.argv[2])))
    ls.listen(4)
    print("listening", flush=True)
    s, _ = ls.accept()
    if mode == "sink-server":
        h, n = hashlib.sha256(), 0
        while data := s.recv(1 << 20):
            n += len(data)
            h.update(data)
        print(n, h.hexdigest(), flush=True)
    else:
        s.sendall(random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 7)
                  .randbytes(int(sys.argv[3])))
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    s.close()
else:
    host, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    data = random.Random(7).randbytes(n)
    s = socket.create_connection((host, port), timeout=60)
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
    print(hashlib.sha256(data).hexdigest(), len(rx), hashlib.sha256(rx).hexdigest(), flush=True)
    s.close()
"""


def linux_peer(netns: NetNamespace, args: Sequence[str]) -> AbstractAsyncContextManager[Any]:
    """This directory's peer script in the namespace (see linux_tools.peer_process)."""
    return peer_process(netns, PEER_SCRIPT, args)


# --- nftables on the Linux side ---------------------------------------------------------------


def _every(percent: int) -> str:
    """An nftables match for one packet in every ``100 / percent``, counted per rule from its
    first packet: the share is the one asked for, and a transfer of a few MiB (at least 64
    packets even as 64 KiB super-segments) is sure to meet it. A random match
    (``numgen random``) left a run with offloads, whose packets are few and large, without a
    single fault now and then, and the test checking that faults happened failed."""
    period = max(2, round(100 / percent))
    return f"numgen inc mod {period} == {period - 1}"


def nft_loss_toward_stack(netns: NetNamespace, dev: str, percent: int) -> None:
    nft(netns,
        "table inet ltloss {",
        "  chain out { type filter hook output priority 0; policy accept;",
        f'    oifname "{dev}" {_every(percent)} counter drop',
        "  }",
        "}")


def nft_loss_from_stack(netns: NetNamespace, dev: str, percent: int) -> None:
    nft(netns,
        "table netdev ltin {",
        f'  chain in {{ type filter hook ingress device "{dev}" priority 0; policy accept;',
        f"    meta protocol ip {_every(percent)} counter drop",
        "  }",
        "}")


def nft_duplicate_toward_stack(netns: NetNamespace, dev: str, percent: int) -> None:
    nft(netns,
        "table netdev ltdup {",
        f'  chain eg {{ type filter hook egress device "{dev}" priority 0; policy accept;',
        f'    meta protocol ip {_every(percent)} counter dup to "{dev}"',
        "  }",
        "}")


def nft_packets(netns: NetNamespace) -> int:
    """Packets matched by every counter in the namespace's ruleset."""
    out = netns.run(["nft", "-j", "list", "ruleset"]).stdout
    total = 0
    for item in json.loads(out).get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        for expr in rule.get("expr", []):
            counter = expr.get("counter") if isinstance(expr, dict) else None
            if counter:
                total += int(counter.get("packets", 0))
    return total


# --- `layers up` and `layers nc` as subprocesses in the namespace ---------------------------

def premade_tap(netns: NetNamespace, prefix: str = "tp") -> str:
    """A persistent TAP made with ip(8) in ``netns``, Linux's side addressed; the stack's
    commands attach to it by name and leave it as found."""
    dev = linux_tools.devname(prefix)
    netns.run(["ip", "tuntap", "add", dev, "mode", "tap"])
    netns.run(["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False)
    netns.run(["ip", "addr", "add", f"{LINUX_IP}/24", "dev", dev])
    return dev
