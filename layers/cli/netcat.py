"""``layers nc``: netcat over a composed stack. :class:`Netcat` is the engine (stdin into a
TCP connection or UDP datagrams, the network to stdout, as a client or a listener), usable from
tests with any file descriptor and binary file; :func:`cmd_nc` is the command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from layers.cli.common import PROG, Commands, compose
from layers.errors import ConfigurationError
from layers.stack import Stack
from layers.wire.addr import ip4

NC_MAX_DATAGRAM = 65507


class _Stdin:
    """Chunks of a file descriptor, read by a daemon thread (works for pipes, files and
    terminals alike, which the event loop cannot all watch). Empty bytes mean EOF, forever."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._started = False
        self.eof = False

    def _run(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except OSError:
                chunk = b""
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, chunk)
            except RuntimeError:
                return  # the loop is gone
            if not chunk:
                return

    async def get(self) -> bytes:
        if self.eof:
            return b""
        if not self._started:
            self._started = True
            import threading

            threading.Thread(target=self._run, name="layers-nc-stdin", daemon=True).start()
        chunk = await self._queue.get()
        if not chunk:
            self.eof = True
        return chunk


def describe_error(exc: OSError) -> str:
    """What nc says about a failed connection: ``connection refused``, ``no route to host``..."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        return "connection timed out"
    if exc.errno == errno.EHOSTUNREACH:
        return "no route to host"
    if exc.errno == errno.ENETUNREACH:
        return "network is unreachable"
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


class Netcat:
    """``layers nc``: stdin to the network, the network to stdout (TCP or UDP, client or
    listener), on a running stack. Usable from tests with any fd and binary file."""

    def __init__(
        self,
        stack: Stack,
        *,
        stdin_fd: int = 0,
        stdout: Any = None,
        stderr: Any = None,
        verbose: bool = False,
        quit_after: float | None = None,
    ) -> None:
        self.stack = stack
        self.stdin_fd = stdin_fd
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.stderr = stderr if stderr is not None else sys.stderr
        self.verbose = verbose
        self.quit_after = quit_after if quit_after is not None and quit_after >= 0 else None
        self._stdin: _Stdin | None = None

    def _say(self, text: str) -> None:
        if self.verbose:
            print(text, file=self.stderr, flush=True)

    def _out(self, data: bytes) -> None:
        self.stdout.write(data)
        self.stdout.flush()

    def _interactive(self) -> bool:
        try:
            return os.isatty(self.stdin_fd)
        except OSError:
            return False

    @property
    def stdin(self) -> _Stdin:
        if self._stdin is None:
            self._stdin = _Stdin(self.stdin_fd, asyncio.get_running_loop())
        return self._stdin

    # --- TCP ------------------------------------------------------------------------------
    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Stdin into the connection (FIN at stdin's EOF), the connection to stdout, until
        the peer closes. When the peer finishes first, the rest of stdin still goes out
        (a half-closed peer reads on), unless stdin is a terminal."""
        stdin = self.stdin

        async def to_net() -> None:
            while chunk := await stdin.get():
                writer.write(chunk)
                await writer.drain()
            if not writer.is_closing():
                writer.write_eof()

        async def to_out() -> None:
            loop = asyncio.get_running_loop()
            while data := await reader.read(1 << 16):
                # written by a worker thread: a slow stdout closes the TCP window instead of
                # stalling the stack's loop
                await loop.run_in_executor(None, self._out, data)

        out_task = asyncio.ensure_future(to_out())
        net_task = asyncio.ensure_future(to_net())
        finished = False
        try:
            await asyncio.wait({out_task, net_task}, return_when=asyncio.FIRST_COMPLETED)
            if net_task.done() and net_task.exception() is not None:
                net_task.result()  # raises: the connection failed while sending
            if not out_task.done():
                # stdin ended first (FIN sent): the rest of the peer's data, then its FIN
                if self.quit_after is None:
                    await out_task
                else:
                    await asyncio.wait({out_task}, timeout=self.quit_after)
            if out_task.done():
                out_task.result()  # raises: reset, timed out
                if not net_task.done() and not self._interactive():
                    # The peer finished first, but may only have half-closed: send the rest
                    # of a pipe or file (a peer that closed entirely answers with RST).
                    await net_task
            finished = True
        finally:
            for task in (out_task, net_task):
                task.cancel()
            writer.close()
            # The stack lives in this process: exit only once the peer has everything (our
            # FIN acknowledged), as the kernel goes on delivering after nc's close() returns.
            limit = (self.quit_after if finished else 1.0)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), limit)

    async def tcp_connect(self, host: str, port: int, *, source_port: int | None = None,
                          timeout: float | None = None) -> int:
        from layers.streams import open_connection

        local = ("0.0.0.0", source_port) if source_port else None
        reader, writer = await asyncio.wait_for(
            open_connection(self.stack, host, port, local_addr=local), timeout)
        self._say(f"Connection to {host} {port} port [tcp/*] succeeded!")
        await self._pump(reader, writer)
        return 0

    async def tcp_listen(self, host: str | None, port: int, *, keep: bool = False) -> int:
        from layers.streams import start_server

        accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        accepted = asyncio.Queue()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.put_nowait((reader, writer))

        server = await start_server(self.stack, on_connect, host or "0.0.0.0", port,
                                    backlog=1 if not keep else 16)
        self._say(f"Listening on {host or '0.0.0.0'} {server.sockets[0].getsockname()[1]}")
        try:
            while True:
                reader, writer = await accepted.get()
                if not keep:
                    server.close()  # one connection: later SYNs are refused
                peer = writer.get_extra_info("peername")
                self._say(f"Connection received on {peer[0]} {peer[1]}")
                try:
                    await self._pump(reader, writer)
                except OSError as exc:
                    if not keep:
                        raise
                    print(f"{PROG} nc: {describe_error(exc)}", file=self.stderr, flush=True)
                if not keep:
                    return 0
        finally:
            server.close()

    # --- UDP ------------------------------------------------------------------------------
    async def _send_lines(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Each line of stdin (or each 65507 bytes without a newline) is one datagram."""
        stdin = self.stdin
        pending = b""
        while chunk := await stdin.get():
            pending += chunk
            while True:
                cut = pending.find(b"\n")
                if cut < 0 and len(pending) < NC_MAX_DATAGRAM:
                    break
                end = cut + 1 if 0 <= cut < NC_MAX_DATAGRAM else NC_MAX_DATAGRAM
                await send(pending[:end])
                pending = pending[end:]
        if pending:
            await send(pending)

    async def udp(self, host: str | None, port: int, *, listen: bool = False,
                  keep: bool = False, source_port: int | None = None) -> int:
        from layers.datagrams import create_datagram_endpoint

        loop = asyncio.get_running_loop()
        failed: asyncio.Future[OSError] = loop.create_future()
        peer_known = asyncio.Event()
        nc = self

        class Proto(asyncio.DatagramProtocol):
            def __init__(self) -> None:
                self.peer: tuple[str, int] | None = None

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if listen:
                    if self.peer is None or keep:
                        if self.peer != addr:
                            nc._say(f"Connection received on {addr[0]} {addr[1]}")
                        self.peer = addr
                        peer_known.set()
                    elif addr != self.peer:
                        return  # as a connected socket would
                nc._out(data)

            def error_received(self, exc: Exception) -> None:
                if isinstance(exc, OSError) and not failed.done():
                    failed.set_result(exc)

        proto = Proto()
        if listen:
            transport, _ = await create_datagram_endpoint(
                self.stack, lambda: proto, local_addr=(host or "0.0.0.0", port))
            self._say(f"Bound on {host or '0.0.0.0'} {port}")
        else:
            assert host is not None
            local = ("0.0.0.0", source_port) if source_port else None
            transport, _ = await create_datagram_endpoint(
                self.stack, lambda: proto, local_addr=local, remote_addr=(host, port))
            self._say(f"Connection to {host} {port} port [udp/*] succeeded!")

        async def send(data: bytes) -> None:
            if listen:
                await peer_known.wait()
                transport.sendto(data, proto.peer)
            else:
                transport.sendto(data)
            await asyncio.sleep(0)  # let an ICMP error from the last datagram arrive

        sender = asyncio.ensure_future(self._send_lines(send))
        try:
            waiting: set[asyncio.Future[Any]] = {sender, failed}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not failed.done():
                sender.result()
                if self.quit_after is None:
                    await failed  # until Ctrl-C, or an error (port unreachable)
                else:
                    await asyncio.wait({failed}, timeout=self.quit_after)
            if failed.done():
                raise failed.result()
            return 0
        finally:
            sender.cancel()
            transport.close()


def parse_target(args: argparse.Namespace) -> tuple[str | None, int]:
    words = list(args.target)
    if args.listen:
        if args.source_port is not None and not words:
            words = [str(args.source_port)]
        if len(words) == 1:
            host, port_text = None, words[0]
        elif len(words) == 2:
            host, port_text = words
        else:
            raise ConfigurationError("nc -l takes [HOST] PORT, e.g. layers nc -l 7")
    else:
        if len(words) != 2:
            raise ConfigurationError("nc takes HOST PORT, e.g. layers nc 10.0.0.1 7 "
                                     "(or -l [HOST] PORT to listen)")
        host, port_text = words
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigurationError(f"nc: port {port_text!r} should be a number in 1..65535")
    if host is not None:
        ip4(host)  # a dotted quad: this stack resolves no names
    return host, int(port_text)


async def _nc(args: argparse.Namespace) -> int:
    from layers.runtime import AsyncioRunner

    host, port = parse_target(args)
    if args.keep and not args.listen:
        raise ConfigurationError("-k only makes sense with -l")
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigurationError("-w wants a positive number of seconds")
    loop = asyncio.get_running_loop()
    stack, _iface = compose(args, loop.time)
    runner = AsyncioRunner(stack, loop)
    nc = Netcat(stack, verbose=args.verbose, quit_after=args.quit_after)
    try:
        runner.start()
        if args.udp:
            return await nc.udp(host, port, listen=args.listen, keep=args.keep,
                                source_port=args.source_port)
        if args.listen:
            return await nc.tcp_listen(host, port, keep=args.keep)
        assert host is not None
        return await nc.tcp_connect(host, port, source_port=args.source_port,
                                    timeout=args.timeout)
    except OSError as exc:
        where = f"{host} port {port}" if host is not None else f"port {port}"
        print(f"{PROG} nc: {where}: {describe_error(exc)}", file=sys.stderr, flush=True)
        return 1
    finally:
        runner.stop()


def cmd_nc(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_nc(args))
    except KeyboardInterrupt:
        return 130


def add_commands(commands: Commands) -> None:
    nc = commands.add(
        "nc", cmd_nc, stack=True,
        help="netcat over a stack: stdin to TCP/UDP, replies to stdout",
        description="Compose a stack and run netcat on it: stdin goes into a TCP connection "
                    "(FIN at stdin's end, like nc -N), the connection goes to stdout until the "
                    "peer closes. -u sends each line as a UDP datagram; -l listens instead.",
        epilog="Exit status: 0 done, 1 network error (connection refused, reset, timed out, "
               "unreachable), 2 configuration error.")
    nc.add_argument("target", nargs="*", metavar="HOST PORT",
                    help="where to connect; with -l: [HOST] PORT to listen on")
    nc.add_argument("-u", dest="udp", action="store_true", help="UDP instead of TCP")
    nc.add_argument("-l", dest="listen", action="store_true",
                    help="listen (accept one connection, or take the first UDP sender as peer)")
    nc.add_argument("-k", dest="keep", action="store_true",
                    help="with -l: keep listening after a connection ends")
    nc.add_argument("-p", dest="source_port", type=int, metavar="PORT",
                    help="source port (with -l: the port to listen on)")
    nc.add_argument("-q", dest="quit_after", type=float, metavar="SECS",
                    help="after stdin's end, quit within SECS even if the peer goes on "
                         "(default: wait for the peer; forever for UDP)")
    nc.add_argument("-w", dest="timeout", type=float, metavar="SECS",
                    help="give up connecting after SECS")
    nc.add_argument("-v", dest="verbose", action="store_true",
                    help="say on stderr when connected")
