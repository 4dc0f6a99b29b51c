"""The IPv6 network protocol object: addresses, receive path, extension headers, send path.

See the package docstring (:mod:`layers_ipv6`) for the behaviour, counters and settings.
"""

from __future__ import annotations

import errno as _errno
import logging
import random
from typing import TYPE_CHECKING, Any

import attrs

from layers.links.base import RX_BROADCAST, Gather, Medium, TxOffload
from layers.protocols import (
    DuplicateAddressDetector,
    IPDatagram,
    MulticastListener,
    TransportError,
)
from layers.settings import read_settings
from layers.wire.checksum import checksum
from layers.wire.ethernet import ETH_P_IPV6
from layers.wire.ipv6 import (
    ALL_NODES,
    EXTENSION_HEADERS,
    FRAGMENT_HEADER,
    FRAGMENT_HLEN,
    IPV6_HEADER,
    IPV6_HLEN,
    IPV6_MIN_MTU,
    LINK_LOCAL_PREFIX,
    NH_DSTOPTS,
    NH_FRAGMENT,
    NH_HOPOPTS,
    NH_ICMPV6,
    NH_NONE,
    NH_ROUTING,
    build_fragment_header,
    eui64_interface_id,
    ip6_str,
    is_link_local6,
    is_multicast6,
    multicast_mac6,
    prefix_mask6,
    solicited_node,
    stable_interface_id,
)
from layers_ipv6.reassembly import MAX_PAYLOAD, Reassembler
from layers_ipv6.settings import IPv6Settings

if TYPE_CHECKING:
    from layers.interface import Interface
    from layers.stack import Stack

log = logging.getLogger("layers.ipv6")
_unpack_from = IPV6_HEADER.unpack_from
_pack = IPV6_HEADER.pack
QUOTE_BYTES = 64
PMTU_CACHE_SIZE = 4096
TENTATIVE = "tentative"
PREFERRED = "preferred"
DUPLICATE = "duplicate"
DEPRECATED = "deprecated"


@attrs.define
class Address6:
    address: int
    prefix_length: int
    interface: Interface
    state: str = TENTATIVE
    origin: str = "static"
    #: the preferred lifetime ended (maybe while DAD ran): deprecated once unique
    deprecated: bool = False


@attrs.frozen
class Route6:
    network: int
    prefix_length: int
    interface: Interface
    gateway: int | None = None
    metric: int = 0
    origin: str = "static"

    def next_hop(self, dst: int) -> int:
        return self.gateway if self.gateway is not None else dst

    def describe(self) -> dict[str, object]:
        return {"family": 6, "destination": ip6_str(self.network),
                "prefix_length": self.prefix_length,
                "gateway": ip6_str(self.gateway) if self.gateway is not None else "::",
                "interface": self.interface.name, "metric": self.metric,
                "origin": self.origin}


class RoutingTable6:
    """Longest-prefix match over a short list (a host has few routes), cached per destination
    until the table changes."""

    def __init__(self) -> None:
        self.routes: list[Route6] = []
        self._cache: dict[int, Route6 | None] = {}

    def add(self, route: Route6) -> None:
        if route not in self.routes:
            self.routes.append(route)
            self.routes.sort(key=lambda r: (-r.prefix_length, r.metric))
            self._cache.clear()

    def remove(self, route: Route6) -> None:
        if route in self.routes:
            self.routes.remove(route)
            self._cache.clear()

    def lookup(self, dst: int) -> Route6 | None:
        try:
            return self._cache[dst]
        except KeyError:
            pass
        found = None
        for r in self.routes:
            if (dst ^ r.network) & prefix_mask6(r.prefix_length) == 0:
                found = r
                break
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[dst] = found
        return found

    def __iter__(self) -> Any:
        return iter(self.routes)


class IPv6:
    """The ``ipv6`` network protocol and the stack's :class:`~layers.protocols.IPv6Service`."""

    name = "ipv6"
    ethertype = ETH_P_IPV6
    ip_version = 6
    needs_neighbour_resolver = True

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._c = c = stack.counter("ipv6")
        cfg = read_settings(stack, "ipv6", IPv6Settings)
        self.settings = cfg
        self.hop_limit = cfg.hop_limit
        #: every address of the stack, whatever its state
        self.addresses: dict[int, Address6] = {}
        #: preferred (usable) unicast addresses -> interface
        self.local: dict[int, Interface] = {}
        #: multicast groups each interface has joined -> how many addresses need each
        self.groups: dict[Interface, dict[int, int]] = {}
        self.routes = RoutingTable6()
        self.reassembler = Reassembler(stack, c, timeout=cfg.reasm_timeout,
                                       memory_limit=cfg.reasm_memory,
                                       on_timeout=self._reassembly_timeout)
        self._ident = random.getrandbits(32)
        self._pmtu: dict[int, tuple[int, float]] = {}
        #: IPv6 MTU per interface below the link's (a router's MTU option)
        self._link_mtu: dict[Interface, int] = {}
        self._membership: MulticastListener | bool | None = False  # False: not looked up

    # --- addresses ------------------------------------------------------------------------
    def address_added(self, iface: Interface, address: int, prefix_length: int,
                      origin: str = "static") -> None:
        """Called by the core when an address is configured (``Interface.add_address6``)."""
        entry = Address6(address, prefix_length, iface, TENTATIVE, origin)
        self.addresses[address] = entry
        self.join(iface, ALL_NODES)
        self.join(iface, solicited_node(address))
        if prefix_length < 128:
            self.routes.add(Route6(address & prefix_mask6(prefix_length), prefix_length, iface,
                                   origin="connected"))
        if iface.up:
            self._start_dad(entry)

    def address_removed(self, iface: Interface, address: int) -> None:
        """Called by the core from ``Interface.remove_address6``: forget the address, leave
        its solicited-node group, drop its connected route unless another address keeps it."""
        entry = self.addresses.pop(address, None)
        if entry is None:
            return
        self.local.pop(address, None)
        self.leave(iface, solicited_node(address))
        plen = entry.prefix_length
        if plen < 128:
            network = address & prefix_mask6(plen)
            if not any(e.interface is iface and e.prefix_length == plen
                       and e.address & prefix_mask6(plen) == network
                       for e in self.addresses.values()):
                self.routes.remove(Route6(network, plen, iface, origin="connected"))

    # --- IPv6Configuration ----------------------------------------------------------------
    def add_route6(self, network: int, prefix_length: int, interface: Interface, *,
                   gateway: int | None = None, metric: int = 0,
                   origin: str = "static") -> None:
        self.routes.add(Route6(network & prefix_mask6(prefix_length), prefix_length, interface,
                               gateway, metric, origin))

    def remove_route6(self, network: int, prefix_length: int, interface: Interface, *,
                      gateway: int | None = None, origin: str = "static") -> None:
        for r in list(self.routes):
            if (r.network == network & prefix_mask6(prefix_length)
                    and r.prefix_length == prefix_length and r.interface is interface
                    and r.gateway == gateway and r.origin == origin):
                self.routes.remove(r)

    def interface_id(self, interface: Interface, prefix: int, dad_counter: int = 0) -> int | None:
        mode = self.settings.addr_gen_mode
        if mode == "none" or interface.mac is None:
            return None
        if mode == "eui64":
            return eui64_interface_id(interface.mac)
        return stable_interface_id(prefix, interface.name, self.settings.stable_secret.encode(),
                                   dad_counter)

    def deprecate_address6(self, address: int, deprecated: bool = True) -> None:
        entry = self.addresses.get(address)
        if entry is None:
            return
        entry.deprecated = deprecated
        if deprecated and entry.state == PREFERRED:
            entry.state = DEPRECATED
        elif not deprecated and entry.state == DEPRECATED:
            entry.state = PREFERRED

    def set_link_mtu6(self, interface: Interface, mtu: int) -> None:
        mtu = max(IPV6_MIN_MTU, min(mtu, interface.mtu))
        if mtu >= interface.mtu:
            self._link_mtu.pop(interface, None)
        else:
            self._link_mtu[interface] = mtu

    def groups6(self, interface: Interface) -> list[int]:
        return list(self.groups.get(interface, ()))

    def set_hop_limit6(self, hop_limit: int) -> None:
        if 1 <= hop_limit <= 255:
            self.hop_limit = hop_limit

    def _listener(self) -> MulticastListener | None:
        found = self._membership
        if found is False:
            found = self._membership = self.stack.find(
                MulticastListener)  # type: ignore[type-abstract]
        return found if isinstance(found, MulticastListener) else None

    def interface_up(self, iface: Interface) -> None:
        """Give an Ethernet interface its link-local address, then probe every address."""
        self.join(iface, ALL_NODES)
        waiting = [e for e in self.addresses.values()
                   if e.interface is iface and e.state == TENTATIVE]
        mode = self.settings.addr_gen_mode
        if iface.medium is Medium.ETHERNET and iface.mac is not None and mode != "none" and not any(
            is_link_local6(a) for a, _ in iface.addresses6
        ):
            if mode == "eui64":
                iid = eui64_interface_id(iface.mac)
            else:
                iid = stable_interface_id(LINK_LOCAL_PREFIX, iface.name,
                                          self.settings.stable_secret.encode())
            iface.add_address6(LINK_LOCAL_PREFIX | iid, 64, "link-local")  # address_added
        for entry in waiting:  # the link-local one started its own when it was added
            self._start_dad(entry)

    def _start_dad(self, entry: Address6) -> None:
        iface = entry.interface
        detector = self.stack.find(DuplicateAddressDetector)  # type: ignore[type-abstract]
        if iface.medium is not Medium.ETHERNET or detector is None:
            self._dad_done(entry, True)
            return
        detector.detect(iface, entry.address, lambda unique: self._dad_done(entry, unique))

    def _dad_done(self, entry: Address6, unique: bool) -> None:
        if self.addresses.get(entry.address) is not entry or entry.state != TENTATIVE:
            return
        if unique:
            entry.state = DEPRECATED if entry.deprecated else PREFERRED
            self.local[entry.address] = entry.interface
            self._c["DadOKs"] += 1
        else:
            entry.state = DUPLICATE
            self._c["DadFails"] += 1
            log.warning("ipv6: %s on %s is in use by another node (duplicate address "
                        "detection failed); it will not be used", ip6_str(entry.address),
                        entry.interface.name)

    def address_state(self, address: int) -> str | None:
        entry = self.addresses.get(address)
        return entry.state if entry is not None else None

    def join(self, iface: Interface, group: int) -> None:
        groups = self.groups.setdefault(iface, {})
        n = groups.get(group, 0)
        groups[group] = n + 1
        if not n:
            listener = self._listener()
            if listener is not None:
                listener.group_joined(iface, group)

    def leave(self, iface: Interface, group: int) -> None:
        groups = self.groups.get(iface, {})
        n = groups.get(group, 0) - 1
        if n <= 0:
            if groups.pop(group, None) is not None:
                listener = self._listener()
                if listener is not None:
                    listener.group_left(iface, group)
        else:
            groups[group] = n

    # --- receive --------------------------------------------------------------------------
    def receive(self, iface: Interface, packet: memoryview, flags: int) -> None:
        c = self._c
        c["InReceives"] += 1
        n = len(packet)
        if n < IPV6_HLEN:
            c["InHdrErrors"] += 1
            c.drop("truncated")
            return
        vtf, plen, nh, hop, src_b, dst_b = _unpack_from(packet)
        if vtf >> 28 != 6:
            c["InHdrErrors"] += 1
            c.drop("bad_version")
            return
        if IPV6_HLEN + plen > n:
            c["InHdrErrors"] += 1
            c.drop("bad_length")
            return
        if plen == 0 and nh == NH_HOPOPTS:  # jumbograms (RFC 2675) need links we do not have
            c["InHdrErrors"] += 1
            c.drop("jumbogram")
            return
        src = int.from_bytes(src_b, "big")
        dst = int.from_bytes(dst_b, "big")
        if is_multicast6(src) or src == 1:
            c["InAddrErrors"] += 1
            c.drop("martian_source")
            return
        multicast = False
        owner = self.local.get(dst)
        if owner is not None:
            if owner is not iface and (self.settings.strong_host or is_link_local6(dst)):
                c["InAddrErrors"] += 1
                c.drop("not_for_us")
                return
            if src in self.local and src != dst:
                pass  # one of our own addresses talking to another: allowed (loop through link)
        elif is_multicast6(dst):
            if dst not in self.groups.get(iface, ()):
                c["InAddrErrors"] += 1
                c.drop("multicast_not_joined")
                return
            multicast = True
            c["InMcastPkts"] += 1
        else:
            entry = self.addresses.get(dst)
            c["InAddrErrors"] += 1
            c.drop("tentative" if entry is not None else "not_for_us")
            return
        if owner is not None and flags & RX_BROADCAST:
            c["InAddrErrors"] += 1
            c.drop("unicast_in_link_multicast")
            return
        pkt = bytes(packet[: IPV6_HLEN + plen])
        self._headers(iface, pkt, src, dst, hop, (vtf >> 20) & 0xFF, nh, 6, IPV6_HLEN, flags,
                      multicast)

    def _headers(self, iface: Interface, pkt: bytes, src: int, dst: int, hop: int, tclass: int,
                 nh: int, nh_at: int, off: int, flags: int, multicast: bool) -> None:
        """Walk the extension headers from ``off`` (``nh`` read at ``nh_at``) and deliver."""
        c = self._c
        n = len(pkt)
        while True:
            if nh in EXTENSION_HEADERS:
                if nh == NH_HOPOPTS and off != IPV6_HLEN:
                    # RFC 8200 4.1: hop-by-hop only right after the IPv6 header
                    return self._param_problem(iface, pkt, src, dst, hop, tclass, flags,
                                               multicast, 1, nh_at, "hopopts_not_first")
                if off + 8 > n:
                    c["InHdrErrors"] += 1
                    c.drop("truncated_extension")
                    return None
                hlen = (pkt[off + 1] + 1) * 8
                if off + hlen > n:
                    c["InHdrErrors"] += 1
                    c.drop("truncated_extension")
                    return None
                if nh == NH_ROUTING:
                    rtype, left = pkt[off + 2], pkt[off + 3]
                    if left:
                        # We are the final destination of no route: type 0 is deprecated
                        # (RFC 5095) and every other type is unknown to a host.
                        reason = "routing_type0" if rtype == 0 else "routing_unknown_type"
                        return self._param_problem(iface, pkt, src, dst, hop, tclass, flags,
                                                   multicast, 0, off + 2, reason)
                else:
                    verdict = self._options(pkt, off + 2, off + hlen, multicast)
                    if verdict is not None:
                        action, at = verdict
                        if action == 0:
                            c["InHdrErrors"] += 1
                            c.drop("unknown_option")
                            return None
                        return self._param_problem(iface, pkt, src, dst, hop, tclass, flags,
                                                   multicast, 2, at, "unknown_option")
                c["InExtHeaders"] += 1
                nh_at, nh = off, pkt[off]
                off += hlen
                continue
            if nh == NH_FRAGMENT:
                return self._fragment(iface, pkt, src, dst, hop, tclass, nh_at, off, flags,
                                      multicast)
            if nh == NH_NONE:
                c.drop("no_next_header")
                return None
            transport = self.stack.transports.get(nh)
            datagram = IPDatagram(iface, src, dst, nh, hop, tclass, memoryview(pkt)[:off],
                                  memoryview(pkt)[off:], flags, multicast)
            if transport is None or 6 not in getattr(transport, "ip_versions", (4,)):
                c["InUnknownProtos"] += 1
                return self._param_problem(iface, pkt, src, dst, hop, tclass, flags, multicast,
                                           1, nh_at, "unknown_next_header")
            c["InDelivers"] += 1
            transport.receive(datagram)
            return None

    def _options(self, pkt: bytes, i: int, end: int, multicast: bool) -> tuple[int, int] | None:
        """Check the TLV options in ``pkt[i:end]``: None when all may be skipped, else
        (action, offset of the bad option): 0 discard silently, 2 discard and report."""
        while i < end:
            t = pkt[i]
            if t == 0:  # Pad1
                i += 1
                continue
            if i + 2 > end:
                return 0, i
            length = pkt[i + 1]
            if i + 2 + length > end:
                return 0, i
            if t not in (1, 5):  # PadN and router alert (RFC 2711) are known
                action = t >> 6
                if action == 1:
                    return 0, i
                if action == 2 or (action == 3 and not multicast):
                    return 2, i
                if action == 3:
                    return 0, i
            i += 2 + length
        return None

    def _fragment(self, iface: Interface, pkt: bytes, src: int, dst: int, hop: int, tclass: int,
                  nh_at: int, off: int, flags: int, multicast: bool) -> None:
        c = self._c
        if off + FRAGMENT_HLEN > len(pkt):
            c["InHdrErrors"] += 1
            c.drop("truncated_extension")
            return
        nxt, _, offm, ident = FRAGMENT_HEADER.unpack_from(pkt, off)
        data = pkt[off + FRAGMENT_HLEN:]
        offset = offm & 0xFFF8
        more = bool(offm & 1)
        if offset == 0 and not more:  # an atomic fragment (RFC 6946): no reassembly
            c["InAtomicFragments"] += 1
            self._headers(iface, pkt, src, dst, hop, tclass, nxt, off, off + FRAGMENT_HLEN,
                          flags, multicast)
            return
        if more and (not data or len(data) % 8):
            self._param_problem(iface, pkt, src, dst, hop, tclass, flags, multicast, 0, 4,
                                "bad_fragment")
            return
        if offset + len(data) > MAX_PAYLOAD:
            self._param_problem(iface, pkt, src, dst, hop, tclass, flags, multicast, 0,
                                off + 2, "bad_fragment")
            return
        if not self.reassembler.memory_limit:
            c["ReasmFails"] += 1
            c.drop("reassembly_disabled")
            return
        done = self.reassembler.add((src, dst, ident), pkt[:off], pkt, nxt, offset, more, data)
        if done is None:
            return
        unfrag, nxt, payload = done
        # the rebuilt packet: its headers before the fragment header, then the data
        whole = bytearray(unfrag + payload)
        whole[4:6] = (len(whole) - IPV6_HLEN).to_bytes(2, "big")
        whole[nh_at] = nxt  # the header before the fragment header now names its contents
        self._headers(iface, bytes(whole), src, dst, hop, tclass, nxt, nh_at, len(unfrag),
                      flags & ~RX_BROADCAST, multicast)

    def _param_problem(self, iface: Interface, pkt: bytes, src: int, dst: int, hop: int,
                       tclass: int, flags: int, multicast: bool, code: int, pointer: int,
                       reason: str) -> None:
        c = self._c
        c["InHdrErrors"] += 1
        c.drop(reason)
        reporter = self._reporter()
        if reporter is None:
            return
        mv = memoryview(pkt)
        datagram = IPDatagram(iface, src, dst, -1, hop, tclass, mv[:IPV6_HLEN], mv[IPV6_HLEN:],
                              flags, multicast)
        reporter.parameter_problem(datagram, pointer, code)

    def _reporter(self) -> Any:
        reporter = self.stack.transports.get(NH_ICMPV6)
        if reporter is None or not hasattr(reporter, "parameter_problem"):
            self._c.drop("no_error_reporter")
            return None
        return reporter

    def _reassembly_timeout(self, first: bytes) -> None:
        reporter = self._reporter()
        if reporter is None or len(first) < IPV6_HLEN:
            return
        src = int.from_bytes(first[8:24], "big")
        dst = int.from_bytes(first[24:40], "big")
        iface = self.local.get(dst)
        if iface is None:
            return  # multicast fragments: no error (RFC 4443 2.4 e)
        mv = memoryview(first)
        reporter.time_exceeded(
            IPDatagram(iface, src, dst, -1, first[7], 0, mv[:IPV6_HLEN], mv[IPV6_HLEN:]), 1)

    # --- send -----------------------------------------------------------------------------
    def send_pieces(self, dst: int, protocol: int, parts: Gather, plen: int, src: int, tos: int,
                    offload: TxOffload | None) -> bool:
        """:meth:`send` of a packet in pieces with ``dont_fragment`` (the service's contract,
        :class:`layers.protocols.IPv6Service`)."""
        return self.send(dst, protocol, parts, src=src, tos=tos, dont_fragment=True,
                         offload=offload)

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
        interface: Interface | None = None,
    ) -> bool:
        """Route and send; ``interface`` picks the link for link-local and multicast
        destinations (required with more than one interface). A payload in pieces stays in
        pieces (our header goes in front and the link writes them at once); ``offload``
        offsets count from the IPv6 header and go to a link that completes checksums and
        cuts super-segments (TSO), else the checksum is completed here."""
        if isinstance(payload, tuple):
            parts: Gather = payload
            plen = sum(map(len, parts))
        else:
            parts = (payload,)
            plen = len(payload)
        c = self._c
        c["OutRequests"] += 1
        stack = self.stack
        hop = self.hop_limit if ttl is None else ttl
        if plen > MAX_PAYLOAD:
            c["OutDiscards"] += 1
            c.drop("too_big")
            self._local_error(_errno.EMSGSIZE, src or 0, dst, protocol, _joined(parts))
            return False

        owner = self.local.get(dst)
        if owner is not None:
            if src is None:
                src = dst
            header = _header(src, dst, protocol, plen, hop, tos)
            c["OutLoopback"] += 1
            stack.call_soon(self._loopback, owner, header + _finished(parts, offload))
            return True

        iface, next_hop = self._route(dst, interface)
        if iface is None:
            c["OutNoRoutes"] += 1
            c.drop("no_route")
            self._local_error(_errno.ENETUNREACH, src or 0, dst, protocol, _joined(parts))
            return False
        if src is None:
            src = self._source(iface, dst)
            if src is None:
                c["OutDiscards"] += 1
                c.drop("no_source_address")
                self._local_error(_errno.EADDRNOTAVAIL, 0, dst, protocol, _joined(parts))
                return False
        elif src != 0 and src not in self.local:
            c["OutDiscards"] += 1
            c.drop("bad_source_address")
            self._local_error(_errno.EADDRNOTAVAIL, src, dst, protocol, _joined(parts))
            return False

        mtu = self.path_mtu(dst) if self._pmtu or self._link_mtu else iface.mtu
        if offload is not None:
            caps = iface.capabilities
            if not caps.tx_checksum or (offload.gso_size and not caps.gso_max_size):
                # a link that cannot finish it: the checksum is done here, in one buffer
                parts = (_finished(parts, offload),)
                offload = None
        if IPV6_HLEN + plen <= mtu or (
            offload is not None and offload.gso_size
            and IPV6_HLEN + plen <= iface.capabilities.gso_max_size
        ):
            self._emit(iface, dst, next_hop,
                       (_header(src, dst, protocol, plen, hop, tos), *parts), offload)
            return True
        payload = _finished(parts, offload)
        if dont_fragment:
            c["FragFails"] += 1
            c.drop("fragmentation_needed")
            self._local_error(_errno.EMSGSIZE, src, dst, protocol, payload, mtu=mtu)
            return False
        pieces = fragment6(src, dst, protocol, payload, mtu, hop, tos, self._next_ident())
        c["FragOKs"] += 1
        c["FragCreates"] += len(pieces)
        for piece in pieces:
            self._emit(iface, dst, next_hop, piece, None)
        return True

    def _next_ident(self) -> int:
        self._ident = (self._ident + 1) & 0xFFFFFFFF
        return self._ident

    def _emit(self, iface: Interface, dst: int, next_hop: int, packet: bytes | Gather,
              offload: TxOffload | None) -> None:
        if iface.medium is not Medium.ETHERNET:
            iface.transmit(packet, offload)
        elif is_multicast6(dst):
            self._c["OutMcastPkts"] += 1
            iface.send_ethernet(multicast_mac6(dst), ETH_P_IPV6, packet, offload)
        else:
            iface.output(next_hop, ETH_P_IPV6, packet, offload)

    def _route(self, dst: int, interface: Interface | None) -> tuple[Interface | None, int]:
        if interface is not None:
            route = self.routes.lookup(dst)
            if route is not None and route.interface is interface:
                return interface, route.next_hop(dst)
            return interface, dst
        if is_multicast6(dst) or is_link_local6(dst):
            ifaces = self.stack.interfaces
            if len(ifaces) == 1:
                return ifaces[0], dst
            return None, dst  # ambiguous without a scope: say which interface
        route = self.routes.lookup(dst)
        if route is None or dst in (0, 1):
            return None, dst
        return route.interface, route.next_hop(dst)

    def _source(self, iface: Interface, dst: int) -> int | None:
        """RFC 6724 in brief: a preferred address of the outgoing interface, link-local for
        link-local and link-scope multicast destinations, else the longest matching prefix."""
        best: int | None = None
        best_score = -1
        want_ll = is_link_local6(dst) or (is_multicast6(dst) and (dst >> 112) & 0xF <= 2)
        for address, entry in self.addresses.items():
            if entry.interface is not iface or (entry.state != PREFERRED
                                                and entry.state != DEPRECATED):
                continue
            ll = is_link_local6(address)
            # RFC 6724 rules 2 (scope), 3 (avoid deprecated), 8 (longest matching prefix)
            score = ((4 if ll == want_ll else 0) + (2 if entry.state == PREFERRED else 0)
                     ) * 256 + 128 - (address ^ dst).bit_length()
            if score > best_score:
                best, best_score = address, score
        return best

    def _loopback(self, iface: Interface, packet: bytes) -> None:
        self._c["InReceives"] += 1
        vtf, _plen, nh, hop, src_b, dst_b = _unpack_from(packet)
        self._headers(iface, packet, int.from_bytes(src_b, "big"), int.from_bytes(dst_b, "big"),
                      hop, (vtf >> 20) & 0xFF, nh, 6, IPV6_HLEN, 0, False)

    def _local_error(self, errno: int, src: int, dst: int, protocol: int,
                     payload: bytes | bytearray | memoryview, mtu: int | None = None) -> None:
        transport = self.stack.transports.get(protocol)
        if transport is None:
            return
        transport.error(TransportError(errno=errno, src=src, dst=dst, protocol=protocol,
                                       quote=bytes(payload[:QUOTE_BYTES]), reporter=src,
                                       mtu=mtu))

    # --- IPv6Service ----------------------------------------------------------------------
    def interface_for(self, dst: int) -> Interface | None:
        """The interface a datagram to ``dst`` leaves through (None: our own address, or no
        route); transports read its capabilities (checksum offload, GSO)."""
        if dst in self.local:
            return None
        return self._route(dst, None)[0]

    def source_for(self, dst: int) -> int | None:
        if dst in self.local:
            return dst
        iface, _ = self._route(dst, None)
        return None if iface is None else self._source(iface, dst)

    def path_mtu(self, dst: int) -> int:
        if dst in self.local:
            return MAX_PAYLOAD
        iface, _ = self._route(dst, None)
        if iface is None:
            return IPV6_MIN_MTU
        mtu = self._link_mtu.get(iface, iface.mtu)
        entry = self._pmtu.get(dst)
        if entry is not None:
            if entry[1] <= self.stack.now:
                del self._pmtu[dst]
            else:
                mtu = min(mtu, entry[0])
        return mtu

    def update_path_mtu(self, dst: int, mtu: int) -> bool:
        """Packet too big (RFC 8201): lower the path MTU toward ``dst``, never below 1280."""
        mtu = max(mtu, IPV6_MIN_MTU)
        if mtu >= self.path_mtu(dst):
            return False
        if dst not in self._pmtu and len(self._pmtu) >= PMTU_CACHE_SIZE:
            del self._pmtu[next(iter(self._pmtu))]
        self._pmtu[dst] = (mtu, self.stack.now + self.settings.pmtu_expires)
        self._c["PmtuUpdates"] += 1
        return True

    def unreachable(self, interface: Interface, packet: bytes, errno: int) -> None:
        """NDP gave up on ``packet`` (one we sent): tell its transport."""
        c = self._c
        c["OutNeighbourFailures"] += 1
        if len(packet) < IPV6_HLEN:
            return
        nh = packet[6]
        off = IPV6_HLEN
        if nh == NH_FRAGMENT:
            if len(packet) < off + FRAGMENT_HLEN or FRAGMENT_HEADER.unpack_from(
                    packet, off)[2] & 0xFFF8:
                return  # only the first fragment holds the transport header
            nh = packet[off]
            off += FRAGMENT_HLEN
        transport = self.stack.transports.get(nh)
        if transport is None:
            return
        src = int.from_bytes(packet[8:24], "big")
        dst = int.from_bytes(packet[24:40], "big")
        transport.error(TransportError(errno=errno, src=src, dst=dst, protocol=nh,
                                       quote=bytes(packet[off:off + QUOTE_BYTES]),
                                       reporter=src))

    # --- lifecycle and reports ------------------------------------------------------------
    def stop(self) -> None:
        self.reassembler.clear()

    def report(self) -> dict[str, Any]:
        return {
            "addresses6": [
                {"interface": e.interface.name, "address": ip6_str(a),
                 "prefix_length": e.prefix_length, "state": e.state, "origin": e.origin}
                for a, e in self.addresses.items()],
            "routes6": [r.describe() for r in self.routes],
            "groups6": [{"interface": i.name, "group": ip6_str(g)}
                        for i, gs in self.groups.items() for g in gs],
        }

    def __repr__(self) -> str:
        return f"<IPv6 [{', '.join(ip6_str(a) for a in self.local)}]>"


def _header(src: int, dst: int, nh: int, plen: int, hop: int, tclass: int) -> bytes:
    return _pack(0x60000000 | (tclass << 20), plen, nh, hop, src.to_bytes(16, "big"),
                 dst.to_bytes(16, "big"))


def fragment6(src: int, dst: int, nh: int, payload: bytes, mtu: int, hop: int, tclass: int,
              ident: int) -> list[bytes]:
    """Split ``payload`` into fragments of at most ``mtu`` bytes each (RFC 8200 4.5): every
    fragment's data but the last is a multiple of 8 bytes."""
    step = (mtu - IPV6_HLEN - FRAGMENT_HLEN) & ~7
    if step <= 0:
        raise ValueError(f"MTU {mtu} leaves no room for fragment data")
    out = []
    for at in range(0, len(payload), step):
        chunk = payload[at:at + step]
        more = at + step < len(payload)
        out.append(_header(src, dst, NH_FRAGMENT, FRAGMENT_HLEN + len(chunk), hop, tclass)
                   + build_fragment_header(nh, at, more, ident) + chunk)
    return out


def _joined(parts: Gather) -> bytes:
    return parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts)


def _finished(parts: Gather, offload: TxOffload | None) -> bytes:
    """The payload in one buffer with any partial transport checksum completed in software
    (virtio NEEDS_CSUM semantics: the field holds the pseudo-header sum; checksum from
    ``csum_start``, counted from the IPv6 header, and store it at ``csum_offset`` further)."""
    if offload is None or not offload.needs_csum:
        return _joined(parts)
    data = bytearray(b"".join(parts))
    start = offload.csum_start - IPV6_HLEN
    at = start + offload.csum_offset
    if start < 0 or at + 2 > len(data):
        return bytes(data)
    csum = checksum(data[start:]) or 0xFFFF
    data[at:at + 2] = csum.to_bytes(2, "big")
    return bytes(data)


__all__ = ["NH_DSTOPTS", "IPv6", "Route6", "fragment6"]
