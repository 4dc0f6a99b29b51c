"""The IPv4 network protocol object: receive path, send path, errors, path MTU.

See the package docstring (:mod:`layers_ipv4`) for the behaviour and the settings.
"""

from __future__ import annotations

import errno as _errno
import random
import struct
from typing import TYPE_CHECKING, ClassVar

import attrs

from layers.links.base import RX_BROADCAST, RX_CSUM_VERIFIED, Gather, Medium, TxOffload
from layers.protocols import IPDatagram, TransportError, UnpackedReceive
from layers.settings import read_settings
from layers.wire.addr import BROADCAST_MAC, IPV4_BROADCAST, ip4_str
from layers.wire.checksum import checksum
from layers.wire.ethernet import ETH_HEADER, ETH_P_IP
from layers.wire.ipv4 import IP_DF, IPV4_HEADER, IPV4_MIN_HLEN, IPV4_MIN_MTU
from layers_ipv4.fragment import fragment
from layers_ipv4.reassembly import MAX_DATAGRAM, Reassembler
from layers_ipv4.settings import IPv4Settings

if TYPE_CHECKING:
    from layers.interface import Interface
    from layers.routing import Route
    from layers.stack import Stack

_HDR = IPV4_HEADER
_new_tuple = tuple.__new__
_pack = _HDR.pack
_unpack_from = _HDR.unpack_from
#: an Ethernet header (given whole, 14 bytes) followed by an IPv4 header without options
_pack_eth_ip = struct.Struct("!14sBBHHHBBHII").pack
#: Medium's members, read once (an enum member costs about 1k instructions to look up in
#: Python 3.11)
_MEDIUM_IP = Medium.IP
_MEDIUM_ETHERNET = Medium.ETHERNET
#: how many destinations the egress cache holds before it is emptied
EGRESS_CACHE_SIZE = 4096
#: the smallest MTU every IPv4 link must carry (RFC 791)
MIN_MTU = IPV4_MIN_MTU
#: how many learned path MTUs are kept at most
PMTU_CACHE_SIZE = 4096
#: how many bytes of the transport header a local error quotes
QUOTE_BYTES = 64
#: the counter for each ECN codepoint of received packets (index: the ECN field)
_ECN_COUNTERS = ("InNoECTPkts", "InECT1Pkts", "InECT0Pkts", "InCEPkts")


def _multicast_mac(dst: int) -> bytes:
    """RFC 1112 section 6.4: 01:00:5e + the low 23 bits of the group address."""
    return b"\x01\x00\x5e" + (dst & 0x7FFFFF).to_bytes(3, "big")


def _is_martian_source(src: int) -> bool:
    """Addresses that never appear as the source of a packet arriving on a link
    (RFC 1122 3.2.1.3; 0.0.0.0 is handled by the caller)."""
    top = src >> 24
    return src >= 0xE0000000 or top == 127 or top == 0


class IPv4:
    """The ``ipv4`` network protocol and the stack's :class:`~layers.protocols.IPv4Service`."""

    name = "ipv4"
    ethertype = ETH_P_IP
    ip_version = 4
    needs_neighbour_resolver = True

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._c = c = stack.counter("ipv4")
        cfg = read_settings(stack, "ipv4", IPv4Settings)
        self.settings = cfg
        self.ttl = cfg.ttl
        self.strong_host = cfg.strong_host
        self.drop_unicast_in_l2_broadcast = cfg.drop_unicast_in_l2_broadcast
        self.pmtu_expires = cfg.pmtu_expires
        self.min_pmtu = cfg.min_pmtu
        #: read by the stack once composed: whether to add the loopback interface ``lo``
        self.wants_loopback = cfg.loopback
        timeout, memory = cfg.reasm_timeout, cfg.reasm_memory
        self.reassembler = Reassembler(stack, c, timeout=timeout, memory_limit=memory)
        self._ident = random.getrandbits(16)
        #: destination -> (path MTU, expiry time), learned from ICMP (RFC 1191)
        self._pmtu: dict[int, tuple[int, float]] = {}
        #: destination -> its egress, as Linux's dst cache plus the neighbour's cached
        #: hardware header: (interface, source address, the sum of the header's constant
        #: 16-bit words, the Ethernet header or None on an IP link, whether the interface
        #: checksums). Only unicast destinations with no learned path MTU, on an IP link or
        #: on Ethernet with a reachable or permanent neighbour; emptied whenever
        #: ``stack.egress_generation`` moves on
        self._egress: dict[int, tuple[Interface, int, int, bytes | None, bool]] = {}
        self._egress_gen = stack.egress_generation
        #: protocol -> the transport's ``receive_unpacked``, where it has one (filled at the
        #: first datagram, when the stack's transports are all known)
        self._unpacked: dict[int, UnpackedReceive] | None = None

    # --- receive -------------------------------------------------------------------------
    def receive(self, iface: Interface, packet: memoryview, flags: int) -> None:
        c = self._c
        c["InReceives"] += 1
        n = len(packet)
        if n < IPV4_MIN_HLEN:
            c["InHdrErrors"] += 1
            c.drop("truncated")
            return
        vihl, tos, total, ident, frag, ttl, proto, _, src, dst = _unpack_from(packet)
        if vihl == 0x45:
            hlen = IPV4_MIN_HLEN
        else:
            if vihl >> 4 != 4:
                c["InHdrErrors"] += 1
                c.drop("bad_version")
                return
            hlen = (vihl & 0xF) << 2
            if hlen < IPV4_MIN_HLEN or hlen > n:
                c["InHdrErrors"] += 1
                c.drop("bad_ihl")
                return
        if total > n or total < hlen:
            c["InHdrErrors"] += 1
            c.drop("bad_length")
            return
        # The whole header as one integer: a multiple of 0xFFFF exactly when the ones'-
        # complement sum is all ones (it is never zero: the version nibble is 4).
        if int.from_bytes(packet[:hlen], "big") % 0xFFFF:
            c["InHdrErrors"] += 1
            c.drop("bad_checksum")
            return
        if hlen != IPV4_MIN_HLEN:
            c["InOptions"] += 1  # skipped: a host need not act on any option
        if tos & 3:  # ECN-capable or marked (Linux's IpExt counters; Not-ECT is not counted)
            c[_ECN_COUNTERS[tos & 3]] += 1
        stack = self.stack
        local = stack.local_addresses
        bcasts = iface.broadcasts
        # _is_martian_source(src), inlined
        if src >= 0xE0000000 or (src >> 24) in (127, 0) or src in bcasts or src in local:
            # 0.0.0.0 may broadcast (BOOTP/DHCP); lo carries only our own packets
            if not (src == 0 and dst in bcasts) and iface is not stack.loopback:
                c["InAddrErrors"] += 1
                c.drop("martian_source")
                return
        owner = local.get(dst)
        if owner is not None:
            if owner is not iface and self.strong_host:
                c["InAddrErrors"] += 1
                c.drop("not_for_us")
                return
            if flags & RX_BROADCAST and self.drop_unicast_in_l2_broadcast:
                c["InAddrErrors"] += 1
                c.drop("unicast_in_link_broadcast")
                return
            broadcast = False
        elif dst in bcasts:
            broadcast = True
            c["InBcastPkts"] += 1
        else:
            c["InAddrErrors"] += 1
            c.drop("multicast" if dst >> 28 == 0xE else "not_for_us")
            return

        if frag & 0x3FFF:  # MF or a fragment offset: part of a larger datagram
            if not self.reassembler.memory_limit:
                c["ReasmFails"] += 1
                c.drop("reassembly_disabled")
                return
            datagram = self.reassembler.add(
                iface, packet[:hlen], packet[hlen:total], (src, dst, proto, ident), frag,
                ttl, tos, flags, broadcast,
            )
            if datagram is not None:
                self._deliver(datagram)
            return

        unpacked = self._unpacked
        if unpacked is None:
            unpacked = self._unpacked_receivers()
        receive = unpacked.get(proto)
        if receive is not None:
            # the transport takes the fields: no IPDatagram, no view of the header
            c["InDelivers"] += 1
            receive(iface, src, dst, ttl, tos, packet[hlen:total], flags, broadcast)
            return
        transport = stack.transports.get(proto)
        # IPDatagram(...) without the NamedTuple's Python-level __new__ (every field given)
        datagram = _new_tuple(
            IPDatagram,
            (iface, src, dst, proto, ttl, tos, packet[:hlen], packet[hlen:total], flags,
             broadcast),
        )
        if transport is None:
            self._unknown_protocol(datagram)
            return
        c["InDelivers"] += 1
        transport.receive(datagram)

    def _unpacked_receivers(self) -> dict[int, UnpackedReceive]:
        """Protocol number -> ``receive_unpacked`` of each transport that offers it (read
        once the stack is composed: its transports never change after)."""
        self._unpacked = table = {
            proto: fn for proto, t in self.stack.transports.items()
            if (fn := getattr(t, "receive_unpacked", None)) is not None
        }
        return table

    def _deliver(self, datagram: IPDatagram) -> None:
        transport = self.stack.transports.get(datagram.protocol)
        if transport is None:
            self._unknown_protocol(datagram)
            return
        self._c["InDelivers"] += 1
        transport.receive(datagram)

    def _unknown_protocol(self, datagram: IPDatagram) -> None:
        c = self._c
        c["InUnknownProtos"] += 1
        c.drop("unknown_protocol")
        if not datagram.broadcast:
            self.stack.errors.destination_unreachable(datagram, 2)  # protocol unreachable

    def _loopback(self, iface: Interface, packet: bytes, flags: int, broadcast: bool) -> None:
        """A packet we sent to ourselves, one poll later. Built by us: no validation, and
        neither the martian-source rule (the source is ours) nor reassembly applies."""
        c = self._c
        c["InReceives"] += 1
        vihl, tos, total, _, _, ttl, proto, _, src, dst = _unpack_from(packet)
        hlen = (vihl & 0xF) << 2
        mv = memoryview(packet)
        self._deliver(
            IPDatagram(iface, src, dst, proto, ttl, tos, mv[:hlen], mv[hlen:total], flags,
                       broadcast)
        )

    # --- send ----------------------------------------------------------------------------
    def send(
        self,
        dst: int,
        protocol: int,
        payload: bytes | bytearray | memoryview | Gather,
        *,
        src: int | None = None,
        ttl: int | None = None,
        tos: int = 0,
        dont_fragment: bool = False,
        offload: TxOffload | None = None,
    ) -> bool:
        c = self._c
        c["OutRequests"] += 1
        stack = self.stack
        if ttl is None:
            ttl = self.ttl
        # The packet leaves in pieces, our header in front of the transport's (a view of the
        # application's data is never copied on this path); the rare paths below join them.
        if isinstance(payload, tuple):
            parts: Gather = payload
            plen = sum(map(len, parts))
        else:
            parts = (payload,)
            plen = len(payload)
        total = IPV4_MIN_HLEN + plen
        if total > MAX_DATAGRAM:
            c["OutDiscards"] += 1
            c.drop("too_big")
            self._local_error(_errno.EMSGSIZE, src or 0, dst, protocol, _joined(payload), mtu=None)
            return False

        # The cached egress: route, source, neighbour and Ethernet header decided by an
        # earlier packet, valid while nothing that could change them has changed
        if self._egress_gen != stack.egress_generation:
            self._egress.clear()
            self._egress_gen = stack.egress_generation
        egress = self._egress.get(dst)
        if egress is not None and self._send_cached(
            egress, dst, protocol, parts, total, src, ttl, tos,
            IP_DF if dont_fragment else 0, offload
        ):
            return True

        owner = stack.local_addresses.get(dst)
        lo = stack.loopback
        if owner is None and lo is not None and dst >> 24 == 127:
            owner = lo  # all of 127/8 is local (Linux's "local 127.0.0.0/8 dev lo" route)
        if owner is not None:  # to ourselves: loop it back outside this call
            if src is None:
                src = self._loopback_source(dst)
            elif src != 0 and not self._is_loopback(src):
                return self._bad_source(src, dst, protocol, _joined(payload))
            flags = RX_CSUM_VERIFIED if offload is not None and offload.needs_csum else 0
            header = self._header(src, dst, protocol, ttl, tos, total, dont_fragment)
            packet = header + _joined(payload)
            c["OutLoopback"] += 1
            if lo is not None:  # Linux routes it through lo: lo counts it both ways
                lc = lo.counters
                lc["tx_frames"] += 1
                lc["tx_bytes"] += total
                lc["rx_frames"] += 1
                lc["rx_bytes"] += total
                count = getattr(lo.link, "count", None)
                if count is not None:
                    count(total)
            stack.call_soon(self._loopback, owner, packet, flags, False)
            return True

        if dst == IPV4_BROADCAST:
            route = self._route(dst, src)
        else:  # _route(), inlined for the usual unicast
            route = stack.routes.lookup(dst)
            if dst == 0 or dst >> 24 == 127:
                route = None  # RFC 1122 3.2.1.3: never sent to 0.0.0.0 or 127/8 on a link
        if route is None:
            c["OutNoRoutes"] += 1
            c.drop("no_route")
            self._local_error(_errno.ENETUNREACH, src or 0, dst, protocol, _joined(payload))
            return False
        iface = route.interface
        if not iface.up:
            c["OutDiscards"] += 1
            c.drop("interface_down")
            self._local_error(_errno.ENETDOWN, src or 0, dst, protocol, _joined(payload))
            return False
        if src is None:
            src = self._source(iface, route.next_hop(dst))
            if src is None:
                c["OutDiscards"] += 1
                c.drop("no_source_address")
                self._local_error(_errno.EADDRNOTAVAIL, 0, dst, protocol, _joined(payload))
                return False
        elif src != 0 and src not in stack.local_addresses:
            return self._bad_source(src, dst, protocol, _joined(payload))

        if dst == IPV4_BROADCAST or dst in iface.broadcasts:
            link_dst: bytes | None = BROADCAST_MAC
            c["OutBcastPkts"] += 1
            # our own broadcast reaches our own sockets too, as in Linux (one poll later)
            flags = RX_CSUM_VERIFIED if offload is not None and offload.needs_csum else 0
            header = self._header(src, dst, protocol, ttl, tos, total, dont_fragment)
            c["OutLoopback"] += 1
            stack.call_soon(self._loopback, iface, bytes(header) + _joined(payload), flags,
                            True)
        elif dst >> 28 == 0xE:
            link_dst = _multicast_mac(dst)
            c["OutMcastPkts"] += 1
        else:
            link_dst = None

        mtu = iface.mtu
        if self._pmtu:
            mtu = self._learned_mtu(dst, mtu)
        caps = iface.capabilities
        if not caps.tx_checksum and offload is not None and offload.needs_csum:
            payload = _complete_checksum(_joined(payload), offload)
            parts = (payload,)
            offload = attrs.evolve(offload, csum_start=0, csum_offset=0)
        if total <= mtu or (
            offload is not None and offload.gso_size and total <= caps.gso_max_size
        ):
            # _header(), inlined: every packet we send comes through here
            ident = self._ident
            self._ident = (ident + 1) & 0xFFFF
            frag = IP_DF if dont_fragment else 0
            csum = ((0x4500 | tos) + total + ident + frag + ((ttl << 8) | protocol) + (src >> 16)
                    + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)) % 0xFFFF
            header = _pack(0x45, tos, total, ident, frag, ttl, protocol,
                           0xFFFF - csum if csum else 0, src, dst)
            if link_dst is None:  # _emit() and route.next_hop(), inlined for the usual unicast
                gateway = route.gateway
                next_hop = dst if gateway is None else gateway
                iface.output(next_hop, ETH_P_IP, (header, *parts), offload)
                self._remember_egress(iface, next_hop, src, dst)
            else:
                self._emit(iface, route, dst, link_dst, (header, *parts), offload)
            return True

        payload = _joined(payload)
        if dont_fragment:
            c["FragFails"] += 1
            c.drop("fragmentation_needed")
            self._local_error(_errno.EMSGSIZE, src, dst, protocol, payload, mtu=mtu)
            return False
        if offload is not None and offload.needs_csum:
            payload = _complete_checksum(payload, offload)
        try:
            pieces = fragment(src, dst, protocol, payload, mtu, ttl=ttl, tos=tos,
                              ident=self._next_ident())
        except ValueError:  # an MTU below 28 bytes: no room for data in a fragment
            c["FragFails"] += 1
            c.drop("mtu_too_small")
            self._local_error(_errno.EMSGSIZE, src, dst, protocol, payload, mtu=mtu)
            return False
        c["FragOKs"] += 1
        c["FragCreates"] += len(pieces)
        for piece in pieces:
            self._emit(iface, route, dst, link_dst, piece, None)
        return True

    def send_pieces(self, dst: int, protocol: int, parts: Gather, plen: int, src: int, tos: int,
                    offload: TxOffload | None) -> bool:
        """:meth:`send` with don't-fragment set and the default TTL for a transport that has
        its packet in pieces already and knows their length (``plen`` bytes) and its source:
        through the egress cache without the checks that those make needless, else
        :meth:`send`. TCP sends its data segments this way."""
        egress = self._egress.get(dst)
        if (egress is not None and self._egress_gen == self.stack.egress_generation
                and self._send_cached(egress, dst, protocol, parts, IPV4_MIN_HLEN + plen, src,
                                      self.ttl, tos, IP_DF, offload)):
            self._c["OutRequests"] += 1
            return True
        return self.send(dst, protocol, parts, src=src, tos=tos, dont_fragment=True,
                         offload=offload)

    def _send_cached(self, egress: tuple[Interface, int, int, bytes | None, bool], dst: int,
                     protocol: int, parts: Gather, total: int, src: int | None, ttl: int,
                     tos: int, frag: int, offload: TxOffload | None) -> bool:
        """Send through a cached egress (interface, source, header sum, Ethernet header, the
        link's checksum offload) if it serves this packet: the source it chose, a checksum
        it can leave to the link, a size that fits (or a TSO super-segment); else False and
        nothing sent. The one place both :meth:`send` and :meth:`send_pieces` build a
        cached packet's header."""
        iface, e_src, e_sum, eth, tx_csum = egress
        if (src is not None and src != e_src) or not (
            tx_csum or offload is None or not offload.needs_csum
        ) or not (total <= iface.mtu or (
            offload is not None and offload.gso_size and total <= iface.capabilities.gso_max_size
        )):
            return False
        ident = self._ident
        self._ident = (ident + 1) & 0xFFFF
        csum = (e_sum + tos + total + ident + frag + ((ttl << 8) | protocol)) % 0xFFFF
        if eth is None:  # a link without link-layer addresses (TUN)
            header = _pack(0x45, tos, total, ident, frag, ttl, protocol,
                           0xFFFF - csum if csum else 0, e_src, dst)
            iface.transmit_pieces((header, *parts), total, offload)
        else:
            header = _pack_eth_ip(eth, 0x45, tos, total, ident, frag, ttl, protocol,
                                  0xFFFF - csum if csum else 0, e_src, dst)
            iface.transmit_pieces((header, *parts), 14 + total, offload)
        return True

    def _header(
        self, src: int, dst: int, protocol: int, ttl: int, tos: int, total: int, df: bool
    ) -> bytes:
        ident = self._ident
        self._ident = (ident + 1) & 0xFFFF
        frag = IP_DF if df else 0
        # the ones'-complement sum of the header's 16-bit words, from the fields
        s = (0x4500 | tos) + total + ident + frag + ((ttl << 8) | protocol) + (src >> 16) + (
            src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
        s %= 0xFFFF
        # s == 0 means the sum is a non-zero multiple of 0xFFFF (all ones): checksum 0
        return _pack(0x45, tos, total, ident, frag, ttl, protocol, 0xFFFF - s if s else 0,
                     src, dst)

    def _remember_egress(self, iface: Interface, next_hop: int, src: int, dst: int) -> None:
        """Cache how packets to ``dst`` leave, when they can leave the same way again without
        asking anyone: an IP link, or Ethernet with a neighbour that is reachable or permanent
        (the resolver then sends with no bookkeeping); the default source; no learned path
        MTU.
        Anything that could change one of those bumps ``stack.egress_generation``."""
        if (dst in self._pmtu or src == 0 or self._egress_gen != self.stack.egress_generation
                or src != self._source(iface, next_hop)):
            return
        medium = iface.medium
        if medium is _MEDIUM_IP:
            eth = None  # sent as it is: no neighbour, no link header
        elif medium is _MEDIUM_ETHERNET and iface.mac is not None:
            resolved_mac = getattr(iface.resolver, "resolved_mac", None)
            mac = None if resolved_mac is None else resolved_mac(next_hop)
            if mac is None:
                return  # not resolved (or bookkeeping due): the resolver decides per packet
            eth = ETH_HEADER.pack(mac, iface.mac, ETH_P_IP)
        else:
            return
        egress = self._egress
        if len(egress) >= EGRESS_CACHE_SIZE:
            egress.clear()
        egress[dst] = (
            iface,
            src,
            0x4500 + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF),
            eth,
            iface.capabilities.tx_checksum,
        )

    def _next_ident(self) -> int:
        ident = self._ident
        self._ident = (ident + 1) & 0xFFFF
        return ident

    def _emit(
        self,
        iface: Interface,
        route: Route | _LinkRoute,
        dst: int,
        link_dst: bytes | None,
        packet: bytes | Gather,
        offload: TxOffload | None,
    ) -> None:
        if link_dst is None:
            iface.output(route.next_hop(dst), ETH_P_IP, packet, offload)
        elif iface.medium is Medium.ETHERNET:
            iface.send_ethernet(link_dst, ETH_P_IP, packet, offload)
        else:
            iface.transmit(packet, offload)

    def _route(self, dst: int, src: int | None) -> Route | _LinkRoute | None:
        stack = self.stack
        route = stack.routes.lookup(dst)
        if dst == IPV4_BROADCAST:
            # Limited broadcast leaves through the interface of the given source address, else
            # the default route's, else the only interface there is.
            if src:
                owner = stack.local_addresses.get(src)
                if owner is not None:
                    return _LinkRoute(owner)
            if route is not None:
                return _LinkRoute(route.interface)
            if len(stack.interfaces) == 1:
                return _LinkRoute(stack.interfaces[0])
            return None
        if route is None or dst == 0 or dst >> 24 == 127:
            return None  # RFC 1122 3.2.1.3: never sent to 0.0.0.0 or 127/8 on a link
        return route

    def _source(self, iface: Interface, next_hop: int) -> int | None:
        """The address of ``iface`` in the subnet of ``next_hop``, else its primary address."""
        addresses = iface.addresses
        if not addresses:
            return None
        if len(addresses) > 1:
            for address, plen in addresses:
                mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
                if (address ^ next_hop) & mask == 0:
                    return address
        return addresses[0][0]

    def _bad_source(
        self, src: int, dst: int, protocol: int, payload: bytes | bytearray | memoryview
    ) -> bool:
        c = self._c
        c["OutDiscards"] += 1
        c.drop("bad_source_address")
        self._local_error(_errno.EADDRNOTAVAIL, src, dst, protocol, payload)
        return False

    def _local_error(
        self,
        errno: int,
        src: int,
        dst: int,
        protocol: int,
        payload: bytes | bytearray | memoryview,
        mtu: int | None = None,
    ) -> None:
        transport = self.stack.transports.get(protocol)
        if transport is None:
            return
        transport.error(
            TransportError(
                errno=errno, src=src, dst=dst, protocol=protocol,
                quote=bytes(payload[:QUOTE_BYTES]), reporter=src, mtu=mtu,
            )
        )

    # --- IPv4Service --------------------------------------------------------------------
    def _is_loopback(self, dst: int) -> bool:
        """Whether ``dst`` is ours: one of our addresses, or 127/8 when we have ``lo``."""
        stack = self.stack
        return dst in stack.local_addresses or (
            dst >> 24 == 127 and stack.loopback is not None)

    def _loopback_source(self, dst: int) -> int:
        """The source toward one of our addresses: that address; toward the rest of 127/8,
        lo's address (Linux's local route says ``src 127.0.0.1``)."""
        if dst in self.stack.local_addresses:
            return dst
        lo = self.stack.loopback
        return lo.address if lo is not None and lo.address is not None else dst

    def source_for(self, dst: int) -> int | None:
        if self._is_loopback(dst):
            return self._loopback_source(dst)
        route = self._route(dst, None)
        if route is None:
            return None
        return self._source(route.interface, route.next_hop(dst))

    def path_mtu(self, dst: int) -> int:
        """The route's interface MTU, lowered by what :meth:`update_path_mtu` learned.

        A local destination never leaves the stack: 65535. No route: 576, the datagram size
        every host must accept (RFC 1122 3.3.3)."""
        if self._is_loopback(dst):
            return MAX_DATAGRAM
        route = self._route(dst, None)
        if route is None:
            return 576
        mtu = route.interface.mtu
        return self._learned_mtu(dst, mtu) if self._pmtu else mtu

    def update_path_mtu(self, dst: int, mtu: int) -> bool:
        """Record a smaller path MTU toward ``dst`` (RFC 1191), as reported by ICMP
        "fragmentation needed" (type 3 code 4). Returns True when the estimate went down.

        Values are raised to ``ipv4.min_pmtu`` (552, as Linux's min_pmtu: tiny values in
        forged ICMP would otherwise force every packet to be fragmented); values of 0 (old
        routers, RFC 1191 section 5) or not below the current estimate are ignored. Entries
        expire after ``ipv4.pmtu_expires`` seconds (RFC 1191 suggests 10 minutes), after
        which the interface MTU is tried again. The transport that owns the connection hears
        of the error through ICMP; this only changes what :meth:`path_mtu` answers and where
        :meth:`send` fragments.
        """
        c = self._c
        if mtu < MIN_MTU:
            c.drop("pmtu_invalid")
            return False
        mtu = max(mtu, self.min_pmtu)
        if mtu >= self.path_mtu(dst):
            return False
        pmtu = self._pmtu
        if dst not in pmtu and len(pmtu) >= PMTU_CACHE_SIZE:
            now = self.stack.now
            for key in [k for k, (_, exp) in pmtu.items() if exp <= now]:
                del pmtu[key]
            if len(pmtu) >= PMTU_CACHE_SIZE:
                del pmtu[next(iter(pmtu))]
        pmtu[dst] = (mtu, self.stack.now + self.pmtu_expires)
        self.stack.egress_changed()  # no cached egress for a destination with a path MTU
        c["PmtuUpdates"] += 1
        return True

    def _learned_mtu(self, dst: int, mtu: int) -> int:
        entry = self._pmtu.get(dst)
        if entry is None:
            return mtu
        if entry[1] <= self.stack.now:
            del self._pmtu[dst]
            return mtu
        return min(mtu, entry[0])

    def unreachable(self, interface: Interface, packet: bytes, errno: int) -> None:
        """The neighbour resolver gave up on ``packet`` (one we sent): tell its transport."""
        c = self._c
        c["OutNeighbourFailures"] += 1
        if len(packet) < IPV4_MIN_HLEN:
            c.drop("unreachable_malformed")
            return
        vihl, _, total, _, frag, _, proto, _, src, dst = _unpack_from(packet)
        hlen = (vihl & 0xF) << 2
        if vihl >> 4 != 4 or hlen < IPV4_MIN_HLEN or hlen > len(packet):
            c.drop("unreachable_malformed")
            return
        if frag & 0x1FFF:
            return  # only the first fragment holds the transport header; it reports
        transport = self.stack.transports.get(proto)
        if transport is None:
            return
        transport.error(
            TransportError(
                errno=errno, src=src, dst=dst, protocol=proto,
                quote=bytes(packet[hlen : min(total, hlen + QUOTE_BYTES)]), reporter=src,
            )
        )

    # --- lifecycle ------------------------------------------------------------------------
    def stop(self) -> None:
        """Drop partial datagrams (the stack clears their timers)."""
        self.reassembler.clear()

    def __repr__(self) -> str:
        addrs = ", ".join(ip4_str(a) for a in self.stack.local_addresses)
        return f"<IPv4 [{addrs}] reassembling {len(self.reassembler)}>"


@attrs.frozen
class _LinkRoute:
    """A route to the link itself, for limited broadcast (255.255.255.255)."""

    interface: Interface
    #: as a Route's: none, the destination is the next hop
    gateway: ClassVar[None] = None

    def next_hop(self, dst: int) -> int:
        return dst


def _joined(payload: bytes | bytearray | memoryview | Gather) -> bytes | bytearray | memoryview:
    """A packet's pieces as one buffer (for the paths that are not the per-packet one)."""
    return b"".join(payload) if isinstance(payload, tuple) else payload


def _complete_checksum(
    payload: bytes | bytearray | memoryview, offload: TxOffload
) -> bytearray:
    """Finish a partial transport checksum in software (virtio NEEDS_CSUM semantics: the field
    holds the pseudo-header sum; checksum the bytes from ``csum_start`` and store it there).
    Offsets count from the IP header, which the transport assumed to be 20 bytes."""
    data = bytearray(payload)
    start = offload.csum_start - IPV4_MIN_HLEN
    at = start + offload.csum_offset
    if start < 0 or at + 2 > len(data):
        return data
    csum = checksum(data[start:])
    if csum == 0:
        csum = 0xFFFF  # same value in ones' complement, and UDP reads 0 as "no checksum"
    data[at : at + 2] = csum.to_bytes(2, "big")
    return data

