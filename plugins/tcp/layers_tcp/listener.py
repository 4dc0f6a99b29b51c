"""A listening endpoint: the SYN queue, the accept queue and handing out protocols."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from layers.wire.ipv6 import ip_str
from layers_tcp.transport import TCPTransport

if TYPE_CHECKING:
    from layers_tcp.connection import Connection
    from layers_tcp.protocol import TCP, ConnOptions


class Listener:
    """Listens on ``(address, port)`` (address 0: every local address).

    Like Linux, ``backlog`` bounds both queues: half-open connections (SYN-RECEIVED) and
    established ones not yet accepted. A SYN that finds either full is dropped (the peer
    retransmits), and so is a handshake-completing ACK that finds the accept queue full (the
    SYN-ACK is retransmitted later). With ``accepting`` False (``start_server(...,
    start_serving=False)``) connections wait in the accept queue."""

    def __init__(
        self,
        tcp: TCP,
        address: int,
        port: int,
        factory: Callable[[], asyncio.BaseProtocol],
        options: ConnOptions,
        *,
        backlog: int,
        accepting: bool,
    ) -> None:
        self.tcp = tcp
        self.address = address
        #: IPV6_V6ONLY: a listener on :: (ANY6) takes IPv4 connections only when False
        self.v6only = True
        self.port = port
        self.factory = factory
        self.options = options
        self.backlog = backlog
        self.accepting = accepting
        self.syn_queue: set[Connection] = set()
        self.accept_queue: deque[Connection] = deque()
        self._closed = False
        #: when the SYN queue last overflowed (cookie ACKs are checked for two minutes after)
        self.last_overflow = float("-inf")

    # --- StreamListener ----------------------------------------------------------------
    def sockname(self) -> tuple[str, int]:
        return (ip_str(self.address), self.port)

    @property
    def closed(self) -> bool:
        return self._closed

    def start_accepting(self) -> None:
        if self._closed:
            return
        self.accepting = True
        while self.accept_queue and self.accepting and not self._closed:
            self._accept(self.accept_queue.popleft())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.tcp.unlisten(self)
        for conn in [*self.syn_queue, *self.accept_queue]:
            conn.listener = None
            conn.reset_quietly()
        self.syn_queue.clear()
        self.accept_queue.clear()

    # --- used by the engine ------------------------------------------------------------
    def syn_acceptable(self) -> bool:
        return (
            not self._closed
            and len(self.syn_queue) < self.backlog
            and len(self.accept_queue) < self.backlog
        )

    def can_accept(self) -> bool:
        return self.accepting or len(self.accept_queue) < self.backlog

    def half_open(self, conn: Connection) -> None:
        self.syn_queue.add(conn)

    def established(self, conn: Connection) -> None:
        self.syn_queue.discard(conn)
        if self.accepting:
            self._accept(conn)
        else:
            self.accept_queue.append(conn)

    def _accept(self, conn: Connection) -> None:
        conn.listener = None
        self.tcp.c["Accepted"] += 1
        try:
            protocol = self.factory()
        except Exception:
            self.tcp.stack.internal_error("tcp protocol factory", self.factory)
            conn.reset_quietly()
            return
        conn.attach(TCPTransport(conn, protocol))

    def forget(self, conn: Connection) -> None:
        self.syn_queue.discard(conn)
        try:
            self.accept_queue.remove(conn)
        except ValueError:
            pass

    def describe(self) -> dict[str, object]:
        return {
            "proto": "tcp",
            "local": f"{ip_str(self.address)}:{self.port}",
            "state": "LISTEN",
            # as Linux's ss/netstat show a listener: queued connections / backlog
            "recv_q": len(self.accept_queue),
            "send_q": self.backlog,
            "backlog": self.backlog,
            "syn_queue": len(self.syn_queue),
            "accept_queue": len(self.accept_queue),
        }
