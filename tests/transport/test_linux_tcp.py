"""TCP and UDP against Linux over a TAP, in what tests/tcp/test_tcp_linux.py leaves out:
hundreds of connections held open at once both ways (all echoing), resets from a Linux
client (SO_LINGER 0) in the middle of a transfer, a Linux client's half-close mid-stream,
and the blocking API (layers.blocking) on a TAP against Linux sockets, TCP and UDP both ways
with port unreachable both ways."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import pytest
from transport_support import (
    LINUX_IP,
    PLUGINS,
    STACK_IP,
    blob,
    kernel_connect,
    kernel_server,
    kernel_socket,
    sha,
    stack_on_tap,
    tap_device,
)

from layers.blocking import BlockingStack
from layers.netns import NetNamespace
from layers.streams import open_connection, start_server

pytestmark = pytest.mark.root

N_CONNECTIONS = 250


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    except ConnectionError:
        pass
    finally:
        writer.close()


def test_linux_holds_hundreds_of_connections_to_us(netns: NetNamespace) -> None:
    async def main() -> None:
        async with stack_on_tap(netns) as (stack, _):
            server = await start_server(stack, _echo, "0.0.0.0", 7300, backlog=N_CONNECTIONS)
            conns = await asyncio.gather(
                *(kernel_connect(netns, STACK_IP, 7300) for _ in range(N_CONNECTIONS)))
            rows = stack.report()["connections"]
            assert sum(r["state"] == "ESTABLISHED" for r in rows) == N_CONNECTIONS

            async def talk(i: int, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> bytes:
                msg = b"connection %d says hello\n" % i
                writer.write(msg)
                line = await asyncio.wait_for(reader.readline(), 20)
                return line

            lines = await asyncio.gather(*(talk(i, r, w) for i, (r, w) in enumerate(conns)))
            assert lines == [b"connection %d says hello\n" % i for i in range(N_CONNECTIONS)]
            # all still open; a second round on every one of them at once
            lines = await asyncio.gather(*(talk(-i, r, w) for i, (r, w) in enumerate(conns)))
            assert lines == [b"connection %d says hello\n" % -i for i in range(N_CONNECTIONS)]
            assert stack.counters["tcp"]["CurrEstab"] == N_CONNECTIONS
            for _, w in conns:
                w.close()
            await asyncio.sleep(0.3)
            server.close()
            await asyncio.wait_for(server.wait_closed(), 10)
            assert stack.counters["tcp"]["CurrEstab"] == 0

    asyncio.run(main())


def test_we_hold_hundreds_of_connections_to_linux(netns: NetNamespace) -> None:
    async def main() -> None:
        async with stack_on_tap(netns) as (stack, _):
            linux = await kernel_server(netns, _echo, 7301)
            conns = await asyncio.gather(
                *(open_connection(stack, LINUX_IP, 7301) for _ in range(N_CONNECTIONS)))
            ports = {w.get_extra_info("sockname")[1] for _, w in conns}
            assert len(ports) == N_CONNECTIONS  # distinct ephemeral ports

            async def talk(i: int, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> bytes:
                writer.write(b"%d\n" % i)
                return await asyncio.wait_for(reader.readline(), 20)

            lines = await asyncio.gather(*(talk(i, r, w) for i, (r, w) in enumerate(conns)))
            assert lines == [b"%d\n" % i for i in range(N_CONNECTIONS)]
            assert stack.counters["tcp"]["CurrEstab"] == N_CONNECTIONS
            for _, w in conns:
                w.close()
            linux.close()

    asyncio.run(main())


def test_linux_client_resets_mid_transfer(netns: NetNamespace) -> None:
    """A Linux client closes with SO_LINGER 0 while our server is still sending: our side
    sees ECONNRESET and the connection is gone from the table."""

    async def main() -> None:
        outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            chunk = bytes(1 << 16)
            try:
                while True:
                    writer.write(chunk)
                    await writer.drain()
            except ConnectionError as exc:
                outcome.set_result(exc)
            finally:
                writer.close()

        async with stack_on_tap(netns) as (stack, _):
            await start_server(stack, flood, "0.0.0.0", 7302)
            reader, writer = await kernel_connect(netns, STACK_IP, 7302)
            got = 0
            while got < 1 << 20:
                got += len(await asyncio.wait_for(reader.read(1 << 16), 10))
            sock = writer.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # close() of the socket with linger 0: RST
            exc = await asyncio.wait_for(outcome, 10)
            assert isinstance(exc, ConnectionResetError), exc
            assert stack.counters["tcp"]["EstabResets"] >= 1
            await asyncio.sleep(0.05)
            assert stack.report()["connections"] == []

    asyncio.run(main())


def test_linux_half_closes_mid_stream_and_reads_the_rest(netns: NetNamespace) -> None:
    """Linux sends 3 MiB and shuts down writing; our server sends 3 MiB back only after the
    FIN and closes; both sides get every byte (SHA-256)."""
    up, down = blob(3 << 20, 1), blob(3 << 20, 2)

    async def main() -> None:
        received: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            received.set_result(sha(await reader.read()))
            writer.write(down)
            await writer.drain()
            writer.close()

        async with stack_on_tap(netns) as (stack, _):
            await start_server(stack, after_eof, "0.0.0.0", 7303)
            reader, writer = await kernel_connect(netns, STACK_IP, 7303)
            writer.write(up)
            await writer.drain()
            writer.write_eof()  # shutdown(SHUT_WR) on the kernel socket
            got = await asyncio.wait_for(reader.read(), 30)
            assert await received == sha(up)
            assert sha(got) == sha(down)
            writer.close()

    asyncio.run(main())


# --- the blocking API on a TAP ------------------------------------------------------------


def test_blocking_api_against_linux_sockets(netns: NetNamespace) -> None:
    tap = tap_device(netns)
    with BlockingStack(tap, f"{STACK_IP}/24", plugins=PLUGINS) as s:
        # our blocking client to a Linux server (a thread with blocking kernel sockets)
        listener = kernel_socket(netns)
        listener.setblocking(True)
        listener.bind((LINUX_IP, 7400))
        listener.listen(1)
        data = blob(2 << 20, 5)
        served: list[str] = []

        def linux_server() -> None:
            conn, _ = listener.accept()
            got = bytearray()
            while chunk := conn.recv(1 << 16):
                got.extend(chunk)
            served.append(sha(got))
            conn.sendall(b"digest " + sha(got).encode())
            conn.close()

        t = threading.Thread(target=linux_server)
        t.start()
        conn = s.connect((LINUX_IP, 7400), timeout=10)
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv_all() == b"digest " + sha(data).encode()
        conn.close()
        t.join(10)
        listener.close()
        with pytest.raises(ConnectionRefusedError):
            s.connect((LINUX_IP, 7401), timeout=10)

        # a Linux client to our blocking server
        server = s.listen(7402)
        server.settimeout(10)
        client = kernel_socket(netns)
        client.setblocking(True)
        client.settimeout(10)
        client.connect((STACK_IP, 7402))
        peer, addr = server.accept()
        assert addr == client.getsockname()
        client.sendall(b"hello stack")
        assert peer.recv_exactly(11) == b"hello stack"
        peer.sendall(b"hello linux")
        assert client.recv(100) == b"hello linux"
        client.close()
        peer.settimeout(5)
        assert peer.recv(10) == b""
        peer.close()
        server.close()

        # UDP both ways, and port unreachable both ways
        usock = kernel_socket(netns, socket.SOCK_DGRAM)
        usock.setblocking(True)
        usock.settimeout(5)
        usock.bind((LINUX_IP, 5300))
        udp = s.udp(local_addr=("0.0.0.0", 5301))
        udp.settimeout(5)
        udp.sendto(b"to linux", (LINUX_IP, 5300))
        payload, src = usock.recvfrom(100)
        assert payload == b"to linux" and src == (STACK_IP, 5301)
        usock.sendto(b"to the stack", (STACK_IP, 5301))
        assert udp.recvfrom(100) == (b"to the stack", (LINUX_IP, 5300))
        usock.connect((STACK_IP, 5999))
        usock.send(b"closed?")
        with pytest.raises(ConnectionRefusedError):
            usock.recv(100)
        usock.close()
        lonely = s.udp(remote_addr=(LINUX_IP, 5998))
        lonely.settimeout(5)
        lonely.send(b"closed?")
        with pytest.raises(ConnectionRefusedError):
            lonely.recv()

        # ping from the blocking API
        (reply,) = s.ping(LINUX_IP)
        assert reply.ok
