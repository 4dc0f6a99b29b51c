"""The asyncio face of a TCP connection: :class:`TCPTransport` is the
:class:`asyncio.Transport` an asyncio protocol writes to, wrapping a sans-IO
:class:`layers_tcp.connection.Connection`.

It turns the connection's events (:class:`layers_tcp.connection.ConnectionApp`) into protocol
callbacks, each isolated (an exception is reported as the stack's internal error, never
raised into the stack), keeps asyncio's write-buffer limits (``pause_writing`` /
``resume_writing``) and answers ``get_extra_info``. The connection raises its events only
once a segment's effects are complete; this class also never nests one protocol callback
inside another: an event raised while a callback runs (the callback wrote, and a synchronous
peer answered at once) waits until that callback returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from layers.streams import write_buffer_limits
from layers.telemetry import Observer, Subscription
from layers.wire.ipv6 import ip_text
from layers_tcp.connection import Connection


def _takes_views(protocol: asyncio.BaseProtocol | None) -> bool:
    """Whether ``protocol.data_received`` is asyncio's StreamReaderProtocol's, which copies
    what it is given into its reader's buffer (``bytearray.extend``) and keeps no reference:
    it may be handed a read-only view of a received frame instead of a bytes copy of it."""
    return (getattr(type(protocol), "data_received", None)
            is asyncio.StreamReaderProtocol.data_received)


class TCPTransport(asyncio.Transport):
    """An asyncio.Transport over one TCP connection (``get_extra_info("tcp")`` is the
    connection itself: its state, windows, congestion control and ``describe()``)."""

    def __init__(
        self,
        conn: Connection,
        protocol: asyncio.BaseProtocol | None,
        on_connected: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        # asyncio.BaseTransport.__init__'s only work, without the super() call (one transport
        # per connection; get_extra_info below never reads it)
        self._extra: dict[str, Any] = {}
        self.conn = conn
        self._protocol = protocol
        self.takes_views = _takes_views(protocol)
        self.on_connected = on_connected
        self._made = False
        self._write_paused = False
        self._high_water = 64 * 1024
        self._low_water = 16 * 1024
        self._in_callback = False
        #: events that came while a callback ran, for when it returns
        self._later: list[Callable[[], Any]] = []

    # --- the connection's events (ConnectionApp) -------------------------------------
    def on_established(self) -> None:
        self._made = True
        proto = self._protocol
        if proto is not None:
            self._callback(proto.connection_made, self)
        cb = self.on_connected
        self.on_connected = None
        if cb is not None:
            cb(None)

    def on_data(self, data: bytes) -> None:
        # the per-segment path: no _callback layer
        if self._in_callback:
            self._later.append(partial(self.on_data, data))
            return
        self._in_callback = True
        try:
            self._protocol.data_received(data)  # type: ignore[union-attr]
        except Exception:
            self.conn.stack.internal_error("tcp protocol callback",
                                           self._protocol.data_received)  # type: ignore
        finally:
            self._in_callback = False
        if self._later:
            self._run_later()

    def on_eof(self) -> None:
        if self._in_callback:
            self._later.append(self.on_eof)
            return
        keep = self._callback(self._protocol.eof_received)  # type: ignore[union-attr]
        conn = self.conn
        if not keep and not conn._closing:
            conn.close()

    def on_closed(self, exc: Exception | None) -> None:
        if not self._made:
            cb = self.on_connected
            self.on_connected = None
            if cb is not None:
                cb(exc)
            return
        self._write_paused = False
        proto = self._protocol
        if proto is not None:
            self._callback(proto.connection_lost, exc)

    def on_writable(self) -> None:
        self._maybe_resume_writing()
        if self._write_paused:  # written to again before this came: wait for the next drain
            self.conn.writable_at = self._low_water

    def _callback(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._in_callback:
            self._later.append(partial(self._callback, fn, *args))  # after the running one
            return None
        self._in_callback = True
        try:
            return fn(*args)
        except Exception:
            self.conn.stack.internal_error("tcp protocol callback", fn)
            return None
        finally:
            self._in_callback = False
            if self._later:
                self._run_later()

    def _run_later(self) -> None:
        later = self._later
        while later and not self._in_callback:
            later.pop(0)()

    # --- asyncio.BaseTransport ---------------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        conn = self.conn
        if name == "peername":
            return (ip_text(conn.remote, conn.v4mapped), conn.rport)
        if name == "sockname":
            return (ip_text(conn.local, conn.v4mapped), conn.lport)
        if name == "socket":
            return None
        if name == "tcp":
            return conn
        return default

    def is_closing(self) -> bool:
        return self.conn.is_closing()

    def close(self) -> None:
        self.conn.close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self.takes_views = _takes_views(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[return-value]

    # --- asyncio.ReadTransport ---------------------------------------------------------
    def is_reading(self) -> bool:
        return self.conn.is_reading()

    def pause_reading(self) -> None:
        self.conn.pause_reading()

    def resume_reading(self) -> None:
        self.conn.resume_reading()

    # --- asyncio.WriteTransport --------------------------------------------------------
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high_water, self._low_water = write_buffer_limits(high, low)
        if self._write_paused:
            self.conn.writable_at = self._low_water
        self._maybe_pause_writing()
        self._maybe_resume_writing()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def get_write_buffer_size(self) -> int:
        return self.conn.write_buffer_size()

    def _maybe_pause_writing(self) -> None:
        if not self._write_paused and self.conn.write_buffer_size() > self._high_water:
            self._write_paused = True
            self.conn.writable_at = self._low_water  # on_writable when it drains to there
            proto = self._protocol
            if proto is not None:
                self._callback(proto.pause_writing)

    def _maybe_resume_writing(self) -> None:
        conn = self.conn
        if self._write_paused and conn.write_buffer_size() <= self._low_water:
            self._write_paused = False
            conn.writable_at = -1
            proto = self._protocol
            if proto is not None and not conn._lost:
                self._callback(proto.resume_writing)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.conn.write(data)
        if not self._write_paused:
            self._maybe_pause_writing()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.conn.writelines(list_of_data)
        if not self._write_paused:
            self._maybe_pause_writing()

    def write_eof(self) -> None:
        self.conn.write_eof()

    def can_write_eof(self) -> bool:
        return True

    def abort(self) -> None:
        self.conn.abort()

    # --- telemetry -----------------------------------------------------------------------
    def subscribe(self, callback: Observer, *, interval: float = 0.0) -> Subscription:
        """Call ``callback(sample)`` (a :class:`layers.telemetry.ConnectionSample`) at every
        ACK that changes this connection's state, or at most once per ``interval`` seconds.
        From a StreamWriter: ``writer.transport.subscribe(...)``. ``close()`` the returned
        subscription to stop."""
        return self.conn.subscribe(callback, interval=interval)

    def __getattr__(self, name: str) -> Any:
        # only for names this class does not define: the connection's state (``cc``,
        # ``state``, ``snd_una``, ``describe()``...) reads through the transport as it did
        # when the connection was its own transport
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["conn"], name)

    def __repr__(self) -> str:
        return f"<TCPTransport {self.conn!r}>"
