"""layers.streams between two stacks on a real-time memory link under asyncio: the stdlib's
StreamReader/StreamWriter over our transport, servers, errors, back-pressure, half-close."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from layers.errors import ConfigurationError
from layers.hookspecs import hookimpl
from layers.links.base import Medium
from layers.links.memory import MemoryLink
from layers.runtime import AsyncioRunner
from layers.stack import Stack
from layers.streams import StreamService, open_connection, start_server, stream_service

PLUGINS = ["ipv4", "tcp"]


@asynccontextmanager
async def two_stacks(settings: dict[str, Any] | None = None,
                     plugins: list[Any] | None = None) -> AsyncIterator[tuple[Stack, Stack]]:
    loop = asyncio.get_running_loop()
    sa = Stack(plugins or PLUGINS, clock=loop.time, settings=settings, name="a")
    sb = Stack(plugins or PLUGINS, clock=loop.time, settings=settings, name="b")
    la, lb = MemoryLink.pair(("ma", "mb"), medium=Medium.IP)
    sa.add_interface(la, address="10.0.0.1/24")
    sb.add_interface(lb, address="10.0.0.2/24")
    ra, rb = AsyncioRunner(sa, loop), AsyncioRunner(sb, loop)
    ra.start()
    rb.start()
    try:
        yield sa, sb
    finally:
        ra.stop()
        rb.stop()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    finally:
        writer.close()


def test_echo_over_streams() -> None:
    async def main() -> None:
        async with two_stacks() as (a, b):
            server = await start_server(b, echo, "0.0.0.0", 7)
            assert server.is_serving()
            assert server.sockets[0].getsockname() == ("0.0.0.0", 7)
            reader, writer = await open_connection(a, "10.0.0.2", 7)
            assert isinstance(reader, asyncio.StreamReader)
            assert isinstance(writer, asyncio.StreamWriter)
            assert writer.get_extra_info("peername") == ("10.0.0.2", 7)
            writer.write(b"hello\n")
            assert await reader.readline() == b"hello\n"
            data = random.Random(1).randbytes(3 << 20)
            writer.write(data)
            writer.write_eof()
            got = await asyncio.wait_for(reader.read(), 30)
            assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 5)
            server.close()
            await asyncio.wait_for(server.wait_closed(), 5)
            assert not server.is_serving() and server.sockets == ()

    asyncio.run(main())


def test_refused_and_unroutable() -> None:
    async def main() -> None:
        async with two_stacks() as (a, _b):
            with pytest.raises(ConnectionRefusedError) as info:
                await open_connection(a, "10.0.0.2", 9)
            assert info.value.errno == errno.ECONNREFUSED
            with pytest.raises(OSError) as info2:
                await open_connection(a, "192.168.7.7", 9)
            assert info2.value.errno == errno.ENETUNREACH
            with pytest.raises(ConfigurationError, match="resolves no names"):
                await open_connection(a, "example.com", 80)

    asyncio.run(main())


def test_connect_timeout_is_timeouterror() -> None:
    async def main() -> None:
        async with two_stacks({"tcp.syn_retries": 1, "tcp.rto_initial": 0.05,
                               "tcp.rto_min": 0.05}) as (a, _b):
            with pytest.raises(TimeoutError) as info:
                await open_connection(a, "10.0.0.99", 9)
            assert info.value.errno == errno.ETIMEDOUT

    asyncio.run(main())


def test_reset_by_peer_surfaces_as_connection_reset() -> None:
    async def main() -> None:
        got: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

        async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            got.set_result(w)

        async with two_stacks() as (a, b):
            await start_server(b, handler, None, 8)
            reader, _writer = await open_connection(a, "10.0.0.2", 8)
            peer = await got
            peer.transport.abort()
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(10), 5)

    asyncio.run(main())


def test_half_close_with_streams() -> None:
    async def main() -> None:
        async def upper(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            request = await r.read()  # until our EOF
            w.write(request.upper())
            await w.drain()
            w.close()

        async with two_stacks() as (a, b):
            await start_server(b, upper, None, 9)
            reader, writer = await open_connection(a, "10.0.0.2", 9)
            writer.write(b"shout this")
            assert writer.can_write_eof()
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b"SHOUT THIS"
            assert reader.at_eof()
            writer.close()
            await writer.wait_closed()

    asyncio.run(main())


def test_drain_applies_back_pressure() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def slow(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await release.wait()
            total = 0
            while data := await r.read(1 << 16):
                total += len(data)
            w.write(str(total).encode())
            w.close()

        async with two_stacks({"tcp.rcvbuf": 65536, "tcp.sndbuf": 65536}) as (a, b):
            await start_server(b, slow, None, 10, limit=16384)
            reader, writer = await open_connection(a, "10.0.0.2", 10)
            writer.transport.set_write_buffer_limits(high=32768)
            chunk = b"p" * 65536
            writer.write(chunk * 4)
            # the peer is not reading: its window closes, our buffer fills, drain waits
            drain = asyncio.ensure_future(writer.drain())
            await asyncio.sleep(0.2)
            assert not drain.done()
            assert writer.transport.get_write_buffer_size() > 0
            release.set()
            await asyncio.wait_for(drain, 10)
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 10) == b"262144"

    asyncio.run(main())


def test_server_context_manager_serve_forever_and_start_serving() -> None:
    async def main() -> None:
        async with two_stacks() as (a, b):
            server = await start_server(b, echo, None, 11, start_serving=False)
            assert not server.is_serving()
            # the connection completes into the accept queue, then waits for the server
            reader, writer = await open_connection(a, "10.0.0.2", 11)
            writer.write(b"queued")
            task = asyncio.ensure_future(server.serve_forever())
            await asyncio.sleep(0)
            assert server.is_serving()
            assert await asyncio.wait_for(reader.readexactly(6), 5) == b"queued"
            writer.close()
            await writer.wait_closed()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not server.is_serving()

            async with await start_server(b, echo, None, 12) as s2:
                r2, w2 = await open_connection(a, "10.0.0.2", 12)
                w2.write(b"x")
                assert await r2.readexactly(1) == b"x"
                w2.close()
            assert s2.sockets == ()

    asyncio.run(main())


def test_ephemeral_server_port_and_many_clients() -> None:
    async def main() -> None:
        async with two_stacks() as (a, b):
            server = await start_server(b, echo, None, 0)
            port = server.sockets[0].getsockname()[1]
            assert port > 0

            async def client(i: int) -> bytes:
                r, w = await open_connection(a, "10.0.0.2", port, nodelay=True)
                w.write(b"client %d" % i)
                w.write_eof()
                out = await r.read()
                w.close()
                await w.wait_closed()
                return out

            results = await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(20))), 20)
            assert results == [b"client %d" % i for i in range(20)]
            server.close()
            await asyncio.wait_for(server.wait_closed(), 5)

    asyncio.run(main())


def test_missing_stream_service_names_the_fix() -> None:
    stack = Stack(["ipv4"])
    with pytest.raises(ConfigurationError, match="add tcp"):
        stream_service(stack)


def test_a_third_party_stream_service_is_used() -> None:
    """Any protocol object with connect/listen serves open_connection (here: a fake that
    wraps our TCP, to see the API goes through stack.find)."""
    calls: list[str] = []

    class Wrapper:
        name = "fake-streams"

        def __init__(self, stack: Stack) -> None:
            self.stack = stack

        def connect(self, protocol: Any, host: int, port: int, **kw: Any) -> Any:
            calls.append("connect")
            return self.stack.protocol("tcp").connect(protocol, host, port, **kw)

        def listen(self, factory: Callable[[], Any], host: int, port: int, **kw: Any) -> Any:
            calls.append("listen")
            return self.stack.protocol("tcp").listen(factory, host, port, **kw)

        protocol = 253

        def receive(self, datagram: Any) -> None: ...

        def error(self, error: Any) -> None: ...

    class Plugin:
        @hookimpl(tryfirst=True)  # so that stack.find meets it before the real tcp
        def layers_transport_protocols(self, stack: Stack) -> list[Any]:
            return [Wrapper(stack)]

    async def main() -> None:
        async with two_stacks(plugins=[Plugin(), "ipv4", "tcp"]) as (a, b):
            assert isinstance(stream_service(a), Wrapper)
            assert isinstance(stream_service(a), StreamService)
            await start_server(b, echo, None, 13)
            r, w = await open_connection(a, "10.0.0.2", 13)
            w.write(b"via wrapper")
            assert await r.readexactly(11) == b"via wrapper"
            w.close()

    asyncio.run(main())
    assert calls[:2] == ["listen", "connect"]


def test_only_asyncios_own_stream_reader_protocol_takes_views() -> None:
    # its data_received copies into the reader's buffer: a frame's view spares a copy; any
    # other protocol (a subclass that overrides data_received included) gets bytes
    from layers_tcp.transport import _takes_views

    class Keeps(asyncio.StreamReaderProtocol):
        def data_received(self, data: bytes) -> None:
            self.kept = data

    assert _takes_views(object.__new__(asyncio.StreamReaderProtocol))
    assert not _takes_views(object.__new__(Keeps))
    assert not _takes_views(asyncio.Protocol())
    assert not _takes_views(None)


def test_an_ip_service_without_send_pieces_still_carries_tcp_data() -> None:
    # send_pieces is an optional fast path of the IP services: a third-party network plugin
    # written before it existed offers only send, and TCP's data goes through that
    sent: list[dict[str, Any]] = []

    class OnlySend:
        def __init__(self, ip: Any) -> None:
            self._ip = ip

        def send(self, *args: Any, **kw: Any) -> bool:
            sent.append(kw)
            return bool(self._ip.send(*args, **kw))

        def __getattr__(self, name: str) -> Any:
            if name == "send_pieces":
                raise AttributeError(name)
            return getattr(self._ip, name)

    async def main() -> None:
        async with two_stacks() as (a, b):
            a.ip = OnlySend(a.ip)
            await start_server(b, echo, None, 13)
            r, w = await open_connection(a, "10.0.0.2", 13)
            data = bytes(range(256)) * 64
            w.write(data)
            assert await r.readexactly(len(data)) == data
            w.close()

    asyncio.run(main())
    assert len(sent) > 3 and all(kw.get("dont_fragment") for kw in sent)
