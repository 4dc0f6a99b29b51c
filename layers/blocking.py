"""A blocking, socket-like API for people who don't write asyncio.

::

    import layers.blocking

    with layers.blocking.stack(link="tap:tap0", address="10.0.0.2/24") as s:
        conn = s.connect(("10.0.0.1", 7))        # a BlockingConnection
        conn.sendall(b"hello")
        print(conn.recv(100))
        conn.close()

        server = s.listen(8080)                    # accept() -> (conn, ("a.b.c.d", port))
        udp = s.udp(local_addr=("0.0.0.0", 53))    # sendto()/recvfrom()
        print(s.ping("10.0.0.1"))                  # [PingResult], iputils-style str()

The stack runs on an asyncio loop in a background thread (one per :class:`BlockingStack`);
every call hands a coroutine over with :func:`asyncio.run_coroutine_threadsafe` and waits for
its result, so the objects may be used from any thread (one reader and one writer at a time
per connection, as with sockets). Link specs are opened in the *calling* thread, so a TAP
opened inside ``NetNamespace.entered()`` belongs to that namespace.

Timeouts follow :meth:`socket.socket.settimeout`: ``None`` blocks, a positive number raises
:class:`TimeoutError` (``socket.timeout``) when it passes. Non-blocking mode (0) is not
offered. Errors are the OSErrors a socket gives: ConnectionRefusedError, ConnectionResetError,
TimeoutError, BrokenPipeError, OSError(EHOSTUNREACH)...
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import socket
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import ModuleType
from typing import Any, Self, TypeVar

from layers.errors import ConfigurationError, os_error
from layers.links.base import Link, LinkWrapper
from layers.stack import Stack

T = TypeVar("T")
Address = tuple[str, int]

#: how long close() waits for a connection's FIN to be acknowledged
CLOSE_TIMEOUT = 2.0


def _check_timeout(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if value < 0:
        raise ValueError("Timeout value out of range")
    if value == 0:
        raise ValueError(
            "layers.blocking offers no non-blocking mode; use a small positive timeout or "
            "the asyncio API (layers.streams)"
        )
    return value


class _ThreadSafeWakeup(LinkWrapper):
    """Wraps a link without a descriptor (a memory link) whose peer may live in another
    thread: the runner's wake-up callback is then handed to the loop thread-safely."""

    def __init__(self, inner: Link, owner: BlockingStack) -> None:
        super().__init__(inner)
        self._owner = owner

    def set_wakeup(self, callback: Callable[[], None] | None) -> None:
        super(LinkWrapper, self).set_wakeup(callback)
        if callback is None:
            self.inner.set_wakeup(None)
            return
        owner = self._owner

        def wake() -> None:
            if threading.get_ident() == owner._thread_id:
                callback()
            else:
                loop = owner.loop
                if not loop.is_closed():
                    loop.call_soon_threadsafe(callback)

        self.inner.set_wakeup(wake)


class BlockingStack:
    """A stack running in a background thread, with blocking socket-like helpers.

    ``link`` is a spec (``"tap:tap0"``, ``"tun:tun0"``) opened in the calling thread with
    ``link_options`` (``mtu=``, ``mac=``, ``offload=``...), or a :class:`Link` object; ``faults``
    wraps it in a :class:`~layers.links.faults.FaultLink` (``"loss=2%,delay=10ms,seed=7"``).
    Start it with ``with`` (or :meth:`start`); :meth:`close` stops the stack and the thread."""

    def __init__(
        self,
        link: str | Link | None = None,
        address: str | None = None,
        *,
        gateway: str | None = None,
        plugins: Sequence[str | ModuleType | object] | None = None,
        settings: Mapping[str, Any] | None = None,
        faults: str | None = None,
        name: str = "layers",
        **link_options: Any,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        self._runner: Any = None
        self._closed = False
        self._resources: list[Any] = []
        self.stack = Stack(plugins, clock=self.loop.time, settings=settings, name=name)
        try:
            if link is not None:
                self.add_interface(link, address, faults=faults, **link_options)
            elif faults is not None or link_options:
                raise ConfigurationError("faults and link options need a link=")
            if gateway is not None:
                self.stack.add_route("default", gateway=gateway)
        except BaseException:
            self.stack.stop()
            self.loop.close()
            raise

    # --- composition ----------------------------------------------------------------------
    def add_interface(
        self, link: str | Link, address: str | None = None, *, faults: str | None = None,
        **link_options: Any,
    ) -> Any:
        """Attach another link (before :meth:`start`); the spec is opened in this thread."""
        if self._thread is not None:
            raise ConfigurationError("add interfaces before the stack is started")
        if isinstance(link, str):
            opened = self.stack.open_link(link, **link_options)
        elif link_options:
            raise ConfigurationError("link options are only for link specs, not Link objects")
        else:
            opened = link
        try:
            if faults is not None:
                from layers.links.faults import FaultLink, parse_faults

                opened = FaultLink(opened, **parse_faults(faults))
            if opened.fileno() is None:
                opened = _ThreadSafeWakeup(opened, self)
            return self.stack.add_interface(opened, address=address)
        except BaseException:
            if isinstance(link, str):
                opened.close()
            raise

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> BlockingStack:
        if self._closed:
            raise RuntimeError("this stack was closed")
        if self._thread is not None:
            return self
        ready = threading.Event()

        def run() -> None:
            self._thread_id = threading.get_ident()
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"layers-{self.stack.name}",
                                        daemon=True)
        self._thread.start()
        ready.wait()
        try:
            self.call(self._start_runner())
        except BaseException:
            self._stop_thread()
            raise
        return self

    async def _start_runner(self) -> None:
        from layers.runtime import AsyncioRunner

        self._runner = AsyncioRunner(self.stack, self.loop)
        self._runner.start()

    async def _shutdown(self) -> None:
        for res in list(self._resources):
            res._closed = True
            try:
                await res._aclose(abort=False)
            except Exception:  # closing is best effort
                pass
        self._resources.clear()
        if self._runner is not None and self._runner.running:
            self._runner.stop()
        else:
            self.stack.stop()

    def close(self) -> None:
        """Close every connection, listener and endpoint, stop the stack and the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            self.stack.stop()
            self.loop.close()
            return
        try:
            self.call(self._shutdown(), timeout=CLOSE_TIMEOUT + 5)
        finally:
            self._stop_thread()

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self._thread = None
        if not self.loop.is_running():
            self.loop.close()

    def __enter__(self) -> BlockingStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- handing work to the loop ---------------------------------------------------------
    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the stack's loop and wait for its result (or exception).

        ``timeout`` bounds the wait (TimeoutError, and the coroutine is cancelled)."""
        if self._thread is None:
            coro.close()
            if self._closed:
                raise os_error(errno.EBADF, "the stack is closed")
            raise RuntimeError("start the stack first: use `with` or .start()")
        if threading.get_ident() == self._thread_id:
            coro.close()
            raise RuntimeError("blocking calls cannot be made from the stack's own thread")
        if timeout is not None:
            coro = asyncio.wait_for(coro, timeout)
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result()
        except concurrent.futures.CancelledError:
            raise os_error(errno.ECANCELED, "the stack was stopped") from None

    def run_sync(self, fn: Callable[[], T]) -> T:
        """Call ``fn()`` on the loop thread (to read stack state safely) and return its value."""

        async def run() -> T:
            return fn()

        return self.call(run())

    # --- TCP ------------------------------------------------------------------------------
    def connect(
        self, address: Address, timeout: float | None = None, **options: Any
    ) -> BlockingConnection:
        """Open a TCP connection to ``(host, port)`` (``options``: ``nodelay``,
        ``local_addr``... as :func:`layers.streams.open_connection`); ``timeout`` bounds the
        handshake and becomes the connection's timeout, like ``socket.create_connection``."""
        from layers.streams import open_connection

        host, port = address
        timeout = _check_timeout(timeout)
        reader, writer = self.call(open_connection(self.stack, host, port, **options),
                                   timeout=timeout)
        conn = BlockingConnection(self, reader, writer)
        conn.settimeout(timeout)
        return conn

    def listen(
        self, port: int = 0, host: str = "0.0.0.0", backlog: int = 128, **options: Any
    ) -> BlockingListener:
        """Listen on ``host:port`` (port 0 picks one: see :meth:`BlockingListener.getsockname`)."""
        listener = BlockingListener(self)
        self.call(listener._start(host, port, backlog, options))
        return listener

    # --- UDP ------------------------------------------------------------------------------
    def udp(
        self,
        local_addr: Address | None = None,
        remote_addr: Address | None = None,
        *,
        allow_broadcast: bool = False,
    ) -> BlockingUDP:
        """A datagram endpoint: ``sendto``/``recvfrom`` (``send``/``recv`` when connected)."""
        endpoint = BlockingUDP(self)
        self.call(endpoint._start(local_addr, remote_addr, allow_broadcast))
        return endpoint

    # --- ICMP -----------------------------------------------------------------------------
    def ping(
        self, host: str, count: int = 1, *, interval: float = 1.0, timeout: float = 1.0,
        size: int = 56,
    ) -> list[Any]:
        """Send ``count`` echo requests; a list of :class:`layers.ping.PingResult` (``.ok``,
        ``.rtt`` in seconds, ``str()`` as iputils prints). ``layers.ping.summarize`` totals."""
        from layers.ping import ping

        async def run() -> list[Any]:
            return [r async for r in ping(self.stack, host, count=count, interval=interval,
                                          timeout=timeout, size=size)]

        return self.call(run())


class _Closable:
    _owner: BlockingStack
    _closed: bool

    async def _aclose(self, abort: bool) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _register(self) -> None:
        self._owner._resources.append(self)

    def _unregister(self) -> None:
        try:
            self._owner._resources.remove(self)
        except ValueError:
            pass

    def _shut(self, abort: bool) -> None:
        """Close once: forget the resource, then run ``_aclose`` on the stack's loop."""
        if self._closed:
            return
        self._closed = True
        self._unregister()
        if not self._owner._closed:
            self._owner.call(self._aclose(abort=abort))

    def close(self) -> None:
        self._shut(abort=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlockingConnection(_Closable):
    """One TCP connection with a socket's blocking methods."""

    def __init__(
        self, owner: BlockingStack, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._owner = owner
        self._reader = reader
        self._writer = writer
        self._timeout: float | None = None
        self._read_shut = False
        self._write_shut = False
        self._closed = False
        self._register()

    # --- socket-like API ------------------------------------------------------------------
    def settimeout(self, value: float | None) -> None:
        self._timeout = _check_timeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def getpeername(self) -> Address:
        return tuple(self._writer.get_extra_info("peername"))

    def getsockname(self) -> Address:
        return tuple(self._writer.get_extra_info("sockname"))

    def _check_open(self) -> None:
        if self._closed:
            raise os_error(errno.EBADF, "the connection is closed")

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._owner.call(coro, timeout=self._timeout)

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """Queue all of ``data`` and wait until the send buffer has room again."""
        self._check_open()
        if self._write_shut:
            raise BrokenPipeError(errno.EPIPE, "the connection was shut down for writing")
        payload = bytes(data)

        async def send() -> None:
            if self._writer.is_closing():
                raise BrokenPipeError(errno.EPIPE, "the connection is closed")
            self._writer.write(payload)
            await self._writer.drain()

        self._call(send())

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Like :meth:`sendall` (the stack buffers everything); returns ``len(data)``."""
        self.sendall(data)
        return len(data)

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes; ``b""`` once the peer has finished sending."""
        self._check_open()
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if self._read_shut or bufsize == 0:
            return b""
        return self._call(self._reader.read(bufsize))

    def recv_exactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or :class:`asyncio.IncompleteReadError` at the peer's EOF."""
        self._check_open()
        return self._call(self._reader.readexactly(n))

    def recv_all(self) -> bytes:
        """Everything until the peer finishes sending."""
        self._check_open()
        return self._call(self._reader.read())

    def shutdown(self, how: int) -> None:
        """``socket.SHUT_WR`` sends FIN (reading goes on), ``SHUT_RD`` makes recv return
        ``b""``, ``SHUT_RDWR`` both."""
        self._check_open()
        if how not in (socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR):
            raise ValueError(f"shutdown how={how!r}: use socket.SHUT_RD, SHUT_WR or SHUT_RDWR")
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self._read_shut = True
        if how in (socket.SHUT_WR, socket.SHUT_RDWR) and not self._write_shut:
            self._write_shut = True

            async def eof() -> None:
                if not self._writer.is_closing():
                    self._writer.write_eof()

            self._call(eof())

    async def _aclose(self, abort: bool) -> None:
        transport = self._writer.transport
        if abort:
            transport.abort()
            return
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), CLOSE_TIMEOUT)
        except (OSError, TimeoutError):
            pass

    def close(self) -> None:
        """Send what is buffered, then FIN; waits up to a moment for the close to finish."""
        self._shut(abort=False)

    def abort(self) -> None:
        """Reset the connection (RST), like close() with SO_LINGER 0."""
        self._shut(abort=True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<BlockingConnection {state} {self._writer.get_extra_info('peername')}>"


class BlockingListener(_Closable):
    """A listening TCP endpoint; :meth:`accept` gives :class:`BlockingConnection` objects."""

    def __init__(self, owner: BlockingStack) -> None:
        self._owner = owner
        self._timeout: float | None = None
        self._server: Any = None
        self._queue: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None
        self._queue = None
        self._closed = False

    async def _start(self, host: str, port: int, backlog: int, options: dict[str, Any]) -> None:
        from layers.streams import start_server

        queue: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        queue = asyncio.Queue()
        self._queue = queue

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            queue.put_nowait((reader, writer))

        self._server = await start_server(self._owner.stack, connected, host, port,
                                          backlog=backlog, **options)
        self._register()

    def settimeout(self, value: float | None) -> None:
        self._timeout = _check_timeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def getsockname(self) -> Address:
        return self._server.sockets[0].getsockname()

    def accept(self) -> tuple[BlockingConnection, Address]:
        """The next connection and its peer's ``(host, port)``."""
        if self._closed:
            raise os_error(errno.EBADF, "the listener is closed")
        assert self._queue is not None
        reader, writer = self._owner.call(self._queue.get(), timeout=self._timeout)
        conn = BlockingConnection(self._owner, reader, writer)
        return conn, conn.getpeername()

    async def _aclose(self, abort: bool) -> None:
        self._server.close()
        queue = self._queue
        while queue is not None and not queue.empty():
            _, writer = queue.get_nowait()
            writer.transport.abort()

    def close(self) -> None:
        """Stop listening; connections not yet accepted are reset."""
        self._shut(abort=False)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[tuple[bytes, Address] | OSError]) -> None:
        self.queue = queue

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.queue.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.queue.put_nowait(exc)


class BlockingUDP(_Closable):
    """A UDP endpoint with a socket's ``sendto``/``recvfrom``. On a connected endpoint an
    ICMP port unreachable makes the next receive raise ConnectionRefusedError, as Linux does."""

    def __init__(self, owner: BlockingStack) -> None:
        self._owner = owner
        self._timeout: float | None = None
        self._transport: Any = None
        self._queue: asyncio.Queue[tuple[bytes, Address] | OSError] | None = None
        self._closed = False

    async def _start(self, local_addr: Address | None, remote_addr: Address | None,
                     allow_broadcast: bool) -> None:
        from layers.datagrams import create_datagram_endpoint

        queue: asyncio.Queue[tuple[bytes, Address] | OSError] = asyncio.Queue()
        self._queue = queue
        self._transport, _ = await create_datagram_endpoint(
            self._owner.stack, lambda: _UdpProtocol(queue), local_addr=local_addr,
            remote_addr=remote_addr, allow_broadcast=allow_broadcast,
        )
        self._register()

    def settimeout(self, value: float | None) -> None:
        self._timeout = _check_timeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def getsockname(self) -> Address:
        return self._transport.get_extra_info("sockname")

    def getpeername(self) -> Address:
        peer = self._transport.get_extra_info("peername")
        if peer is None:
            raise os_error(errno.ENOTCONN, "the endpoint is not connected")
        return peer

    def _check_open(self) -> None:
        if self._closed:
            raise os_error(errno.EBADF, "the endpoint is closed")

    def sendto(self, data: bytes | bytearray | memoryview, address: Address | None) -> int:
        self._check_open()
        payload = bytes(data)
        errors: list[OSError] = []

        async def send() -> None:
            # network errors come back through error_received at once; surface them here
            proto = self._transport.get_protocol()
            before = proto.error_received
            proto.error_received = errors.append
            try:
                self._transport.sendto(payload, address)
            finally:
                proto.error_received = before

        self._owner.call(send())
        if errors:
            raise errors[0]
        return len(payload)

    def send(self, data: bytes | bytearray | memoryview) -> int:
        return self.sendto(data, None)

    def recvfrom(self, bufsize: int = 65535) -> tuple[bytes, Address]:
        """The next datagram (cut to ``bufsize``) and its sender."""
        self._check_open()
        assert self._queue is not None
        item = self._owner.call(self._queue.get(), timeout=self._timeout)
        if isinstance(item, OSError):
            raise item
        data, addr = item
        return data[:bufsize], addr

    def recv(self, bufsize: int = 65535) -> bytes:
        return self.recvfrom(bufsize)[0]

    async def _aclose(self, abort: bool) -> None:
        self._transport.close()



def stack(
    link: str | Link | None = None,
    address: str | None = None,
    *,
    gateway: str | None = None,
    plugins: Sequence[str | ModuleType | object] | None = None,
    settings: Mapping[str, Any] | None = None,
    faults: str | None = None,
    **link_options: Any,
) -> BlockingStack:
    """A :class:`BlockingStack`; use it with ``with`` (which starts it and stops it after)."""
    return BlockingStack(link, address, gateway=gateway, plugins=plugins, settings=settings,
                         faults=faults, **link_options)


__all__ = [
    "BlockingConnection",
    "BlockingListener",
    "BlockingStack",
    "BlockingUDP",
    "stack",
]
