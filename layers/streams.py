"""asyncio streams over the stack's stream transport (TCP), and the contracts it relies on.

::

    reader, writer = await open_connection(stack, "10.0.0.2", 7)
    writer.write(b"hello")
    await writer.drain()
    data = await reader.read(100)

    server = await start_server(stack, handle, "0.0.0.0", 7)
    async with server:
        await server.serve_forever()

    server = await create_server(stack, MyProtocol, "0.0.0.0", 9)   # like loop.create_server

``reader`` and ``writer`` are the standard library's own :class:`asyncio.StreamReader` and
:class:`asyncio.StreamWriter`: the transport plugin's connection objects implement
:class:`asyncio.Transport` and drive an :class:`asyncio.StreamReaderProtocol`, exactly as a
kernel socket transport would. The stack must be running on the current loop
(``Stack(clock=loop.time)`` with :class:`layers.runtime.AsyncioRunner`).

:func:`create_server` is the protocol-level server, as :meth:`asyncio.loop.create_server` is
for sockets: each connection gets ``protocol_factory()``, called from the stack's receive path
with no task, reader or writer in between. A protocol that answers from its callbacks (closes
in ``eof_received``, writes in ``data_received``) has its segment leave with the
acknowledgement of what it answers, which a stream handler, woken one loop turn later, cannot.

The transport is found with ``stack.find(StreamService)``: any plugin whose protocol object
has ``connect`` and ``listen`` with these signatures can replace the built-in TCP.
Failures are the OSError subclasses a socket user expects: ConnectionRefusedError,
ConnectionResetError, TimeoutError (errno ETIMEDOUT), OSError(EHOSTUNREACH)...
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from layers.errors import ConfigurationError
from layers.wire.addr import ip4
from layers.wire.ipv6 import ANY6, ip6, unmap

if TYPE_CHECKING:
    from layers.stack import Stack

#: the StreamReader buffer limit asyncio uses (64 KiB)
DEFAULT_LIMIT = 2**16


def write_buffer_limits(high: int | None = None, low: int | None = None) -> tuple[int, int]:
    """``(high, low)`` for a transport's ``set_write_buffer_limits``, defaulted and checked as
    asyncio's own transports do (64 KiB high, a quarter of it low), for stream and datagram
    transports alike."""
    if high is None:
        high = 64 * 1024 if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low

ConnectCallback = Callable[[BaseException | None], None]
ClientConnectedCallback = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None
]


@runtime_checkable
class StreamListener(Protocol):
    """A listening endpoint returned by :meth:`StreamService.listen`."""

    def sockname(self) -> tuple[str, int]:
        """The (address, port) listened on; ``0.0.0.0`` for every local address."""

    def start_accepting(self) -> None:
        """Start creating protocols for connections (those queued meanwhile first)."""

    def close(self) -> None:
        """Stop listening: new SYNs are refused, unaccepted connections are reset.
        Accepted connections are not affected."""

    @property
    def closed(self) -> bool: ...


@runtime_checkable
class StreamService(Protocol):
    """What :func:`open_connection` and :func:`start_server` need from a stream transport."""

    name: str

    def connect(
        self,
        protocol: asyncio.BaseProtocol,
        host: int,
        port: int,
        *,
        local_addr: tuple[int, int] | None = None,
        on_connected: ConnectCallback | None = None,
        **options: Any,
    ) -> asyncio.Transport:
        """Start an active open to ``host:port``; returns the (not yet connected) transport.

        When the connection is established ``protocol.connection_made(transport)`` is
        called, then ``on_connected(None)``; if it fails first, only ``on_connected(exc)``
        (an OSError). Raises OSError at once when there is no route (ENETUNREACH) or the
        local address is in use (EADDRINUSE), ConfigurationError for a bad option."""

    def listen(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: int,
        port: int,
        *,
        backlog: int = 128,
        accepting: bool = True,
        **options: Any,
    ) -> StreamListener:
        """Listen on ``host:port`` (host 0: every local address; port 0: an ephemeral one).
        Each accepted connection gets ``protocol_factory()`` and ``connection_made``."""


# The congestion-control contract (formerly ``CongestionControl`` here) lives in
# :mod:`layers.congestion`.


def stream_service(stack: Stack) -> StreamService:
    """The stack's stream transport, or a CompositionError naming the fix."""
    return stack.require(StreamService, what="stream transport", plugin="tcp")  # type: ignore[type-abstract]


def _address(host: str | int | None, what: str) -> int:
    if host is None or host == "":
        return 0
    if host == "::":
        return ANY6
    try:
        return unmap(ip6(host)) if isinstance(host, str) and ":" in host else ip4(host)
    except (ValueError, ConfigurationError):
        raise ConfigurationError(
            f"{what} {host!r} is not an IPv4 address nor an IPv6 one; this stack resolves no "
            f"names, give a dotted quad such as 10.0.0.2 or an IPv6 address such as 2001:db8::2"
        ) from None


async def open_connection(
    stack: Stack,
    host: str | int,
    port: int,
    *,
    local_addr: tuple[str | int, int] | None = None,
    limit: int = DEFAULT_LIMIT,
    **options: Any,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``host:port`` through ``stack``; the stdlib's reader and writer.

    ``options`` go to the transport (for TCP: ``nodelay``, ``keepalive``, ``user_timeout``,
    ``congestion_control``, ``rcvbuf``, ``sndbuf``, ``mss``). If the awaiting task is
    cancelled, the half-open connection is aborted."""
    service = stream_service(stack)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    done: asyncio.Future[None] = loop.create_future()

    def on_connected(exc: BaseException | None) -> None:
        if done.done():
            return
        if exc is None:
            done.set_result(None)
        else:
            done.set_exception(exc)

    local = None
    if local_addr is not None:
        local = (_address(local_addr[0], "local address"), int(local_addr[1]))
    transport = service.connect(
        protocol, _address(host, "host"), int(port), local_addr=local,
        on_connected=on_connected, **options,
    )
    try:
        await done
    except BaseException:
        transport.abort()
        raise
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


class ListenerSocket:
    """What ``Server.sockets`` lists: enough of a socket for ``getsockname()``."""

    family = 2  # AF_INET
    type = 1  # SOCK_STREAM

    def __init__(self, listener: StreamListener) -> None:
        self._listener = listener

    def getsockname(self) -> tuple[str, int]:
        return self._listener.sockname()

    def __repr__(self) -> str:
        host, port = self.getsockname()
        return f"<ListenerSocket {host}:{port}>"


class _ServerProtocol(asyncio.StreamReaderProtocol):
    """The stdlib protocol, plus telling the server which connections are alive."""

    def __init__(self, server: Server, limit: int, cb: ClientConnectedCallback) -> None:
        loop = server.get_loop()
        super().__init__(asyncio.StreamReader(limit=limit, loop=loop), cb, loop=loop)
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._server._attach(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._server._detach(self)


class _TrackedProtocol(asyncio.Protocol):
    """A :func:`create_server` protocol, plus telling the server which connections are
    alive (every asyncio.Protocol callback is passed through)."""

    __slots__ = ("_inner", "_server")

    def __init__(self, server: Server, inner: asyncio.Protocol) -> None:
        self._server = server
        self._inner = inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._server._active.add(self)  # _attach, without the call (once per connection)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            server = self._server
            active = server._active
            active.discard(self)  # _detach, without two calls (once per connection)
            if not active:
                server._wake()


class Server:
    """What :func:`start_server` and :func:`create_server` return, shaped like
    :class:`asyncio.Server`.

    ``close()`` stops listening (connections already accepted go on);
    ``wait_closed()`` returns once it is closed and every accepted connection has ended."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        service: StreamService,
        cb: ClientConnectedCallback | None,
        host: int,
        port: int,
        *,
        backlog: int,
        limit: int,
        start_serving: bool,
        options: dict[str, Any],
        protocol_factory: Callable[[], asyncio.Protocol] | None = None,
    ) -> None:
        """``cb`` for a stream server; ``protocol_factory`` (and ``cb`` None) for a
        protocol-level one."""
        self._loop = loop
        self._active: set[asyncio.BaseProtocol] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._serving_forever: asyncio.Future[None] | None = None
        make: Callable[[], asyncio.BaseProtocol]
        if protocol_factory is not None:
            factory = protocol_factory

            def make() -> asyncio.BaseProtocol:
                return _TrackedProtocol(self, factory())
        else:
            assert cb is not None
            callback = cb

            def make() -> asyncio.BaseProtocol:
                return _ServerProtocol(self, limit, callback)
        self._listener = service.listen(
            make, host, port, backlog=backlog, accepting=start_serving, **options,
        )
        self._serving = start_serving

    # --- connection bookkeeping -------------------------------------------------------
    def _attach(self, proto: asyncio.BaseProtocol) -> None:
        self._active.add(proto)

    def _detach(self, proto: asyncio.BaseProtocol) -> None:
        self._active.discard(proto)
        self._wake()

    def _wake(self) -> None:
        if self._listener.closed and not self._active:
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    # --- asyncio.Server's interface ---------------------------------------------------
    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def sockets(self) -> tuple[ListenerSocket, ...]:
        if self._listener.closed:
            return ()
        return (ListenerSocket(self._listener),)

    def is_serving(self) -> bool:
        return self._serving and not self._listener.closed

    async def start_serving(self) -> None:
        if self._listener.closed:
            raise RuntimeError(f"server {self!r} is closed")
        self._serving = True
        self._listener.start_accepting()

    def close(self) -> None:
        if self._listener.closed:
            return
        self._listener.close()
        self._serving = False
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()
        self._wake()

    async def wait_closed(self) -> None:
        if self._listener.closed and not self._active:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._listener.closed:
            raise RuntimeError(f"server {self!r} is closed")
        await self.start_serving()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        return f"<Server sockets={self.sockets!r}>"


async def start_server(
    stack: Stack,
    client_connected_cb: ClientConnectedCallback,
    host: str | int | None = None,
    port: int = 0,
    *,
    backlog: int = 128,
    limit: int = DEFAULT_LIMIT,
    start_serving: bool = True,
    **options: Any,
) -> Server:
    """Listen on ``host:port`` (None/"" or "0.0.0.0": every local address; port 0 picks one)
    and call ``client_connected_cb(reader, writer)`` for each connection (a coroutine
    function is run as a task, as asyncio does). With ``start_serving=False`` connections
    wait in the accept queue (up to ``backlog``) until :meth:`Server.start_serving`."""
    if backlog < 1:
        raise ConfigurationError(f"backlog={backlog} should be at least 1")
    service = stream_service(stack)
    loop = asyncio.get_running_loop()
    return Server(
        loop, service, client_connected_cb, _address(host, "host"), int(port),
        backlog=backlog, limit=limit, start_serving=start_serving, options=options,
    )


async def create_server(
    stack: Stack,
    protocol_factory: Callable[[], asyncio.Protocol],
    host: str | int | None = None,
    port: int = 0,
    *,
    backlog: int = 128,
    start_serving: bool = True,
    **options: Any,
) -> Server:
    """Listen on ``host:port`` and give each connection ``protocol_factory()``, as
    :meth:`asyncio.loop.create_server` does for sockets: the protocol's callbacks run from
    the stack's receive path, with no task or stream objects per connection. Returns the
    same :class:`Server` as :func:`start_server` (``close``, ``wait_closed`` waiting for
    the accepted connections, ``serve_forever``). A plain :class:`asyncio.Protocol`
    (``get_buffer`` of a BufferedProtocol is not passed through)."""
    if backlog < 1:
        raise ConfigurationError(f"backlog={backlog} should be at least 1")
    service = stream_service(stack)
    loop = asyncio.get_running_loop()
    return Server(
        loop, service, None, _address(host, "host"), int(port), backlog=backlog,
        limit=DEFAULT_LIMIT, start_serving=start_serving, options=options,
        protocol_factory=protocol_factory,
    )
