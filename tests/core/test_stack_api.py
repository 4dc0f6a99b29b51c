"""The application API on the Stack object itself, over a real-time memory link."""

from __future__ import annotations

import asyncio

from layers import Stack
from layers.links import MemoryLink
from layers.runtime import AsyncioRunner


async def _pair() -> tuple[Stack, Stack, list[AsyncioRunner]]:
    loop = asyncio.get_running_loop()
    la, lb = MemoryLink.pair()
    plugins = ["arp", "ipv4", "icmp", "udp", "tcp"]
    a = Stack(plugins, clock=loop.time, settings={"arp.gratuitous_count": 0})
    b = Stack(plugins, clock=loop.time, settings={"arp.gratuitous_count": 0})
    a.add_interface(la, address="10.0.0.1/24")
    b.add_interface(lb, address="10.0.0.2/24")
    runners = [AsyncioRunner(a, loop), AsyncioRunner(b, loop)]
    for r in runners:
        r.start()
    return a, b, runners


def test_stack_methods_echo_tcp_and_udp() -> None:
    async def main() -> tuple[bytes, bytes]:
        a, b, runners = await _pair()
        try:
            async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write(await reader.read(100))
                await writer.drain()
                writer.close()

            server = await b.start_server(echo, "10.0.0.2", 7)
            reader, writer = await a.open_connection("10.0.0.2", 7)
            writer.write(b"over tcp")
            tcp_reply = await asyncio.wait_for(reader.read(100), 5)
            writer.close()
            server.close()

            got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

            class Echo(asyncio.DatagramProtocol):
                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    self.t = transport

                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    self.t.sendto(data, addr)  # type: ignore[attr-defined]

            class Client(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    got.set_result(data)

            await b.create_datagram_endpoint(Echo, local_addr=("0.0.0.0", 7))
            t, _ = await a.create_datagram_endpoint(Client, remote_addr=("10.0.0.2", 7))
            t.sendto(b"over udp")
            udp_reply = await asyncio.wait_for(got, 5)
            return tcp_reply, udp_reply
        finally:
            for r in runners:
                r.stop()

    assert asyncio.run(main()) == (b"over tcp", b"over udp")
