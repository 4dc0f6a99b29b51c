"""TCP over IPv6 against Linux over a TAP with the virtio offloads: 2 MiB each way checked by
SHA-256, our data leaving as GSO_TCPV6 super-segments (far fewer frames than segments) with
checksums Linux completes, Linux's arriving as TCPV6 super-segments (TUN_F_TSO6)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from linux_support import LINUX_IP, STACK_IP, blob
from linux_tools import peer_output, peer_process, stack_on_tap

from layers.netns import NetNamespace
from layers.streams import open_connection, start_server

pytestmark = pytest.mark.root

SIZE = 2 << 20
LINUX6, STACK6 = "2001:db8:79::1", "2001:db8:79::2"
PLUGINS = ["arp", "ipv4", "icmp", "ipv6", "icmpv6", "ndp", "tcp"]
#: sink-server PORT: accept one on ::, read to EOF, print "<bytes> <sha256>";
#: send-client HOST PORT N: send N bytes (linux_support.blob's), shut down, wait for EOF
PEER6 = r"""
import hashlib, random, socket, sys
mode = sys.argv[1]
if mode == "sink-server":
    ls = socket.socket(socket.AF_INET6)
    ls.bind(("::", int(sys.argv[2])))
    ls.listen(1)
    print("listening", flush=True)
    s, _ = ls.accept()
    h, n = hashlib.sha256(), 0
    while data := s.recv(1 << 20):
        n += len(data)
        h.update(data)
    print(n, h.hexdigest(), flush=True)
else:
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=60)
    s.sendall(random.Random(7).randbytes(int(sys.argv[4])))
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
s.close()
"""


def test_tcp_over_ipv6_with_offloads_both_ways(netns: NetNamespace) -> None:
    data = blob(SIZE)
    digest = hashlib.sha256(data).hexdigest()

    async def main() -> None:
        async with stack_on_tap(netns, linux_ip=LINUX_IP, stack_ip=STACK_IP, plugins=PLUGINS,
                                settings={"ndp.dad_transmits": 0}, prefix="t6") as (stack, dev):
            # the helper's TAP starts with IPv6 off on Linux's side: this test wants it
            netns.run(["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=0"])
            netns.run(["ip", "-6", "addr", "add", f"{LINUX6}/64", "dev", dev, "nodad"])
            iface = stack.interfaces[0]
            assert iface.capabilities.gso_max_size > 0, "the TAP offers no offloads"
            stack.add_address(iface, f"{STACK6}/64")
            # ours to Linux
            async with peer_process(netns, PEER6, ["sink-server", "7061"]) as proc:
                before = iface.counters["tx_frames"]
                _, writer = await open_connection(stack, LINUX6, 7061)
                writer.write(data)
                writer.write_eof()
                await writer.drain()
                n, got = await peer_output(proc)
                writer.close()
            assert (int(n), got) == (SIZE, digest)
            frames = iface.counters["tx_frames"] - before
            assert frames < SIZE // 1400 // 4, f"{frames} frames: no TSO super-segments"
            # Linux to ours
            received = bytearray()
            done = asyncio.Event()

            async def sink(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                while chunk := await r.read(1 << 20):
                    received.extend(chunk)
                w.close()
                done.set()

            server = await start_server(stack, sink, "::", 7062)
            rx_before = iface.counters["rx_frames"]
            async with peer_process(netns, PEER6, ["send-client", STACK6, "7062", str(SIZE)]):
                await asyncio.wait_for(done.wait(), 60)
            server.close()
            assert hashlib.sha256(received).hexdigest() == digest
            rx = iface.counters["rx_frames"] - rx_before
            assert rx < SIZE // 1400 // 2, f"{rx} frames in: no TCPV6 super-segments from Linux"
            assert stack.counter("tcp")["InCsumErrors"] == 0

    asyncio.run(main())
