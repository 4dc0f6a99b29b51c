"""Transfers through faults complete intact, against Linux over a TAP in the test's namespace.

* Linux side: nftables drops toward the stack (inet output), drops from the stack (netdev
  ingress) and duplicates toward the stack (netdev egress ``dup to``), as docs/architecture.md's
  "Testing and measuring" describes (this kernel has no netem). The tables live in the namespace.
* Our side: the seeded FaultLink around the TAP delays, reorders, corrupts (and drops and
  duplicates), in-process and through ``layers up --faults ...`` as a subprocess.

Linux's peer is a subprocess (the echo client of transport_support), so both TCPs run at
once. Each transfer is a few MiB: enough for hundreds of faults, seconds of wall time.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from linux_tools import LayersUp, peer_output
from transport_support import (
    LINUX_IP,
    STACK_IP,
    blob,
    kernel_connect,
    linux_peer,
    nft_duplicate_toward_stack,
    nft_loss_from_stack,
    nft_loss_toward_stack,
    nft_packets,
    premade_tap,
    sha,
    stack_on_tap,
)

from layers.netns import NetNamespace
from layers.stack import Stack
from layers.streams import open_connection, start_server

pytestmark = pytest.mark.root

SIZE = 4 << 20


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 20):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def linux_echo_through(stack: Stack, netns: NetNamespace, size: int = SIZE,
                             port: int = 7100) -> None:
    """Linux's client sends ``size`` bytes through our echo server and checks what returns."""
    server = await start_server(stack, _echo, "0.0.0.0", port)
    try:
        async with linux_peer(netns, ["echo-client", STACK_IP, str(port), str(size)]) as proc:
            sent_sha, received, received_sha = await peer_output(proc, 60)
        assert int(received) == size
        assert received_sha == sent_sha
    finally:
        server.close()


async def stack_upload_to_linux(stack: Stack, netns: NetNamespace, size: int = SIZE,
                                port: int = 7200) -> None:
    """Our client sends ``size`` bytes to Linux's sink, which reports length and SHA-256."""
    data = blob(size, 11)
    async with linux_peer(netns, ["sink-server", str(port)]) as proc:
        _, writer = await open_connection(stack, LINUX_IP, port)
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        n, digest = await peer_output(proc, 60)
        writer.close()
    assert int(n) == size and digest == sha(data)


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
def test_nft_loss_toward_the_stack(netns: NetNamespace, offload: bool) -> None:
    async def main() -> None:
        async with stack_on_tap(netns, offload=offload) as (stack, dev):
            nft_loss_toward_stack(netns, dev, 3)
            await linux_echo_through(stack, netns)
            assert nft_packets(netns) > 0, "nftables dropped nothing"
            assert stack.counters["tcp"]["InErrs"] == 0

    asyncio.run(main())


def test_nft_loss_from_the_stack(netns: NetNamespace) -> None:
    async def main() -> None:
        async with stack_on_tap(netns) as (stack, dev):
            nft_loss_from_stack(netns, dev, 3)
            await linux_echo_through(stack, netns)
            await stack_upload_to_linux(stack, netns)
            assert nft_packets(netns) > 0, "nftables dropped nothing"
            assert stack.counters["tcp"]["RetransSegs"] > 0

    asyncio.run(main())


def test_nft_duplicates_toward_the_stack(netns: NetNamespace) -> None:
    async def main() -> None:
        async with stack_on_tap(netns) as (stack, dev):
            nft_duplicate_toward_stack(netns, dev, 5)
            await linux_echo_through(stack, netns)
            await stack_upload_to_linux(stack, netns)
            assert nft_packets(netns) > 0, "nftables duplicated nothing"

    asyncio.run(main())


def test_nft_loss_both_ways_and_duplicates(netns: NetNamespace) -> None:
    async def main() -> None:
        async with stack_on_tap(netns) as (stack, dev):
            nft_loss_toward_stack(netns, dev, 2)
            nft_loss_from_stack(netns, dev, 2)
            nft_duplicate_toward_stack(netns, dev, 2)
            await linux_echo_through(stack, netns, 2 << 20)

    asyncio.run(main())


FAULTS: dict[str, Any] = {"loss": 0.02, "reorder": 0.05, "delay": 0.010, "corrupt": 0.01,
                          "duplicate": 0.01, "seed": 7}


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
def test_faultlink_on_the_tap_delay_reorder_corrupt(netns: NetNamespace, offload: bool) -> None:
    async def main() -> None:
        size = (2 << 20) if offload else (512 << 10)  # 1448-byte frames, 20+ ms RTT: slower
        async with stack_on_tap(netns, offload=offload, faults=FAULTS) as (stack, _):
            await linux_echo_through(stack, netns, size)
            await stack_upload_to_linux(stack, netns, size)
            link: Any = stack.interfaces[0].link
            for kind in ("loss", "reorder", "delay", "corrupt", "duplicate"):
                assert link.count(kind, "rx") > 0 and link.count(kind, "tx") > 0, kind
            c = stack.counters["tcp"]
            assert c["RetransSegs"] > 0

    asyncio.run(main())


def test_layers_up_with_faults_serves_echo_intact(netns: NetNamespace) -> None:
    """``layers up --faults loss=2%,reorder=5%,delay=10ms,corrupt=1%,seed=7 --serve echo``
    as a subprocess in the namespace; a Linux socket echoes 2 MiB through it."""
    dev = premade_tap(netns)
    up = LayersUp(netns, ["--link", f"tap:{dev}", "--address", f"{STACK_IP}/24",
                          "--faults", "loss=2%,reorder=5%,delay=10ms,corrupt=1%,seed=7",
                          "--serve", "echo:7"])
    try:
        up.wait_ready()
        data = blob(2 << 20, 3)

        async def main() -> None:
            reader, writer = await kernel_connect(netns, STACK_IP, 7)

            async def send() -> None:
                writer.write(data)
                await writer.drain()
                writer.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)

            sender = asyncio.ensure_future(send())
            got = await asyncio.wait_for(reader.read(), 60)
            await sender
            writer.close()
            assert len(got) == len(data) and sha(got) == sha(data)

        asyncio.run(main())
        stats = up.layers("netstat", "-s")
        retrans = [line for line in stats.splitlines() if line.strip().endswith("RetransSegs")]
        assert retrans and int(retrans[0].split()[0]) > 0, stats
    finally:
        rc, _, err = up.stop()
    assert rc == 0, err
    assert "Traceback" not in err
