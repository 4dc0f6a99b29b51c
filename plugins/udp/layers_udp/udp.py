"""UDP (RFC 768, RFC 1122 section 4.1): validation, demultiplexing, endpoints, ICMP errors.

Sans-IO: it reads ``stack.now`` nowhere, sends through ``stack.ip`` and schedules only
``stack.call_soon`` (delivery of datagrams held while an endpoint was paused).

Behaviour, as Linux:

* A datagram is dropped when the IP payload is shorter than 8 bytes (``truncated``) or than
  the UDP length field, or that field is below 8 (``bad_length``); bytes after the UDP length
  are ignored. A zero checksum means "none" over IPv4 and is dropped over IPv6, where the
  checksum is mandatory (RFC 8200 8.1; ``zero_checksum``); others are verified unless the
  link set RX_CSUM_VERIFIED (``bad_checksum``). Sent checksums are never 0 (a computed 0 goes out as
  0xFFFF); on links with transmit checksum offload the link completes them.
* Demultiplexing picks the most specific endpoint: connected (4-tuple), then bound to the
  datagram's address, then bound to 0.0.0.0; endpoints sharing a port with ``reuse_port`` are
  chosen by a hash of the peer. Broadcasts go to every endpoint bound to the wildcard or to
  that broadcast address. No endpoint: ICMP port unreachable (never for broadcasts).
* ICMP errors reach only connected endpoints, matched by the quoted addresses and ports.

Counters (``stack.counter("udp")``, RFC 4113 / ``netstat -s`` names): InDatagrams,
OutDatagrams, NoPorts, InErrors, InCsumErrors, RcvbufErrors, IgnoredMulti (broadcasts nobody
wanted), icmp_errors_delivered / _soft / _unconnected; drops by reason: truncated,
bad_length, bad_checksum, zero_checksum, no_port, no_port_broadcast, rcvbuf_full,
icmp_error_short_quote.
"""

from __future__ import annotations

import errno
import os
import random
import struct
from collections import deque
from typing import TYPE_CHECKING, Any

from layers.datagrams import Buffer, DatagramHandler
from layers.errors import os_error
from layers.links.base import RX_CSUM_VERIFIED, TxOffload
from layers.protocols import IPDatagram, TransportError
from layers.settings import read_settings
from layers.wire.addr import IPV4_BROADCAST
from layers.wire.checksum import ones_sum
from layers.wire.icmp import (
    ICMP_DEST_UNREACH,
    ICMP_FRAG_NEEDED,
    ICMP_HOST_ANO,
    ICMP_HOST_ISOLATED,
    ICMP_HOST_UNKNOWN,
    ICMP_NET_ANO,
    ICMP_NET_UNKNOWN,
    ICMP_PARAMETERPROB,
    ICMP_PKT_FILTERED,
    ICMP_PORT_UNREACH,
    ICMP_PREC_CUTOFF,
    ICMP_PREC_VIOLATION,
    ICMP_PROT_UNREACH,
    ICMP_SOURCE_QUENCH,
)
from layers.wire.ipv4 import IPV4_MIN_HLEN
from layers.wire.ipv6 import ANY6, bind_overlap, ip_str
from layers.wire.udp import UDP_CSUM_OFFSET, UDP_HEADER, UDP_HLEN, UDP_MAX_PAYLOAD
from layers_udp.settings import UdpSettings

if TYPE_CHECKING:
    from layers.stack import Stack
    from layers.timers import Timer

PROTO_UDP = 17
_PORTS = struct.Struct("!HH")
_unpack_from = UDP_HEADER.unpack_from
_pack = UDP_HEADER.pack
#: checksum offload request: offsets from the IP header, which IPv4 sends without options
_TX_CSUM_OFFLOAD = TxOffload(csum_start=IPV4_MIN_HLEN, csum_offset=UDP_CSUM_OFFSET)

# ICMP messages Linux reports to a connected UDP socket without IP_RECVERR ("hard" errors,
# net/ipv4/udp.c __udp4_lib_err and icmp_err_convert): destination unreachable codes 2
# (protocol), 3 (port), 4 (fragmentation needed, with PMTU discovery on), 5-10 and 13-15, and
# parameter problem. Net/host unreachable (0, 1, 11, 12) and time exceeded are "soft".
_HARD_UNREACH_CODES = frozenset({
    ICMP_PROT_UNREACH, ICMP_PORT_UNREACH, ICMP_FRAG_NEEDED, ICMP_NET_UNKNOWN, ICMP_HOST_UNKNOWN,
    ICMP_HOST_ISOLATED, ICMP_NET_ANO, ICMP_HOST_ANO, ICMP_PKT_FILTERED, ICMP_PREC_VIOLATION,
    ICMP_PREC_CUTOFF,
})


class UDPEndpoint:
    """One bound (maybe connected) endpoint: the udp plugin's :class:`DatagramEndpoint`."""

    __slots__ = (
        "_flush_timer",
        "_paused",
        "_queue",
        "_queued",
        "_udp",
        "allow_broadcast",
        "closed",
        "handler",
        "local_addr",
        "local_port",
        "remote_addr",
        "remote_port",
        "reuse_port",
        "v6only",
    )

    def __init__(
        self,
        udp: UDP,
        handler: DatagramHandler,
        local_addr: int,
        local_port: int,
        remote: tuple[int, int] | None,
        allow_broadcast: bool,
        reuse_port: bool,
        paused: bool,
    ) -> None:
        self._udp = udp
        self.handler = handler
        self.local_addr = local_addr
        self.local_port = local_port
        self.remote_addr: int | None = remote[0] if remote else None
        self.remote_port: int | None = remote[1] if remote else None
        self.allow_broadcast = allow_broadcast
        self.reuse_port = reuse_port
        #: IPV6_V6ONLY: bound to :: and False, IPv4 datagrams arrive too (named ::ffff:a.b.c.d
        #: by the asyncio adapter)
        self.v6only = True
        self.closed = False
        self._paused = paused
        self._queue: deque[tuple[bytes, int, int]] = deque()
        self._queued = 0
        self._flush_timer: Timer | None = None

    # --- receive side -----------------------------------------------------------------
    def _deliver(self, data: bytes, src: int, sport: int) -> None:
        udp = self._udp
        if self._paused or self._queue:
            if self._queued + len(data) > udp.rcvbuf:
                c = udp._c
                c["RcvbufErrors"] += 1
                c["InErrors"] += 1
                c.drop("rcvbuf_full")
                return
            self._queue.append((data, src, sport))
            self._queued += len(data)
            udp._c["InDatagrams"] += 1
            return
        udp._c["InDatagrams"] += 1
        self.handler.on_datagram(data, src, sport)

    def pause_reading(self) -> None:
        self._paused = True
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None

    def resume_reading(self) -> None:
        self._paused = False
        if self._queue and self._flush_timer is None and not self.closed:
            self._flush_timer = self._udp.stack.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_timer = None
        queue = self._queue
        while queue and not self._paused and not self.closed:
            data, src, sport = queue.popleft()
            self._queued -= len(data)
            self.handler.on_datagram(data, src, sport)

    @property
    def reading(self) -> bool:
        return not self._paused and not self.closed

    @property
    def recv_queue(self) -> int:
        return self._queued

    # --- send side --------------------------------------------------------------------
    def sendto(self, data: Buffer, dst: int | None = None, dport: int | None = None) -> None:
        if self.closed:
            raise os_error(errno.EBADF)
        if dst is None:
            if self.remote_addr is None or self.remote_port is None:
                raise os_error(errno.EDESTADDRREQ)
            dst, dport = self.remote_addr, self.remote_port
        if not dport:
            raise os_error(errno.EINVAL, "destination port 0")
        if len(data) > UDP_MAX_PAYLOAD:
            raise os_error(errno.EMSGSIZE, f"{len(data)} bytes; UDP carries at most "
                                           f"{UDP_MAX_PAYLOAD}")
        udp = self._udp
        if not self.allow_broadcast and dst != self.remote_addr and udp.is_broadcast(dst):
            # (a connected endpoint's peer was checked when it connected)
            raise os_error(errno.EACCES, "sending to a broadcast address needs allow_broadcast")
        udp.output(self, data, dst, dport)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._queue.clear()
        self._queued = 0
        self._udp._unbind(self)

    def __repr__(self) -> str:
        remote = (f"{ip_str(self.remote_addr)}:{self.remote_port}"
                  if self.remote_addr is not None else "*:*")
        return f"<UDPEndpoint {ip_str(self.local_addr)}:{self.local_port} -> {remote}>"


class UDP:
    """The udp transport protocol: a :class:`TransportProtocol` and a :class:`DatagramService`.

    Settings: ``udp.port_range`` (ephemeral ports, default ``32768-60999`` as Linux),
    ``udp.port_seed`` (an int: reproducible ephemeral ports in tests), ``udp.rcvbuf`` (bytes
    held per paused endpoint, default 212992), ``udp.report_soft_errors`` (default True:
    connected endpoints also get net/host unreachable and time exceeded as EHOSTUNREACH...;
    False reports only the "hard" errors, as Linux does without IP_RECVERR).
    """

    name = "udp"
    protocol = PROTO_UDP
    #: UDP runs over IPv4 and IPv6 (its checksum formula holds for both families' addresses:
    #: sums are taken modulo 0xFFFF, see layers.wire.ipv6.pseudo_sum)
    ip_versions = (4, 6)

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._c = stack.counter("udp")
        cfg = read_settings(stack, "udp", UdpSettings)
        self.settings = cfg
        self.port_range = cfg.ports
        seed = cfg.port_seed
        self._rng = random.Random(seed if seed is not None else os.urandom(16))
        self.rcvbuf = cfg.rcvbuf
        self.report_soft_errors = cfg.report_soft_errors
        #: IPV6_V6ONLY's default for endpoints on :: (Linux's net.ipv6.bindv6only)
        self.bindv6only = stack.setting("ipv6.bindv6only", False)
        #: (local addr, local port, remote addr, remote port) -> connected endpoints
        self._connected: dict[tuple[int, int, int, int], list[UDPEndpoint]] = {}
        #: (local addr or 0, local port) -> unconnected endpoints
        self._bound: dict[tuple[int, int], list[UDPEndpoint]] = {}
        #: local port -> every endpoint on it
        self._ports: dict[int, list[UDPEndpoint]] = {}
        # set while an endpoint sends: a local error reported during ip.send belongs to it
        self._sending = False
        self._send_error: TransportError | None = None
        self._tx_csum_checked = -1
        self._tx_csum_any = False

    # --- TransportProtocol: receive ---------------------------------------------------
    def receive(self, datagram: IPDatagram) -> None:
        payload = datagram.payload
        n = len(payload)
        if n < UDP_HLEN:
            c = self._c
            c["InErrors"] += 1
            c.drop("truncated")
            return
        sport, dport, length, csum = _unpack_from(payload)
        if length != n:
            if length < UDP_HLEN or length > n:
                c = self._c
                c["InErrors"] += 1
                c.drop("bad_length")
                return
            payload = memoryview(payload)[:length]  # RFC 768: the length field delimits it
        src = datagram.src
        dst = datagram.dst
        if not csum and dst > 0xFFFFFFFF:
            # RFC 8200 8.1: over IPv6 the checksum is mandatory; a zero one is discarded (and
            # counted as a checksum error, as Linux does), never answered with an error
            c = self._c
            c["InErrors"] += 1
            c["InCsumErrors"] += 1
            c.drop("zero_checksum")
            return
        if csum and not datagram.flags & RX_CSUM_VERIFIED:
            # ones'-complement sum over pseudo-header and datagram must be all ones (never
            # zero: protocol 17 is in it)
            if ones_sum(payload, (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
                        + PROTO_UDP + length) != 0xFFFF:
                c = self._c
                c["InErrors"] += 1
                c["InCsumErrors"] += 1
                c.drop("bad_checksum")
                return
        if datagram.broadcast:
            self._receive_broadcast(payload, src, dst, sport, dport)
            return
        group = self._connected.get((dst, dport, src, sport))
        if group is None:
            group = self._bound.get((dst, dport))
            if group is None:
                group = self._bound.get((0 if dst <= 0xFFFFFFFF else ANY6, dport))
                if group is None and dst <= 0xFFFFFFFF:  # a dual-stack endpoint on ::
                    dual = [e for e in self._bound.get((ANY6, dport), ()) if not e.v6only]
                    group = dual or None
                if group is None:
                    c = self._c
                    c["NoPorts"] += 1
                    c.drop("no_port")
                    self._port_unreachable(datagram)
                    return
        ep = group[0] if len(group) == 1 else group[hash((src, sport)) % len(group)]
        ep._deliver(bytes(payload[UDP_HLEN:]), src, sport)

    def _port_unreachable(self, datagram: IPDatagram) -> None:
        if datagram.dst <= 0xFFFFFFFF:
            self.stack.errors.destination_unreachable(datagram, 3)
            return
        icmpv6 = self.stack.transports.get(58)  # ICMPv6 reports IPv6's errors
        report = getattr(icmpv6, "destination_unreachable", None)
        if report is not None:
            report(datagram, 4)  # port unreachable (RFC 4443 3.1)

    def _receive_broadcast(
        self, payload: Buffer, src: int, dst: int, sport: int, dport: int
    ) -> None:
        # Every endpoint bound to the wildcard or to the broadcast address gets a copy (Linux
        # __udp4_lib_mcast_deliver); none means no ICMP error (RFC 1122 3.2.2).
        targets = [*self._bound.get((0, dport), ()), *self._bound.get((dst, dport), ())]
        if not targets:
            self._c["IgnoredMulti"] += 1
            self._c.drop("no_port_broadcast")
            return
        data = bytes(payload[UDP_HLEN:])
        for ep in targets:
            ep._deliver(data, src, sport)

    # --- TransportProtocol: errors ----------------------------------------------------
    def error(self, error: TransportError) -> None:
        c = self._c
        if self._sending and error.local:
            self._send_error = error  # raised from the sendto() in progress
            return
        quote = error.quote
        if len(quote) < 4:
            c.drop("icmp_error_short_quote")
            return
        sport, dport = _PORTS.unpack_from(quote)
        group = self._connected.get((error.src, sport, error.dst, dport))
        if group is None:
            # Unconnected endpoints learn nothing: Linux reports ICMP errors to them only
            # with IP_RECVERR, which we do not offer.
            c["icmp_errors_unconnected"] += 1
            return
        if not self._reportable(error):
            c["icmp_errors_soft"] += 1
            return
        c["icmp_errors_delivered"] += 1
        exc = os_error(error.errno)
        for ep in list(group):
            ep.handler.on_error(exc)

    def _reportable(self, error: TransportError) -> bool:
        t = error.icmp_type
        if t == ICMP_SOURCE_QUENCH:
            return False
        if self.report_soft_errors:
            return True
        if t == ICMP_DEST_UNREACH:
            return error.icmp_code in _HARD_UNREACH_CODES
        return t == ICMP_PARAMETERPROB

    # --- output -----------------------------------------------------------------------
    def is_broadcast(self, addr: int) -> bool:
        if addr == IPV4_BROADCAST:
            return True
        return any(addr in iface.broadcasts for iface in self.stack.interfaces)

    def output(self, ep: UDPEndpoint, data: Buffer, dst: int, dport: int) -> None:
        stack = self.stack
        ip = stack.ip if dst <= 0xFFFFFFFF else stack.ip6
        if ip is None:
            raise os_error(errno.ENETUNREACH, "no network layer for this address family")
        src: int | None = ep.local_addr
        if not src or src not in stack.local_addresses:
            if src is None or src in (0, ANY6) or src <= 0xFFFFFFFF or not stack.is_local(src):
                src = ip.source_for(dst)  # else: bound to one of our IPv6 addresses
            if src is None:
                raise os_error(errno.ENETUNREACH)
        n = len(data)
        length = UDP_HLEN + n
        sport = ep.local_port
        if self._tx_csum_links() and dst <= 0xFFFFFFFF:
            route = stack.routes.lookup(dst)
            if (route is not None and route.interface.capabilities.tx_checksum
                    and length + IPV4_MIN_HLEN <= route.interface.mtu
                    and dst not in stack.local_addresses):
                # Leave the checksum to the link (virtio NEEDS_CSUM): the field holds the
                # pseudo-header sum; the device sums from the UDP header on and stores it.
                p = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + PROTO_UDP + length
                p = (p & 0xFFFF) + (p >> 16)
                self._send(_pack(sport, dport, length, (p & 0xFFFF) + (p >> 16)) + data,
                           dst, src, _TX_CSUM_OFFLOAD)
                return
        # The checksum of header + data without building the header first: the data's sum
        # (it starts at an even offset, so RFC 1071 padding is the same) plus the header's
        # words and the pseudo-header. Never zero (protocol 17 is in the sum); all ones gives
        # the checksum 0, sent as 0xFFFF.
        s = ones_sum(data, (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
                     + PROTO_UDP + sport + dport + length + length)
        self._send(_pack(sport, dport, length, (0xFFFF - s) or 0xFFFF) + data, dst, src, None)

    def _tx_csum_links(self) -> bool:
        """Whether any interface completes transport checksums (re-checked as links come)."""
        ifaces = self.stack.interfaces
        if len(ifaces) != self._tx_csum_checked:
            self._tx_csum_checked = len(ifaces)
            self._tx_csum_any = any(i.capabilities.tx_checksum for i in ifaces)
        return self._tx_csum_any

    def _send(self, segment: bytes, dst: int, src: int, offload: TxOffload | None) -> None:
        ip = self.stack.ip if dst <= 0xFFFFFFFF else self.stack.ip6
        assert ip is not None
        self._sending = True
        self._send_error = None
        try:
            ok = ip.send(dst, PROTO_UDP, segment, src=src, offload=offload)
        finally:
            self._sending = False
        err = self._send_error
        if err is not None:
            self._send_error = None
            raise os_error(err.errno)
        if not ok:
            raise os_error(errno.ENETUNREACH)
        self._c["OutDatagrams"] += 1

    # --- DatagramService --------------------------------------------------------------
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
    ) -> UDPEndpoint:
        """As :meth:`layers.datagrams.DatagramService.open_datagram_endpoint`; ``v6only``
        (IPV6_V6ONLY, default the ``ipv6.bindv6only`` setting, false as Linux's) keeps an
        endpoint on ``::`` from IPv4 datagrams."""
        stack = self.stack
        if v6only is None:
            v6only = self.bindv6only
        v6only = v6only or local_addr != ANY6
        if local_addr and local_addr != ANY6 and not stack.is_local(
                local_addr) and not self.is_broadcast(local_addr):
            raise os_error(errno.EADDRNOTAVAIL, f"{ip_str(local_addr)} is not an address "
                                                f"of this stack")
        if local_port:
            if self._conflicts(local_addr, local_port, reuse_port, v6only):
                raise os_error(errno.EADDRINUSE, f"{ip_str(local_addr)}:{local_port}")
        else:
            local_port = self._ephemeral_port()
        if remote is not None:
            raddr, rport = remote
            if not raddr or not rport:
                raise os_error(errno.EINVAL, "connect to address 0 or port 0")
            if not allow_broadcast and self.is_broadcast(raddr):
                raise os_error(errno.EACCES, "connecting to a broadcast address needs "
                                             "allow_broadcast")
            if local_addr in (0, ANY6) or not stack.is_local(local_addr):
                ip = stack.ip_for(raddr)
                src = ip.source_for(raddr) if ip is not None else None
                if src is None:
                    raise os_error(errno.ENETUNREACH, f"no route to {ip_str(raddr)}")
                local_addr = src
        ep = UDPEndpoint(self, handler, local_addr, local_port, remote, allow_broadcast,
                         reuse_port, paused)
        ep.v6only = v6only
        self._ports.setdefault(local_port, []).append(ep)
        if remote is not None:
            self._connected.setdefault((local_addr, local_port, *remote), []).append(ep)
        else:
            self._bound.setdefault((local_addr, local_port), []).append(ep)
        self._c["endpoints_opened"] += 1
        return ep

    def _conflicts(self, addr: int, port: int, reuse_port: bool, v6only: bool = True) -> bool:
        for other in self._ports.get(port, ()):
            if not bind_overlap(addr, v6only, other.local_addr, other.v6only):
                continue
            if not (reuse_port and other.reuse_port):
                return True
        return False

    def _ephemeral_port(self) -> int:
        # RFC 6056 section 3.3.1 (Algorithm 1, simple port randomisation): a random start in
        # the range, then the next free port.
        lo, hi = self.port_range
        count = hi - lo + 1
        offset = self._rng.randrange(count)
        ports = self._ports
        for i in range(count):
            port = lo + (offset + i) % count
            if port not in ports:
                return port
        raise os_error(errno.EAGAIN, f"every ephemeral port in {lo}-{hi} is in use")

    def _unbind(self, ep: UDPEndpoint) -> None:
        if ep.remote_addr is not None and ep.remote_port is not None:
            key4 = (ep.local_addr, ep.local_port, ep.remote_addr, ep.remote_port)
            _remove(self._connected, key4, ep)
        else:
            _remove(self._bound, (ep.local_addr, ep.local_port), ep)
        _remove(self._ports, ep.local_port, ep)

    # --- lifecycle and reports --------------------------------------------------------
    def endpoints(self) -> list[UDPEndpoint]:
        return [ep for group in self._ports.values() for ep in group]

    def stopping(self) -> None:
        for ep in self.endpoints():
            ep.close()
            ep.handler.on_close(None)

    def report(self) -> dict[str, Any]:
        rows = []
        for ep in self.endpoints():
            remote = (f"{ip_str(ep.remote_addr)}:{ep.remote_port}"
                      if ep.remote_addr is not None else "*:*")
            rows.append({
                "proto": "udp",
                "local": f"{ip_str(ep.local_addr)}:{ep.local_port}",
                "remote": remote,
                "state": "-",
                "send_q": 0,
                "recv_q": ep.recv_queue,
            })
        return {"connections": rows}


def _remove(table: dict[Any, list[UDPEndpoint]], key: Any, ep: UDPEndpoint) -> None:
    group = table.get(key)
    if group is None:
        return
    try:
        group.remove(ep)
    except ValueError:
        return
    if not group:
        del table[key]
