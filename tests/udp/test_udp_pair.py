"""Two stacks talking UDP: on the virtual clock (sans-IO endpoints) and on asyncio in real time
over a memory link (create_datagram_endpoint)."""

from __future__ import annotations

import asyncio
import errno

import pytest
from udp_support import Recorder

from layers.datagrams import create_datagram_endpoint, open_datagram_endpoint
from layers.links.base import Medium
from layers.links.memory import MemoryLink
from layers.runtime import AsyncioRunner
from layers.stack import Stack
from layers.virtual import VirtualNetwork

PLUGINS = ["ipv4", "icmp", "udp"]
A, B = "10.0.0.1", "10.0.0.2"


def pair(**kw: object) -> tuple[VirtualNetwork, Stack, Stack]:
    net = VirtualNetwork()
    a, b = net.pair(PLUGINS, medium=Medium.IP, latency=0.001, **kw)  # type: ignore[arg-type]
    return net, a, b


def test_echo_between_two_stacks_on_the_virtual_clock() -> None:
    net, a, b = pair()
    open_datagram_endpoint(b, lambda: Recorder(echo=True), local_addr=("0.0.0.0", 7))
    t, client = open_datagram_endpoint(a, Recorder, remote_addr=(B, 7))
    assert isinstance(client, Recorder)
    messages = [bytes([i]) * (i * 37 % 3000) for i in range(20)]  # some need fragmenting
    for m in messages:
        t.sendto(m)
    net.run_until_idle()
    assert client.payloads == messages
    assert {addr for _, addr in client.datagrams} == {(B, 7)}
    assert a.counter("udp")["OutDatagrams"] == 20 and b.counter("udp")["InDatagrams"] == 20
    assert net.now == pytest.approx(0.002, abs=1e-9)  # one round trip of virtual time


def test_port_unreachable_becomes_econnrefused_on_connected_endpoint() -> None:
    net, a, b = pair()
    t, conn = open_datagram_endpoint(a, Recorder, remote_addr=(B, 9999))
    u, unconn = open_datagram_endpoint(a, Recorder)
    assert isinstance(conn, Recorder) and isinstance(unconn, Recorder)
    t.sendto(b"anyone?")
    u.sendto(b"anyone?", (B, 9999))
    net.run_until_idle()
    assert len(conn.errors) == 1
    exc = conn.errors[0]
    assert isinstance(exc, ConnectionRefusedError) and exc.errno == errno.ECONNREFUSED
    assert unconn.errors == []  # Linux default: unconnected sockets are not told
    assert b.counter("udp")["NoPorts"] == 2
    assert not t.is_closing()  # an error does not close a datagram endpoint


def test_broadcast_between_stacks() -> None:
    net, a, b = pair()
    _, listener = open_datagram_endpoint(b, Recorder, local_addr=("0.0.0.0", 67))
    t, sender = open_datagram_endpoint(a, Recorder, allow_broadcast=True)
    assert isinstance(listener, Recorder) and isinstance(sender, Recorder)
    t.sendto(b"to the subnet", ("10.0.0.255", 67))
    t.sendto(b"to everyone", ("255.255.255.255", 67))
    t.sendto(b"nobody home", ("10.0.0.255", 68))
    net.run_until_idle()
    port = t.get_extra_info("sockname")[1]
    assert listener.datagrams == [(b"to the subnet", (A, port)), (b"to everyone", (A, port))]
    assert sender.errors == []
    assert b.counter("udp")["IgnoredMulti"] == 1 and b.counter("udp")["NoPorts"] == 0


def test_to_ourselves() -> None:
    net, a, _ = pair()
    open_datagram_endpoint(a, lambda: Recorder(echo=True), local_addr=(A, 5000))
    t, client = open_datagram_endpoint(a, Recorder, remote_addr=(A, 5000))
    assert isinstance(client, Recorder)
    t.sendto(b"loop")
    net.run_until_idle()
    assert client.payloads == [b"loop"]


# --- asyncio, real time ------------------------------------------------------------------


async def _asyncio_exchange() -> None:
    loop = asyncio.get_running_loop()
    la, lb = MemoryLink.pair(("a0", "b0"), medium=Medium.IP)
    sa = Stack(PLUGINS, clock=loop.time, name="a")
    sb = Stack(PLUGINS, clock=loop.time, name="b")
    sa.add_interface(la, address=f"{A}/24")
    sb.add_interface(lb, address=f"{B}/24")
    ra, rb = AsyncioRunner(sa, loop), AsyncioRunner(sb, loop)
    ra.start()
    rb.start()
    try:
        st, server = await create_datagram_endpoint(
            sb, lambda: Recorder(echo=True), local_addr=("0.0.0.0", 7)
        )
        ct, client = await create_datagram_endpoint(sa, Recorder, remote_addr=(B, 7))
        assert isinstance(client, Recorder) and isinstance(server, Recorder)
        assert client.made == 1 and server.made == 1  # connection_made ran before the return
        assert isinstance(ct, asyncio.DatagramTransport)
        assert ct.get_extra_info("peername") == (B, 7)
        assert ct.get_write_buffer_size() == 0

        for i in range(50):
            client.got_datagram = asyncio.Event()
            ct.sendto(f"message {i}".encode())
            await asyncio.wait_for(client.got_datagram.wait(), 2.0)
        assert client.payloads == [f"message {i}".encode() for i in range(50)]
        assert {addr for _, addr in server.datagrams} == {(A, ct.get_extra_info("sockname")[1])}

        # ICMP port unreachable from b arrives as ConnectionRefusedError
        rt, refused = await create_datagram_endpoint(sa, Recorder, remote_addr=(B, 9))
        assert isinstance(refused, Recorder)
        refused.got_error = asyncio.Event()
        rt.sendto(b"closed?")
        await asyncio.wait_for(refused.got_error.wait(), 2.0)
        assert isinstance(refused.errors[0], ConnectionRefusedError)

        ct.close()
        assert ct.is_closing()
        await asyncio.sleep(0)
        assert client.lost == [None]
        for t in (st, rt):
            t.close()
    finally:
        ra.stop()
        rb.stop()


def test_asyncio_endpoints_between_two_stacks_in_real_time() -> None:
    asyncio.run(asyncio.wait_for(_asyncio_exchange(), 10.0))


async def _datagrams_before_connection_made_wait() -> None:
    # A datagram that arrives while connection_made is still scheduled waits for it.
    loop = asyncio.get_running_loop()
    la, lb = MemoryLink.pair(("a0", "b0"), medium=Medium.IP)
    sa = Stack(PLUGINS, clock=loop.time)
    sb = Stack(PLUGINS, clock=loop.time)
    sa.add_interface(la, address=f"{A}/24")
    ib = sb.add_interface(lb, address=f"{B}/24")
    ra, rb = AsyncioRunner(sa, loop), AsyncioRunner(sb, loop)
    ra.start()
    rb.start()
    order: list[str] = []

    class Early(Recorder):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            order.append("made")
            super().connection_made(transport)

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            order.append("datagram")
            super().datagram_received(data, addr)

    try:
        _, sender = open_datagram_endpoint(sa, Recorder)
        assert isinstance(sender, Recorder)
        task = asyncio.ensure_future(
            create_datagram_endpoint(sb, Early, local_addr=("0.0.0.0", 5000))
        )
        await asyncio.sleep(0)  # the endpoint is bound; connection_made is scheduled
        assert sender.transport is not None
        sender.transport.sendto(b"early", (B, 5000))
        # hand the frame to b now, before the scheduled connection_made can run
        while (got := lb.recv()) is not None:
            sb.receive(ib, got[0], got[1])
        assert order == []
        assert sb.report()["connections"][0]["recv_q"] == 5
        t, _ = await task
        await asyncio.sleep(0.05)
        assert order[0] == "made" and order[1:] == ["datagram"]
        t.close()
    finally:
        ra.stop()
        rb.stop()


def test_datagram_before_connection_made_is_held() -> None:
    asyncio.run(asyncio.wait_for(_datagrams_before_connection_made_wait(), 10.0))
