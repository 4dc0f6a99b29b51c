"""layers.streams.create_server (protocol-level, like loop.create_server) and the discard
service built on it, between two stacks on a real-time memory link under asyncio: a protocol
that closes in eof_received sends its FIN in the segment that acknowledges the client's."""

from __future__ import annotations

import asyncio
from typing import Any

from test_tcp_streams import two_stacks

from layers.services import Discard, start_services, stop_services
from layers.streams import create_server, open_connection


class Upper(asyncio.Protocol):
    """Answers each chunk in upper case, and half-closes back when the client does."""

    made: list[Upper] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.lost: list[Exception | None] = []
        Upper.made.append(self)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())

    def eof_received(self) -> bool:
        self.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


def test_create_server_runs_a_protocol_per_connection_and_waits_for_them() -> None:
    async def main() -> None:
        Upper.made.clear()
        async with two_stacks() as (a, b):
            server = await create_server(b, Upper, "0.0.0.0", 7)
            assert server.is_serving() and server.sockets[0].getsockname() == ("0.0.0.0", 7)
            reader, writer = await open_connection(a, "10.0.0.2", 7)
            writer.write(b"hello ")
            writer.write(b"world")
            assert await asyncio.wait_for(reader.readexactly(11), 5) == b"HELLO WORLD"
            server.close()
            assert not server.is_serving()
            waiting = asyncio.ensure_future(server.wait_closed())
            await asyncio.sleep(0.05)
            assert not waiting.done()  # the accepted connection is still open
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            await asyncio.wait_for(waiting, 5)
            assert len(Upper.made) == 1 and Upper.made[0].lost == [None]
            writer.close()

    asyncio.run(main())


def test_discard_service_answers_the_clients_fin_with_its_own_in_one_segment() -> None:
    async def main() -> None:
        async with two_stacks() as (a, b):
            services = await start_services(b, ["discard:9"])
            reader, writer = await open_connection(a, "10.0.0.2", 9)
            sent_before = b.counters["tcp"]["OutSegs"]  # the SYN-ACK
            writer.write(b"x" * 5000)
            await writer.drain()
            await asyncio.sleep(0.05)
            data_acks = b.counters["tcp"]["OutSegs"] - sent_before
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # the server's FIN
            await asyncio.sleep(0.05)
            # one segment answered the client's FIN: our FIN, carrying its acknowledgement
            assert b.counters["tcp"]["OutSegs"] - sent_before - data_acks == 1
            writer.close()
            await stop_services(services)
            assert b.counters["tcp"]["CurrEstab"] == 0

    asyncio.run(main())


def test_discard_protocol_closes_on_eof() -> None:
    class Transport:
        closed = 0

        def close(self) -> None:
            self.closed += 1

    d = Discard()
    t = Transport()
    d.connection_made(t)  # type: ignore[arg-type]
    d.data_received(b"thrown away")
    assert t.closed == 0
    assert d.eof_received() is True
    assert t.closed == 1
