"""Socket operations on a composed :class:`~layers.stack.Stack`, for the layers DUTs.

The operations of :mod:`layers.conformance.duts.linux_agent`, mapped onto the stack's public
services: :class:`layers.datagrams.DatagramService` for UDP and
:class:`layers.streams.StreamService` for TCP, found with ``stack.find`` so that whichever
plugin provides them (ours or a third party's) is what gets tested.

Sans-IO like the stack: whoever runs the stack supplies ``wait(condition, timeout)``, which
drives a virtual clock or waits on a real one. A TCP connection is read the way a socket is:
the transport stays paused (data waits in TCP's own buffer, so the advertised window shrinks
as it does in a kernel whose application is not reading) and a ``recv`` lets data through.

Sockets of kind ``udp6`` and ``tcp6`` are IPv6 ones: their wildcard ``::`` is
:data:`layers.wire.ipv6.ANY6` (addresses are ints of either family, told apart by size).
"""

from __future__ import annotations

import asyncio
import errno
from collections import deque
from collections.abc import Callable
from typing import Any

from layers.datagrams import DatagramEndpoint, datagram_service
from layers.errors import os_error
from layers.stack import Stack
from layers.streams import stream_service
from layers.wire.ipv6 import ANY6, ip_any, ip_str

Wait = Callable[[Callable[[], bool], float], bool]

#: socket options a stream transport takes at connect/listen time (TCP_NODELAY, SO_RCVBUF...)
_STREAM_OPTIONS = {"nodelay": "nodelay", "mss": "mss", "rcvbuf": "rcvbuf", "sndbuf": "sndbuf",
                   "keepalive": "keepalive"}


def _addr(text: str) -> int:
    """A socket-module address as the services take it (``::`` is ANY6, not 0.0.0.0)."""
    return ANY6 if text == "::" else ip_any(text)


def _text(addr: int, family: int) -> str:
    if addr in (0, ANY6):
        return "::" if family == 6 else "0.0.0.0"
    return ip_str(addr)


class _Udp:
    def __init__(self, family: int = 4) -> None:
        self.family = family
        self.endpoint: DatagramEndpoint | None = None
        self.queue: deque[tuple[bytes, tuple[str, int]]] = deque()
        self.error: OSError | None = None
        self.local = (0, 0)
        self.broadcast = False

    # DatagramHandler
    def on_datagram(self, data: bytes, src: int, sport: int) -> None:
        self.queue.append((bytes(data), (ip_str(src), sport)))

    def on_error(self, exc: OSError) -> None:
        self.error = exc

    def on_close(self, exc: OSError | None) -> None:
        self.endpoint = None


class _Stream(asyncio.Protocol):
    """A TCP connection seen as a socket: a small user buffer over a paused transport."""

    def __init__(self, on_made: Callable[[_Stream], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.lost = False
        self.connected = False
        self.connect_error: BaseException | None = None
        self._on_made = on_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connected = True
        transport.pause_reading()
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        return True  # keep the sending half open, as a socket does

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if exc is not None:
            self.error = exc
        self.eof = True


class _Tcp:
    def __init__(self, family: int = 4) -> None:
        self.family = family
        self.options: dict[str, Any] = {}
        self.local: tuple[int, int] | None = None
        self.stream: _Stream | None = None
        self.listener: Any = None
        self.accepted: deque[_Stream] = deque()


def _state_name(transport: Any) -> str:
    state = getattr(transport, "state", None)
    if state is None:
        tcb = transport.get_extra_info("tcp")
        state = getattr(tcb, "state", None)
    if state is None:
        raise os_error(errno.EOPNOTSUPP, "this stream transport does not report its state")
    name = getattr(state, "name", str(state))
    return str(name).upper().replace("_", "-")


class LayersSockets:
    def __init__(self, stack: Stack, wait: Wait) -> None:
        self.stack = stack
        self.wait = wait
        self.socks: dict[int, _Udp | _Tcp | _Stream] = {}
        self._next = 1

    def call(self, op: str, **args: Any) -> Any:
        fn = getattr(self, "op_" + op, None)
        if fn is None:
            raise os_error(errno.EOPNOTSUPP, f"operation {op!r} is not supported by this DUT")
        return fn(**args)

    def _new(self, obj: _Udp | _Tcp | _Stream) -> int:
        sid = self._next
        self._next += 1
        self.socks[sid] = obj
        return sid

    def _get(self, s: int) -> _Udp | _Tcp | _Stream:
        try:
            return self.socks[s]
        except KeyError:
            raise os_error(errno.EBADF) from None

    def _stream(self, s: int) -> _Stream:
        obj = self._get(s)
        if isinstance(obj, _Tcp) and obj.stream is not None:
            return obj.stream
        if isinstance(obj, _Stream):
            return obj
        raise os_error(errno.ENOTCONN)

    # --- common -----------------------------------------------------------------------
    def op_ping(self) -> str:
        return "pong"

    def op_socket(self, kind: str) -> int:
        family = 6 if kind.endswith("6") else 4
        if kind in ("udp", "udp6"):
            datagram_service(self.stack)
            return self._new(_Udp(family))
        if kind in ("tcp", "tcp6"):
            stream_service(self.stack)
            return self._new(_Tcp(family))
        raise ValueError(f"socket kind {kind!r}")

    def op_bind(self, s: int, addr: str, port: int) -> None:
        obj = self._get(s)
        if isinstance(obj, _Udp):
            if obj.endpoint is not None:
                raise os_error(errno.EINVAL, "already bound")
            self._open_udp(obj, _addr(addr), port, None)
        elif isinstance(obj, _Tcp):
            obj.local = (_addr(addr), port)
        else:
            raise os_error(errno.EINVAL)

    def op_getsockname(self, s: int) -> list[Any]:
        obj = self._get(s)
        if isinstance(obj, _Udp):
            ep = obj.endpoint
            if ep is None:
                return [_text(0, obj.family), 0]
            return [_text(ep.local_addr, obj.family), ep.local_port]
        if isinstance(obj, _Tcp):
            if obj.listener is not None:
                return list(obj.listener.sockname())
            if obj.stream is not None and obj.stream.transport is not None:
                return list(obj.stream.transport.get_extra_info("sockname"))
            if obj.local is not None:
                return [_text(obj.local[0], obj.family), obj.local[1]]
            return [_text(0, obj.family), 0]
        assert obj.transport is not None
        return list(obj.transport.get_extra_info("sockname"))

    def op_setsockopt(self, s: int, name: str, value: int) -> None:
        obj = self._get(s)
        if isinstance(obj, _Udp):
            if name == "broadcast":
                obj.broadcast = bool(value)
                if obj.endpoint is not None:
                    ep = obj.endpoint
                    self._reopen_udp(obj, ep.local_addr, ep.local_port, None)
                return
            if name in ("rcvbuf", "sndbuf", "reuseaddr"):
                return
        elif isinstance(obj, _Tcp) and name in _STREAM_OPTIONS:
            obj.options[_STREAM_OPTIONS[name]] = bool(value) if name in (
                "nodelay", "keepalive") else int(value)
            return
        elif isinstance(obj, _Tcp) and name == "reuseaddr":
            return
        raise os_error(errno.ENOPROTOOPT, f"option {name} is not supported here")

    def op_close(self, s: int) -> None:
        obj = self.socks.pop(s, None)
        if isinstance(obj, _Udp):
            if obj.endpoint is not None:
                obj.endpoint.close()
        elif isinstance(obj, _Tcp):
            if obj.listener is not None:
                obj.listener.close()
            if obj.stream is not None and obj.stream.transport is not None:
                obj.stream.transport.close()
        elif isinstance(obj, _Stream) and obj.transport is not None:
            obj.transport.close()

    def op_abort(self, s: int) -> None:
        stream = self._stream(s)
        self.socks.pop(s, None)
        if stream.transport is not None:
            stream.transport.abort()

    # --- UDP ------------------------------------------------------------------------------
    def _open_udp(self, obj: _Udp, addr: int, port: int, remote: tuple[int, int] | None) -> None:
        service = datagram_service(self.stack)
        obj.endpoint = service.open_datagram_endpoint(
            obj, local_addr=addr, local_port=port, remote=remote,
            allow_broadcast=obj.broadcast,
        )

    def _reopen_udp(self, obj: _Udp, addr: int, port: int, remote: tuple[int, int] | None) -> None:
        if obj.endpoint is not None:
            obj.endpoint.close()
            obj.endpoint = None
        self._open_udp(obj, addr, port, remote)

    def op_connect(self, s: int, addr: str, port: int) -> None:
        obj = self._get(s)
        if isinstance(obj, _Udp):
            ep = obj.endpoint
            any_addr = ANY6 if obj.family == 6 else 0
            local: tuple[int, int] = (
                (ep.local_addr, ep.local_port) if ep is not None else (any_addr, 0))
            self._reopen_udp(obj, local[0], local[1], (_addr(addr), port))
            return
        if not isinstance(obj, _Tcp):
            raise os_error(errno.EISCONN)
        if obj.stream is not None or obj.listener is not None:
            raise os_error(errno.EISCONN)
        stream = _Stream()

        def on_connected(exc: BaseException | None) -> None:
            if exc is not None:
                stream.connect_error = exc

        service = stream_service(self.stack)
        bound = obj.local if obj.local is not None and obj.local not in (
            (0, 0), (ANY6, 0)) else None
        stream.transport = service.connect(
            stream, _addr(addr), port, local_addr=bound, on_connected=on_connected, **obj.options)
        obj.stream = stream

    def op_sendto(self, s: int, data: bytes, addr: str, port: int) -> int:
        obj = self._get(s)
        if not isinstance(obj, _Udp):
            raise os_error(errno.EISCONN)
        if obj.endpoint is None:
            self._open_udp(obj, ANY6 if obj.family == 6 else 0, 0, None)
        assert obj.endpoint is not None
        obj.endpoint.sendto(data, _addr(addr), port)
        return len(data)

    def op_recvfrom(self, s: int, n: int, timeout: float) -> list[Any] | None:
        obj = self._get(s)
        if isinstance(obj, _Udp):
            self.wait(lambda: bool(obj.queue) or obj.error is not None, timeout)
            if obj.error is not None:
                err, obj.error = obj.error, None
                raise err
            if not obj.queue:
                return None
            data, peer = obj.queue.popleft()
            return [data[:n], list(peer)]
        chunk = self.op_recv(s, n, timeout)
        if chunk is None:
            return None
        stream = self._stream(s)
        assert stream.transport is not None
        return [chunk, list(stream.transport.get_extra_info("peername"))]

    def op_pending_error(self, s: int) -> int:
        obj = self._get(s)
        if isinstance(obj, _Udp):
            oerr, obj.error = obj.error, None
            return (oerr.errno or 0) if oerr is not None else 0
        stream = self._stream(s)
        err = stream.error if stream.error is not None else stream.connect_error
        return (getattr(err, "errno", 0) or 0) if err is not None else 0

    # --- TCP ------------------------------------------------------------------------------
    def op_wait_connected(self, s: int, timeout: float) -> bool:
        stream = self._stream(s)
        self.wait(lambda: stream.connected or stream.connect_error is not None or stream.lost,
                  timeout)
        if stream.connect_error is not None:
            raise stream.connect_error
        if stream.error is not None and not stream.connected:
            raise stream.error
        return stream.connected

    def op_listen(self, s: int, backlog: int) -> None:
        obj = self._get(s)
        if not isinstance(obj, _Tcp) or obj.stream is not None:
            raise os_error(errno.EINVAL)
        addr, port = obj.local if obj.local is not None else (
            ANY6 if obj.family == 6 else 0, 0)
        service = stream_service(self.stack)
        obj.listener = service.listen(
            lambda: _Stream(obj.accepted.append), addr, port, backlog=backlog, **obj.options)

    def op_accept(self, s: int, timeout: float) -> list[Any] | None:
        obj = self._get(s)
        if not isinstance(obj, _Tcp) or obj.listener is None:
            raise os_error(errno.EINVAL)
        self.wait(lambda: bool(obj.accepted), timeout)
        if not obj.accepted:
            return None
        stream = obj.accepted.popleft()
        assert stream.transport is not None
        return [self._new(stream), list(stream.transport.get_extra_info("peername"))]

    def op_send(self, s: int, data: bytes, timeout: float) -> int:
        obj = self._get(s)
        if isinstance(obj, _Udp):
            if obj.endpoint is None or obj.endpoint.remote_addr is None:
                raise os_error(errno.EDESTADDRREQ)
            obj.endpoint.sendto(data)
            return len(data)
        stream = self._stream(s)
        if stream.error is not None:
            err, stream.error = stream.error, None
            raise err
        if stream.transport is None or stream.lost:
            raise os_error(errno.EPIPE)
        stream.transport.write(data)
        return len(data)

    def op_recv(self, s: int, n: int, timeout: float) -> bytes | None:
        obj = self._get(s)
        if isinstance(obj, _Udp):
            dgram = self.op_recvfrom(s, n, timeout)
            return None if dgram is None else bytes(dgram[0])
        stream = self._stream(s)
        transport = stream.transport

        def ready() -> bool:
            return bool(stream.buffer) or stream.eof or stream.error is not None

        if not ready() and transport is not None and not stream.lost:
            transport.resume_reading()
            self.wait(ready, timeout)
        if stream.buffer:
            data = bytes(stream.buffer[:n])
            del stream.buffer[:n]
            return data
        if stream.error is not None:
            err, stream.error = stream.error, None
            raise err
        if stream.eof:
            return b""
        return None

    def op_shutdown(self, s: int, how: str) -> None:
        stream = self._stream(s)
        if stream.transport is None:
            raise os_error(errno.ENOTCONN)
        if how in ("wr", "rdwr"):
            stream.transport.write_eof()

    def op_state(self, s: int) -> str:
        obj = self._get(s)
        if isinstance(obj, _Tcp) and obj.listener is not None:
            return "LISTEN"
        stream = self._stream(s)
        if stream.transport is None:
            return "CLOSED"
        return _state_name(stream.transport)

    def close_all(self) -> None:
        for s in list(self.socks):
            try:
                self.op_close(s)
            except OSError:
                pass
