"""TCP against the Linux kernel over a TAP in a namespace the test makes: 20 MiB echoes both
ways checked by SHA-256 (with and without the virtio offloads), refused ports both ways,
resets from Linux, and half-close both ways."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from linux_support import (
    LINUX_IP,
    STACK_IP,
    blob,
    linux_peer,
    linux_socket,
    stack_on_tap,
)
from linux_tools import peer_output

from layers.netns import NetNamespace
from layers.streams import open_connection, start_server

pytestmark = pytest.mark.root

SIZE = 20 << 20


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 20):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    finally:
        writer.close()


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
def test_linux_client_to_our_echo_server(netns: NetNamespace, offload: bool) -> None:
    async def main() -> None:
        async with stack_on_tap(netns, offload=offload) as stack:
            server = await start_server(stack, _echo, "0.0.0.0", 7000)
            async with linux_peer(netns, ["echo-client", STACK_IP, "7000", str(SIZE)]) as proc:
                sent_sha, received, received_sha = await peer_output(proc, 120)
            assert int(received) == SIZE
            assert received_sha == sent_sha
            server.close()
            await asyncio.wait_for(server.wait_closed(), 10)
            c = stack.counters["tcp"]
            assert c["PassiveOpens"] == 1 and c["InErrs"] == 0

    asyncio.run(main())


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
def test_our_client_to_linux_echo_server(netns: NetNamespace, offload: bool) -> None:
    async def main() -> None:
        async with stack_on_tap(netns, offload=offload) as stack:
            async with linux_peer(netns, ["echo-server", "7001"]):
                reader, writer = await open_connection(stack, LINUX_IP, 7001)
                data = blob(SIZE)

                async def send() -> None:
                    writer.write(data)
                    await writer.drain()
                    writer.write_eof()

                sender = asyncio.ensure_future(send())
                got = await asyncio.wait_for(reader.read(), 120)
                await sender
                assert len(got) == SIZE
                assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 10)
            assert stack.counters["tcp"]["ActiveOpens"] == 1

    asyncio.run(main())


def test_refused_both_ways(netns: NetNamespace) -> None:
    async def main() -> None:
        async with stack_on_tap(netns) as stack:
            # our client to a closed Linux port: Linux answers RST
            with pytest.raises(ConnectionRefusedError):
                await open_connection(stack, LINUX_IP, 7999)
            # a Linux client to our closed port: we answer RST
            sock = linux_socket(netns)
            try:
                with pytest.raises(ConnectionRefusedError):
                    await asyncio.wait_for(
                        asyncio.get_running_loop().sock_connect(sock, (STACK_IP, 7998)), 10)
            finally:
                sock.close()
            assert stack.counters["tcp"]["OutRsts"] >= 1

    asyncio.run(main())


def test_reset_from_linux(netns: NetNamespace) -> None:
    async def main() -> None:
        async with stack_on_tap(netns) as stack:
            async with linux_peer(netns, ["reset-server", "7002"]) as proc:
                reader, writer = await open_connection(stack, LINUX_IP, 7002)
                writer.write(b"hello")
                with pytest.raises(ConnectionResetError):
                    await asyncio.wait_for(reader.read(100), 10)
                await proc.wait()
            assert stack.counters["tcp"]["EstabResets"] == 1

    asyncio.run(main())


def test_half_close_both_ways(netns: NetNamespace) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def reply_after_eof(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            request = await r.read()
            w.write(b"got " + request)
            await w.drain()
            w.close()

        async with stack_on_tap(netns) as stack:
            # Linux half-closes to us: we still answer after its FIN
            await start_server(stack, reply_after_eof, None, 7003)
            sock = linux_socket(netns)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (STACK_IP, 7003)), 10)
                await loop.sock_sendall(sock, b"linux request")
                sock.shutdown(1)  # SHUT_WR
                chunks = []
                while chunk := await asyncio.wait_for(loop.sock_recv(sock, 4096), 10):
                    chunks.append(chunk)
                assert b"".join(chunks) == b"got linux request"
            finally:
                sock.close()
            # we half-close to Linux: its echo server still answers after our FIN
            async with linux_peer(netns, ["echo-server", "7004"]):
                reader, writer = await open_connection(stack, LINUX_IP, 7004)
                writer.write(b"our request")
                writer.write_eof()
                assert await asyncio.wait_for(reader.read(), 10) == b"our request"
                writer.close()
                await writer.wait_closed()

    asyncio.run(main())


@pytest.mark.parametrize("sack", [True, False], ids=["sack", "nosack"])
def test_echo_with_loss_and_reordering_against_linux(netns: NetNamespace, sack: bool) -> None:
    """Our FaultLink around the TAP drops and reorders frames both ways: Linux's recovery
    and ours (with SACK in both directions, or without) must still deliver every byte."""
    size = 4 << 20

    async def main() -> None:
        faults = {"loss": 0.01, "reorder": 0.01, "seed": 3}
        async with stack_on_tap(netns, offload=False, settings={"tcp.sack": sack},
                                faults=faults) as stack:
            server = await start_server(stack, _echo, "0.0.0.0", 7005)
            async with linux_peer(netns, ["echo-client", STACK_IP, "7005", str(size)]) as proc:
                sent_sha, received, received_sha = await peer_output(proc, 120)
            assert int(received) == size and received_sha == sent_sha
            server.close()
            c = stack.counters["tcp"]
            assert c["RetransSegs"] > 0
            if sack:
                assert c["FastRetransmits"] > 0

    asyncio.run(main())
