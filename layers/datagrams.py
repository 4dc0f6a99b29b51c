"""Datagram endpoints, the way ``asyncio.loop.create_datagram_endpoint`` makes them.

::

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport): self.transport = transport
        def datagram_received(self, data, addr): self.transport.sendto(data, addr)

    transport, protocol = await create_datagram_endpoint(stack, Echo, local_addr=("0.0.0.0", 7))

Two layers:

* :class:`DatagramService` is the contract a datagram transport plugin (our ``udp``, or a third
  party's) implements. It is sans-IO and speaks in ints (addresses as ``int``, as everywhere
  inside the stack). The core finds it with ``stack.find(DatagramService)``, so whichever plugin
  provides it serves this API.
* :class:`StackDatagramTransport` adapts one :class:`DatagramEndpoint` to
  :class:`asyncio.DatagramTransport` and an :class:`asyncio.DatagramProtocol`: addresses become
  ``("a.b.c.d", port)`` tuples and errors ``OSError`` with a socket's errno.

The protocol is called straight from the stack's receive path (the runner's reader callback):
no task or queue per packet. :func:`open_datagram_endpoint` makes the same pair without an
event loop, for sans-IO use on a virtual clock; :func:`create_datagram_endpoint` is the asyncio
coroutine and differs only in calling ``connection_made`` (and later ``connection_lost``)
through ``loop.call_soon``, as asyncio does. Datagrams arriving before ``connection_made`` ran
wait in the endpoint's receive queue.

Semantics follow asyncio on Linux, with these choices:

* The transport's ``sendto`` raises ``ValueError``/``TypeError`` for bad arguments (a
  malformed address, an address other than the peer on a connected endpoint, no address on
  an unconnected one). Network errors (EACCES for a broadcast without ``allow_broadcast``,
  EMSGSIZE, ENETUNREACH) are raised as ``OSError`` by the plugin's
  :meth:`DatagramEndpoint.sendto` (the contract below, like a socket's ``sendto``); the
  asyncio transport catches them and calls ``protocol.error_received`` instead, as asyncio
  does with a socket's errors. Code on :func:`open_datagram_endpoint` gets the same:
  ``error_received``, never an exception from ``sendto``.
* Empty datagrams are sent (Linux sends them; Python 3.11's asyncio silently skipped them).
* ICMP errors reach ``error_received`` only on connected endpoints, like a Linux socket without
  ``IP_RECVERR``; see the udp plugin for which ICMP messages count.
* ``pause_reading()`` holds datagrams in the endpoint's receive queue up to its buffer size
  (``udp.rcvbuf``); beyond that they are dropped and counted, as a full socket buffer does.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from layers.errors import ConfigurationError, os_error
from layers.streams import write_buffer_limits
from layers.wire.addr import ip4
from layers.wire.ipv6 import ANY6, ip6, ip_str, ip_text, unmap

if TYPE_CHECKING:
    from layers.stack import Stack

log = logging.getLogger("layers.datagrams")

Buffer = bytes | bytearray | memoryview
Address = tuple[str, int]

__all__ = [
    "Address",
    "DatagramEndpoint",
    "DatagramHandler",
    "DatagramService",
    "StackDatagramTransport",
    "create_datagram_endpoint",
    "open_datagram_endpoint",
]


# --- the contract with datagram transport plugins -----------------------------------------


class DatagramHandler(Protocol):
    """What an endpoint calls back (the transport adapter below implements it)."""

    def on_datagram(self, data: bytes, src: int, sport: int) -> None:
        """One datagram for this endpoint, from ``src:sport``."""

    def on_error(self, exc: OSError) -> None:
        """An asynchronous error (an ICMP error on a connected endpoint)."""

    def on_close(self, exc: OSError | None) -> None:
        """The service closed the endpoint itself (the stack is stopping)."""


@runtime_checkable
class DatagramEndpoint(Protocol):
    """One bound (and maybe connected) endpoint: what a socket is to the kernel."""

    local_addr: int  # 0 for the wildcard 0.0.0.0
    local_port: int
    remote_addr: int | None  # set on connected endpoints
    remote_port: int | None

    def sendto(self, data: Buffer, dst: int | None = None, dport: int | None = None) -> None:
        """Send one datagram (to the peer when ``dst`` is None on a connected endpoint).

        Raises ``OSError`` with the errno a socket's ``sendto`` would give (EDESTADDRREQ,
        EACCES, EMSGSIZE, ENETUNREACH, EBADF once closed)."""

    def pause_reading(self) -> None:
        """Hold received datagrams in the receive queue instead of delivering them."""

    def resume_reading(self) -> None:
        """Deliver the held datagrams (soon, not from inside this call) and new ones again."""

    @property
    def reading(self) -> bool: ...

    @property
    def recv_queue(self) -> int:
        """Bytes of payload held in the receive queue."""

    def close(self) -> None:
        """Release the port now; nothing is delivered afterwards."""


@runtime_checkable
class DatagramService(Protocol):
    """Implemented by a datagram transport plugin (the udp plugin); found with
    ``stack.find(DatagramService)``."""

    def open_datagram_endpoint(
        self,
        handler: DatagramHandler,
        *,
        local_addr: int = 0,
        local_port: int = 0,
        remote: tuple[int, int] | None = None,
        allow_broadcast: bool = False,
        reuse_port: bool = False,
        paused: bool = False,
        v6only: bool | None = None,
    ) -> DatagramEndpoint:
        """Bind (port 0: an ephemeral port) and, with ``remote``, connect. An endpoint on
        ``::`` (:data:`layers.wire.ipv6.ANY6`) gets IPv4 datagrams too unless ``v6only``
        (IPV6_V6ONLY; None: the stack's ``ipv6.bindv6only``, false as Linux's).

        Raises ``OSError``: EADDRINUSE when the address and port are taken, EADDRNOTAVAIL for
        an address this stack does not have, ENETUNREACH when ``remote`` has no route."""


def datagram_service(stack: Stack) -> DatagramService:
    """The stack's datagram service, or a :class:`CompositionError` naming the fix."""
    return stack.require(DatagramService, what="datagram transport", plugin="udp")  # type: ignore[type-abstract]


# --- the asyncio-shaped adapter -----------------------------------------------------------

_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5


def _parse_address(addr: Any, what: str) -> tuple[int, int]:
    if not isinstance(addr, tuple) or len(addr) != 2:
        raise TypeError(f"{what} must be a (host, port) tuple such as ('10.0.0.1', 53), "
                        f"not {addr!r}")
    host, port = addr
    if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"{what} port must be an int in 0..65535, not {port!r}")
    if host in ("", None):
        return 0, port
    if not isinstance(host, str):
        raise TypeError(f"{what} host must be a string 'a.b.c.d', not {host!r}")
    if host == "::":
        return ANY6, port
    try:
        return (unmap(ip6(host)) if ":" in host else ip4(host)), port
    except ConfigurationError as exc:
        raise ValueError(f"{what}: {exc} (names are not resolved)") from None


class StackDatagramTransport(asyncio.DatagramTransport):
    """An :class:`asyncio.DatagramTransport` over one endpoint of the stack's datagram service.

    Also the endpoint's :class:`DatagramHandler`: it turns int addresses into asyncio's
    ``(host, port)`` tuples and calls the protocol."""

    def __init__(
        self,
        stack: Stack,
        protocol: asyncio.DatagramProtocol,
        call_soon: Callable[..., Any],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__()
        self._info: dict[str, Any] = {"stack": stack, "socket": None}
        self._stack = stack
        self._protocol = protocol
        self._call_soon = call_soon
        self._loop = loop
        self._endpoint: DatagramEndpoint | None = None
        self._closing = False
        self._conn_lost = 0
        self._user_paused = False
        self._started = False
        self._address: tuple[int, int] | None = None
        self._peer_tuple: Address | None = None
        self._write_limits = (16 * 1024, 64 * 1024)
        # one-entry caches: replies usually go back to the address the last datagram came from
        self._last_src = -1
        self._last_src_str = ""
        self._last_dst: Any = None
        self._last_dst_parsed = (0, 0)
        #: a dual-stack endpoint on ``::``: IPv4 addresses read ``::ffff:a.b.c.d``
        self._mapped = False

    def _bind(self, endpoint: DatagramEndpoint) -> None:
        self._endpoint = endpoint
        self._mapped = endpoint.local_addr == ANY6 and not getattr(endpoint, "v6only", True)
        self._info["sockname"] = (ip_str(endpoint.local_addr), endpoint.local_port)
        if endpoint.remote_addr is not None and endpoint.remote_port is not None:
            self._address = (endpoint.remote_addr, endpoint.remote_port)
            self._peer_tuple = (ip_str(endpoint.remote_addr), endpoint.remote_port)
        self._info["peername"] = self._peer_tuple
        self._info["endpoint"] = endpoint

    def _start(self) -> None:
        """Call ``connection_made``, then let held datagrams through."""
        self._started = True
        if self._closing:
            return
        try:
            self._protocol.connection_made(self)
        finally:
            if self._endpoint is not None and not self._user_paused and not self._closing:
                self._endpoint.resume_reading()

    # --- DatagramHandler ------------------------------------------------------------------
    def on_datagram(self, data: bytes, src: int, sport: int) -> None:
        if src != self._last_src:
            self._last_src = src
            self._last_src_str = ip_text(src, self._mapped)
        try:
            self._protocol.datagram_received(data, (self._last_src_str, sport))
        except Exception as exc:
            self._protocol_exception(exc, "datagram_received")

    def on_error(self, exc: OSError) -> None:
        try:
            self._protocol.error_received(exc)
        except Exception as exc2:
            self._protocol_exception(exc2, "error_received")

    def _protocol_exception(self, exc: BaseException, where: str) -> None:
        # asyncio lets an exception from a protocol callback reach the loop's exception
        # handler and keeps the transport open; do the same, and never let it into the stack.
        if self._loop is not None:
            self._loop.call_exception_handler({
                "message": f"Exception in {where} of {self._protocol!r}",
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            })
        else:
            log.error("exception in %s of %r", where, self._protocol, exc_info=exc)

    # --- asyncio.DatagramTransport --------------------------------------------------------
    def sendto(self, data: Buffer, addr: Any = None) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if addr is None:
            if self._address is None:
                raise ValueError("sendto() needs an address: this endpoint is not connected")
            dst, dport = self._address
        else:
            if addr == self._last_dst:
                dst, dport = self._last_dst_parsed
            else:
                dst, dport = _parse_address(addr, "addr")
                self._last_dst, self._last_dst_parsed = addr, (dst, dport)
            if self._address is not None and (dst, dport) != self._address:
                raise ValueError(f"Invalid address: must be None or {self._peer_tuple}")
        if self._closing or self._endpoint is None:
            self._conn_lost += 1
            if self._conn_lost >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                log.warning("sendto() on a closed datagram transport")
            return
        try:
            self._endpoint.sendto(data, dst, dport)
        except OSError as exc:
            self.on_error(exc)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._endpoint is not None:
            self._endpoint.close()
        self._conn_lost += 1
        if self._started:
            self._call_soon(self._connection_lost, None)

    def abort(self) -> None:
        self.close()

    def _connection_lost(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        except Exception as exc2:
            self._protocol_exception(exc2, "connection_lost")

    def on_close(self, exc: OSError | None) -> None:
        # The stack is stopping: tell the protocol at once, its timers will not run again.
        if self._closing:
            return
        self._closing = True
        if self._started:
            self._connection_lost(exc)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``sockname`` and ``peername`` as ``(host, port)`` (peername None unless connected),
        ``stack``, ``endpoint`` (the service's endpoint); ``socket`` is None: there is none."""
        return self._info.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def pause_reading(self) -> None:
        self._user_paused = True
        if self._endpoint is not None:
            self._endpoint.pause_reading()

    def resume_reading(self) -> None:
        self._user_paused = False
        if self._endpoint is not None and self._started and not self._closing:
            self._endpoint.resume_reading()

    def is_reading(self) -> bool:
        return self._endpoint is not None and not self._closing and self._endpoint.reading

    def get_write_buffer_size(self) -> int:
        return 0  # datagrams go to the link at once; nothing is buffered for writing

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._write_limits

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        high, low = write_buffer_limits(high, low)
        self._write_limits = (low, high)

    def __repr__(self) -> str:
        state = "closing" if self._closing else "open"
        return (f"<StackDatagramTransport {state} sockname={self._info.get('sockname')} "
                f"peername={self._peer_tuple}>")


# --- construction -------------------------------------------------------------------------


def _open(
    stack: Stack,
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    call_soon: Callable[..., Any],
    loop: asyncio.AbstractEventLoop | None,
    local_addr: Address | None,
    remote_addr: Address | None,
    allow_broadcast: bool,
    reuse_port: bool,
    v6only: bool | None = None,
) -> tuple[StackDatagramTransport, asyncio.DatagramProtocol]:
    service = datagram_service(stack)
    laddr, lport = _parse_address(local_addr, "local_addr") if local_addr is not None else (0, 0)
    remote: tuple[int, int] | None = None
    if remote_addr is not None:
        remote = _parse_address(remote_addr, "remote_addr")
        if remote[0] == 0 or remote[1] == 0:
            raise os_error(errno.EINVAL, f"cannot connect to {remote_addr!r}")
    protocol = protocol_factory()
    transport = StackDatagramTransport(stack, protocol, call_soon, loop)
    extra = {} if v6only is None else {"v6only": v6only}
    endpoint = service.open_datagram_endpoint(
        transport,
        local_addr=laddr,
        local_port=lport,
        remote=remote,
        allow_broadcast=allow_broadcast,
        reuse_port=reuse_port,
        paused=True,
        **extra,
    )
    transport._bind(endpoint)
    return transport, protocol


def open_datagram_endpoint(
    stack: Stack,
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    *,
    local_addr: Address | None = None,
    remote_addr: Address | None = None,
    allow_broadcast: bool = False,
    reuse_port: bool = False,
    v6only: bool | None = None,
) -> tuple[StackDatagramTransport, asyncio.DatagramProtocol]:
    """:func:`create_datagram_endpoint` without an event loop (sans-IO, virtual clock).

    ``connection_made`` is called before this returns; ``connection_lost`` runs from the
    stack's timers (``stack.call_soon``)."""
    transport, protocol = _open(
        stack, protocol_factory, stack.call_soon, None,
        local_addr, remote_addr, allow_broadcast, reuse_port, v6only,
    )
    try:
        transport._start()
    except BaseException:
        transport.close()
        raise
    return transport, protocol


async def create_datagram_endpoint(
    stack: Stack,
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    *,
    local_addr: Address | None = None,
    remote_addr: Address | None = None,
    allow_broadcast: bool = False,
    reuse_port: bool = False,
    v6only: bool | None = None,
) -> tuple[StackDatagramTransport, asyncio.DatagramProtocol]:
    """Like ``loop.create_datagram_endpoint`` on ``stack``: returns ``(transport, protocol)``.

    ``local_addr=("0.0.0.0", 0)`` (or None) binds every local address on an ephemeral port;
    ``remote_addr`` connects (filters received datagrams to that peer, makes ``sendto(data)``
    go there and delivers ICMP errors); ``allow_broadcast`` permits sending to broadcast
    addresses; ``reuse_port`` lets endpoints that all set it share a port (SO_REUSEPORT), where
    the most specific binding receives (connected, then a local address, then the wildcard).
    ``local_addr=("::", port)`` takes IPv4 datagrams too, from ``::ffff:a.b.c.d`` addresses
    (``sendto`` takes those back), unless ``v6only`` (IPV6_V6ONLY; default the stack's
    ``ipv6.bindv6only``, false as Linux's).

    Raises ``OSError`` (EADDRINUSE, EADDRNOTAVAIL, ENETUNREACH) as a socket's bind/connect do.
    The stack must be driven by this loop (``Stack(clock=loop.time)`` and an
    :class:`~layers.runtime.AsyncioRunner`).
    """
    loop = asyncio.get_running_loop()
    transport, protocol = _open(
        stack, protocol_factory, loop.call_soon, loop,
        local_addr, remote_addr, allow_broadcast, reuse_port, v6only,
    )
    waiter: asyncio.Future[None] = loop.create_future()

    def start() -> None:
        try:
            transport._start()
        except BaseException as exc:
            if not waiter.done():
                waiter.set_exception(exc)
            return
        if not waiter.done():
            waiter.set_result(None)

    loop.call_soon(start)
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return transport, protocol
