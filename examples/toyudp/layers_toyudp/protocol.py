"""The toyudp transport (IP protocol 17) and its datagram endpoints."""

from __future__ import annotations

import errno
import random
from collections import deque
from typing import TYPE_CHECKING

from layers.datagrams import Buffer, DatagramHandler
from layers.errors import os_error
from layers.links.base import RX_CSUM_VERIFIED
from layers.protocols import IPDatagram, TransportError
from layers.wire.addr import IPV4_BROADCAST
from layers.wire.udp import UDP_HEADER, UDP_HLEN, UDP_MAX_PAYLOAD, build_udp, udp_checksum_ok

if TYPE_CHECKING:
    from layers.stack import Stack

PROTO_UDP = 17
EPHEMERAL = (49152, 65535)  # RFC 6335's dynamic range


class Endpoint:
    """One bound (maybe connected) endpoint: :class:`layers.datagrams.DatagramEndpoint`."""

    def __init__(self, udp: ToyUDP, handler: DatagramHandler, local_addr: int, local_port: int,
                 remote: tuple[int, int] | None, allow_broadcast: bool, paused: bool) -> None:
        self.udp = udp
        self.handler = handler
        self.local_addr = local_addr
        self.local_port = local_port
        self.remote_addr = remote[0] if remote else None
        self.remote_port = remote[1] if remote else None
        self.allow_broadcast = allow_broadcast
        self._reading = not paused
        self._held: deque[tuple[bytes, int, int]] = deque()
        self.closed = False

    def deliver(self, data: bytes, src: int, sport: int) -> None:
        if self._reading:
            self.handler.on_datagram(data, src, sport)
        else:
            self._held.append((data, src, sport))

    def sendto(self, data: Buffer, dst: int | None = None, dport: int | None = None) -> None:
        if self.closed:
            raise os_error(errno.EBADF)
        if dst is None or dport is None:
            if self.remote_addr is None or self.remote_port is None:
                raise os_error(errno.EDESTADDRREQ)
            dst, dport = self.remote_addr, self.remote_port
        if len(data) > UDP_MAX_PAYLOAD:
            raise os_error(errno.EMSGSIZE)
        if self.udp.is_broadcast(dst) and not self.allow_broadcast:
            raise os_error(errno.EACCES)
        self.udp.output(self, bytes(data), dst, dport)

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading:
            return
        self._reading = True
        self.udp.stack.call_soon(self._flush)

    def _flush(self) -> None:
        while self._held and self._reading and not self.closed:
            self.handler.on_datagram(*self._held.popleft())

    @property
    def reading(self) -> bool:
        return self._reading

    @property
    def recv_queue(self) -> int:
        return sum(len(d) for d, _, _ in self._held)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.udp.endpoints.remove(self)


class ToyUDP:
    name = "toyudp"
    protocol = PROTO_UDP

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.c = stack.counter("toyudp")
        self.endpoints: list[Endpoint] = []

    # --- receive ------------------------------------------------------------------------
    def receive(self, datagram: IPDatagram) -> None:
        seg = datagram.payload
        if len(seg) < UDP_HLEN:
            self.c.drop("truncated")
            return
        sport, dport, length, _ = UDP_HEADER.unpack_from(seg)
        if length < UDP_HLEN or length != len(seg):
            self.c.drop("bad_length")  # shorter than the IP payload too: not trimmed
            return
        if not datagram.flags & RX_CSUM_VERIFIED and not udp_checksum_ok(
                datagram.src, datagram.dst, seg):
            self.c.drop("bad_checksum")
            return
        data = bytes(seg[UDP_HLEN:])
        matches = [ep for ep in self.endpoints if self._accepts(ep, datagram, sport, dport)]
        if not matches:
            if datagram.broadcast:
                self.c.drop("no_port_broadcast")
            else:
                self.c.drop("no_port")
                self.stack.errors.destination_unreachable(datagram, 3)
            return
        self.c["in_datagrams"] += 1
        if datagram.broadcast:
            for ep in matches:
                ep.deliver(data, datagram.src, sport)
            return
        # the most specific endpoint: connected, then bound to the address, then the wildcard
        best = max(matches, key=lambda ep: (ep.remote_addr is not None, ep.local_addr != 0))
        best.deliver(data, datagram.src, sport)

    @staticmethod
    def _accepts(ep: Endpoint, d: IPDatagram, sport: int, dport: int) -> bool:
        if ep.local_port != dport:
            return False
        if ep.local_addr and ep.local_addr != d.dst and not d.broadcast:
            return False
        return ep.remote_addr is None or (ep.remote_addr == d.src and ep.remote_port == sport)

    def error(self, error: TransportError) -> None:
        self.c.drop("icmp_error_ignored")  # declared: "udp.icmp_errors" is a known divergence

    # --- send ---------------------------------------------------------------------------
    def is_broadcast(self, addr: int) -> bool:
        return addr == IPV4_BROADCAST or any(addr in i.broadcasts for i in self.stack.interfaces)

    def output(self, ep: Endpoint, data: bytes, dst: int, dport: int) -> None:
        ip = self.stack.ip
        assert ip is not None
        src = ep.local_addr or ip.source_for(dst)
        if src is None:
            raise os_error(errno.ENETUNREACH)
        ip.send(dst, PROTO_UDP, build_udp(src, dst, ep.local_port, dport, data), src=src)
        self.c["out_datagrams"] += 1

    # --- DatagramService ----------------------------------------------------------------
    def open_datagram_endpoint(
        self, handler: DatagramHandler, *, local_addr: int = 0, local_port: int = 0,
        remote: tuple[int, int] | None = None, allow_broadcast: bool = False,
        reuse_port: bool = False, paused: bool = False,
    ) -> Endpoint:
        if local_addr and not self.stack.is_local(local_addr):
            raise os_error(errno.EADDRNOTAVAIL)
        if remote is not None and self.stack.ip is not None and (
                self.stack.ip.source_for(remote[0]) is None):
            raise os_error(errno.ENETUNREACH)
        if local_port == 0:
            local_port = self._ephemeral()
        elif any(ep.local_port == local_port and (not ep.local_addr or not local_addr
                                                  or ep.local_addr == local_addr)
                 for ep in self.endpoints):
            raise os_error(errno.EADDRINUSE)
        ep = Endpoint(self, handler, local_addr, local_port, remote, allow_broadcast, paused)
        self.endpoints.append(ep)
        return ep

    def _ephemeral(self) -> int:
        used = {ep.local_port for ep in self.endpoints}
        for _ in range(1000):
            port = random.randint(*EPHEMERAL)
            if port not in used:
                return port
        raise os_error(errno.EADDRINUSE, "no free ephemeral port")

    def stop(self) -> None:
        for ep in list(self.endpoints):
            ep.close()
            ep.handler.on_close(None)
