"""``layers nc`` on a stack over a real-time memory link (no root): the Netcat engine with a
pipe as stdin and a buffer as stdout, against services on a second stack; argument checks of
the command itself. Linux's own nc is the peer in test_nc_linux.py."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import random
from collections.abc import AsyncIterator, Iterator

import pytest

from layers.cli import main
from layers.cli.netcat import Netcat, describe_error
from layers.datagrams import create_datagram_endpoint
from layers.links.base import Medium
from layers.links.memory import MemoryLink
from layers.runtime import AsyncioRunner
from layers.stack import Stack
from layers.streams import open_connection, start_server

PLUGINS = ["arp", "ipv4", "icmp", "udp", "tcp"]


@contextlib.asynccontextmanager
async def two_stacks() -> AsyncIterator[tuple[Stack, Stack]]:
    loop = asyncio.get_running_loop()
    sa = Stack(PLUGINS, clock=loop.time, name="a")
    sb = Stack(PLUGINS, clock=loop.time, name="b")
    la, lb = MemoryLink.pair(("ma", "mb"), medium=Medium.ETHERNET)
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


@contextlib.contextmanager
def stdin_pipe(data: bytes | None, *, close: bool = True) -> Iterator[tuple[int, int]]:
    """A pipe as nc's stdin; ``data`` is written by a thread (then closed when ``close``)."""
    import threading

    r, w = os.pipe()

    def feed() -> None:
        if data:
            os.write(w, data) if len(data) < 60000 else _write_all(w, data)
        if close:
            os.close(w)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        yield r, w
    finally:
        t.join(5)
        if not close:
            with contextlib.suppress(OSError):
                os.close(w)
        # the reader thread may still be blocked in read(): it ends at EOF above


@contextlib.contextmanager
def terminal() -> Iterator[int]:
    """A pseudo-terminal's slave end as nc's stdin (nothing typed): an interactive user."""
    import pty

    master, slave = pty.openpty()
    try:
        yield slave
    finally:
        os.close(master)  # the reader thread sees EOF/EIO and ends
        os.close(slave)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]
        self.seen: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen.append(data)
        self.transport.sendto(data.upper(), addr)


def test_tcp_client_to_echo_half_closes_at_stdin_eof() -> None:
    data = b"hello\nworld\n" + random.Random(1).randbytes(1 << 20)

    async def main_() -> None:
        async with two_stacks() as (a, b):
            await start_server(b, echo, "0.0.0.0", 7)
            out = io.BytesIO()
            with stdin_pipe(data) as (r, _):
                nc = Netcat(a, stdin_fd=r, stdout=out)
                rc = await asyncio.wait_for(nc.tcp_connect("10.0.0.2", 7), 30)
            assert rc == 0
            assert hashlib.sha256(out.getvalue()).digest() == hashlib.sha256(data).digest()

    asyncio.run(main_())


def test_tcp_client_on_a_terminal_ends_when_the_peer_closes() -> None:
    async def main_() -> None:
        async with two_stacks() as (a, b):
            async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.write(b"220 hello\r\n")
                await writer.drain()
                writer.close()

            await start_server(b, greet, "0.0.0.0", 25)
            out = io.BytesIO()
            with terminal() as tty:
                nc = Netcat(a, stdin_fd=tty, stdout=out)
                assert await asyncio.wait_for(nc.tcp_connect("10.0.0.2", 25), 10) == 0
            assert out.getvalue() == b"220 hello\r\n"

    asyncio.run(main_())


def test_tcp_client_sends_the_rest_of_a_pipe_to_a_half_closed_peer() -> None:
    """The peer finishes first (FIN) but reads on: the rest of stdin still goes out."""
    data = random.Random(5).randbytes(400_000)

    async def main_() -> None:
        async with two_stacks() as (a, b):
            got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

            async def hello_then_listen(reader: asyncio.StreamReader,
                                        writer: asyncio.StreamWriter) -> None:
                writer.write(b"send me everything\n")
                writer.write_eof()
                got.set_result(await reader.read())
                writer.close()

            await start_server(b, hello_then_listen, "0.0.0.0", 26)
            out = io.BytesIO()
            with stdin_pipe(data) as (r, _):
                nc = Netcat(a, stdin_fd=r, stdout=out)
                assert await asyncio.wait_for(nc.tcp_connect("10.0.0.2", 26), 20) == 0
            assert out.getvalue() == b"send me everything\n"
            assert await asyncio.wait_for(got, 5) == data

    asyncio.run(main_())


def test_tcp_quit_after_stdin_eof_when_the_peer_stays() -> None:
    async def main_() -> None:
        async with two_stacks() as (a, b):
            held: list[asyncio.StreamWriter] = []

            def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                held.append(writer)  # never answers, never closes

            await start_server(b, silent, "0.0.0.0", 9)
            loop = asyncio.get_running_loop()
            with stdin_pipe(b"bye\n") as (r, _):
                nc = Netcat(a, stdin_fd=r, stdout=io.BytesIO(), quit_after=0.3)
                t0 = loop.time()
                assert await asyncio.wait_for(nc.tcp_connect("10.0.0.2", 9), 10) == 0
                assert 0.25 < loop.time() - t0 < 3

    asyncio.run(main_())


def test_tcp_errors_are_socket_errors() -> None:
    async def main_() -> None:
        async with two_stacks() as (a, _b):
            nc = Netcat(a, stdin_fd=0, stdout=io.BytesIO())
            with pytest.raises(ConnectionRefusedError) as refused:
                await asyncio.wait_for(nc.tcp_connect("10.0.0.2", 4444), 10)
            assert describe_error(refused.value) == "connection refused"
            with pytest.raises(TimeoutError) as timed_out:
                await nc.tcp_connect("10.0.0.99", 80, timeout=0.3)  # nobody answers ARP
            assert describe_error(timed_out.value) == "connection timed out"

    asyncio.run(main_())


def test_tcp_listen_accepts_one_connection() -> None:
    upload = random.Random(2).randbytes(300_000)
    reply = b"thanks\n" * 1000

    async def main_() -> None:
        async with two_stacks() as (a, b):
            out = io.BytesIO()
            with stdin_pipe(reply) as (r, _):
                nc = Netcat(b, stdin_fd=r, stdout=out)
                task = asyncio.ensure_future(nc.tcp_listen(None, 5000))
                await asyncio.sleep(0.05)
                reader, writer = await open_connection(a, "10.0.0.2", 5000)
                writer.write(upload)
                writer.write_eof()
                got = await asyncio.wait_for(reader.read(), 20)
                assert got == reply
                assert await asyncio.wait_for(task, 10) == 0
            assert out.getvalue() == upload
            writer.close()
            # the listener went away with the first connection
            with pytest.raises(ConnectionRefusedError):
                await open_connection(a, "10.0.0.2", 5000)

    asyncio.run(main_())


def test_tcp_listen_keep_serves_one_after_another() -> None:
    async def main_() -> None:
        async with two_stacks() as (a, b):
            out = io.BytesIO()
            with terminal() as tty:
                nc = Netcat(b, stdin_fd=tty, stdout=out)
                task = asyncio.ensure_future(nc.tcp_listen("10.0.0.2", 5001, keep=True))
                await asyncio.sleep(0.05)
                for i in range(3):
                    reader, writer = await open_connection(a, "10.0.0.2", 5001)
                    writer.write(b"client %d\n" % i)
                    writer.write_eof()
                    await asyncio.wait_for(reader.read(), 10)  # nc closes after our FIN...
                    writer.close()
                    await asyncio.sleep(0.02)
                assert not task.done()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            assert out.getvalue() == b"client 0\nclient 1\nclient 2\n"

    asyncio.run(main_())


def test_udp_client_sends_lines_and_prints_replies() -> None:
    async def main_() -> None:
        async with two_stacks() as (a, b):
            _, server = await create_datagram_endpoint(b, UdpEcho, local_addr=("0.0.0.0", 7))
            assert isinstance(server, UdpEcho)
            out = io.BytesIO()
            with stdin_pipe(b"one\ntwo\nthree") as (r, _):
                nc = Netcat(a, stdin_fd=r, stdout=out, quit_after=0.3)
                assert await asyncio.wait_for(nc.udp("10.0.0.2", 7), 10) == 0
            assert server.seen == [b"one\n", b"two\n", b"three"]
            assert out.getvalue() == b"ONE\nTWO\nTHREE"

    asyncio.run(main_())


def test_udp_long_line_is_cut_into_maximal_datagrams() -> None:
    async def main_() -> None:
        async with two_stacks() as (a, b):
            _, server = await create_datagram_endpoint(b, UdpEcho, local_addr=("0.0.0.0", 7))
            assert isinstance(server, UdpEcho)
            blob = b"x" * 70000
            with stdin_pipe(blob) as (r, _):
                nc = Netcat(a, stdin_fd=r, stdout=io.BytesIO(), quit_after=0.3)
                assert await asyncio.wait_for(nc.udp("10.0.0.2", 7), 10) == 0
            assert [len(d) for d in server.seen] == [65507, 70000 - 65507]

    asyncio.run(main_())


def test_udp_port_unreachable_is_connection_refused() -> None:
    async def main_() -> None:
        async with two_stacks() as (a, _b):
            with stdin_pipe(b"hello?\n", close=False) as (r, _):
                nc = Netcat(a, stdin_fd=r, stdout=io.BytesIO())
                with pytest.raises(ConnectionRefusedError):
                    await asyncio.wait_for(nc.udp("10.0.0.2", 9999), 10)

    asyncio.run(main_())


def test_udp_listen_answers_the_first_sender_only() -> None:
    async def main_() -> None:
        async with two_stacks() as (a, b):
            out = io.BytesIO()
            r, w = os.pipe()
            try:
                nc = Netcat(b, stdin_fd=r, stdout=out, quit_after=0.3)
                task = asyncio.ensure_future(nc.udp(None, 6000, listen=True))
                await asyncio.sleep(0.05)
                first_t, first = await create_datagram_endpoint(
                    a, UdpEcho, remote_addr=("10.0.0.2", 6000))
                other_t, _ = await create_datagram_endpoint(
                    a, UdpEcho, remote_addr=("10.0.0.2", 6000))
                first_t.sendto(b"from first\n")
                await asyncio.sleep(0.05)
                other_t.sendto(b"from other\n")
                os.write(w, b"reply\n")
                await asyncio.sleep(0.2)
                assert isinstance(first, UdpEcho)
                assert first.seen == [b"reply\n"]
            finally:
                os.close(w)
            assert await asyncio.wait_for(task, 5) == 0
            os.close(r)
            assert out.getvalue() == b"from first\nREPLY\n"  # not "from other"
            first_t.close()
            other_t.close()

    asyncio.run(main_())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["10.0.0.1"], "nc takes HOST PORT"),
        (["10.0.0.1", "http"], "should be a number"),
        (["-l", "1", "2", "3"], "nc -l takes [HOST] PORT"),
        (["example.org", "80"], "not"),
        (["-k", "10.0.0.1", "80"], "-k only makes sense with -l"),
        (["-w", "0", "10.0.0.1", "80"], "-w wants a positive"),
    ],
)
def test_command_checks_arguments_before_opening_anything(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # a device name that cannot exist: nothing is opened when the arguments are wrong
    rc = main(["nc", "--link", "tap:never-opened0", "--address", "10.0.0.2/24", *argv])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err, err


def test_command_needs_a_link(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nc", "10.0.0.1", "7"]) == 2
    assert "--link" in capsys.readouterr().err
