"""UDP against the Linux kernel: a Python socket inside a namespace made by the test talks to
our stack over a TAP (with and without the virtio offload header)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator

import pytest
from udp_support import Recorder

from layers.datagrams import create_datagram_endpoint
from layers.links.tuntap import TapLink
from layers.netns import NetNamespace
from layers.runtime import AsyncioRunner
from layers.stack import Stack

pytestmark = pytest.mark.root

LINUX_IP = "10.78.0.1"
STACK_IP = "10.78.0.2"
PLUGINS = ["arp", "ipv4", "icmp", "udp"]


@contextlib.asynccontextmanager
async def stack_on_tap(netns: NetNamespace, offload: bool) -> AsyncIterator[tuple[Stack, TapLink]]:
    dev = f"udp{secrets.token_hex(3)}"
    with netns.entered():
        link = TapLink.open(dev, offload=offload)
    netns.run(["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False)
    netns.run(["ip", "addr", "add", f"{LINUX_IP}/24", "dev", dev])
    netns.run(["ip", "link", "set", dev, "up"])
    loop = asyncio.get_running_loop()
    stack = Stack(PLUGINS, clock=loop.time, name="udp-linux")
    runner: AsyncioRunner | None = None
    try:
        stack.add_interface(link, address=f"{STACK_IP}/24")
        runner = AsyncioRunner(stack, loop)
        runner.start()
        yield stack, link
    finally:
        if runner is not None:
            runner.stop()
        else:
            stack.stop()


def linux_socket(netns: NetNamespace, port: int = 0) -> socket.socket:
    """A UDP socket that belongs to the namespace (created while this thread is inside)."""
    with netns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((LINUX_IP, port))
    return sock


async def recv(sock: socket.socket, timeout: float = 3.0) -> tuple[bytes, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    data, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), timeout)
    return data, addr


async def _both_ways(netns: NetNamespace, offload: bool) -> None:
    async with stack_on_tap(netns, offload) as (stack, _):
        loop = asyncio.get_running_loop()
        # Linux -> us: our echo endpoint answers a Linux socket
        echo_t, echo = await create_datagram_endpoint(
            stack, lambda: Recorder(echo=True), local_addr=("0.0.0.0", 7)
        )
        sock = linux_socket(netns)
        try:
            for size in (0, 1, 100, 1472, 4000):  # 4000: fragmented both ways
                payload = bytes((i * 11) & 0xFF for i in range(size))
                await loop.sock_sendto(sock, payload, (STACK_IP, 7))
                data, addr = await recv(sock)
                assert data == payload and addr == (STACK_IP, 7)
            assert isinstance(echo, Recorder)
            assert echo.datagrams[-1][1] == (LINUX_IP, sock.getsockname()[1])

            # us -> Linux: our client sends to the Linux socket, which answers
            client_t, client = await create_datagram_endpoint(
                stack, Recorder, remote_addr=(LINUX_IP, sock.getsockname()[1])
            )
            assert isinstance(client, Recorder)
            client.got_datagram = asyncio.Event()
            client_t.sendto(b"hello linux")
            data, addr = await recv(sock)
            assert data == b"hello linux"
            assert addr == client_t.get_extra_info("sockname")
            await loop.sock_sendto(sock, b"hello stack", addr)
            await asyncio.wait_for(client.got_datagram.wait(), 3.0)
            assert client.payloads == [b"hello stack"]
            assert stack.counter("udp").drops.get("bad_checksum", 0) == 0
            client_t.close()
        finally:
            sock.close()
            echo_t.close()


async def _port_unreachable(netns: NetNamespace, offload: bool) -> None:
    async with stack_on_tap(netns, offload) as (stack, _):
        loop = asyncio.get_running_loop()
        # Linux -> our closed port: our ICMP port unreachable reaches a connected Linux socket
        sock = linux_socket(netns)
        try:
            sock.connect((STACK_IP, 9999))
            await loop.sock_sendall(sock, b"anyone?")
            with pytest.raises(ConnectionRefusedError):
                await asyncio.wait_for(loop.sock_recv(sock, 100), 3.0)
            assert stack.counter("udp")["NoPorts"] == 1
        finally:
            sock.close()

        # us -> a closed Linux port: Linux's ICMP port unreachable becomes ECONNREFUSED
        closed = linux_socket(netns)
        port = closed.getsockname()[1]
        closed.close()
        t, p = await create_datagram_endpoint(stack, Recorder, remote_addr=(LINUX_IP, port))
        assert isinstance(p, Recorder)
        p.got_error = asyncio.Event()
        t.sendto(b"anyone there?")
        await asyncio.wait_for(p.got_error.wait(), 3.0)
        assert isinstance(p.errors[0], ConnectionRefusedError)
        t.close()


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "vnet-offload"])
def test_udp_both_ways_with_linux(netns: NetNamespace, offload: bool) -> None:
    asyncio.run(asyncio.wait_for(_both_ways(netns, offload), 20.0))


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "vnet-offload"])
def test_port_unreachable_both_ways_with_linux(netns: NetNamespace, offload: bool) -> None:
    asyncio.run(asyncio.wait_for(_port_unreachable(netns, offload), 20.0))
