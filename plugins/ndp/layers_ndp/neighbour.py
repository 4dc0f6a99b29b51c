"""NDP for one stack: neighbour caches per Ethernet interface, NS/NA, NUD and DAD.

States (RFC 4861 7.3.2) and what moves an entry:

``incomplete``  an NS went to the solicited-node group; packets wait in a bounded queue; NS
                repeats every ``retrans_timer`` seconds, ``max_multicast_solicit`` in all, then
                every queued packet is reported unreachable and the entry deleted.
``reachable``   confirmed by a solicited NA within ``reachable_time``; then ``stale``.
``stale``       learned unsolicited (an NS's source link-layer option, an NA without S) or
                aged; the first packet sent moves it to ``delay``.
``delay``       ``delay_first_probe`` seconds for upper layers to confirm, then ``probe``.
``probe``       unicast NS every ``retrans_timer``, ``max_unicast_solicit`` in all; silence
                deletes the entry.
``permanent``   a static entry.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import attrs

from layers.errors import ConfigurationError
from layers.links.base import Gather, TxOffload
from layers.protocols import IPDatagram
from layers.settings import read_settings
from layers.wire.addr import mac_str
from layers.wire.ethernet import ETH_P_IPV6
from layers.wire.ipv6 import (
    ALL_NODES,
    NA_OVERRIDE,
    NA_ROUTER,
    NA_SOLICITED,
    ND_NEIGHBOR_ADVERT,
    ND_NEIGHBOR_SOLICIT,
    ND_OPT_SOURCE_LLADDR,
    ND_OPT_TARGET_LLADDR,
    ND_ROUTER_ADVERT,
    ND_TYPES,
    NH_ICMPV6,
    build_icmpv6,
    ip6_bytes,
    ip6_str,
    is_link_local6,
    is_multicast6,
    nd_lladdr_option,
    nd_options,
    solicited_node,
)
from layers_ndp.mld import MLD_QUERY, Mld
from layers_ndp.router import RouterDiscovery

if TYPE_CHECKING:
    from collections.abc import Callable

    from layers.interface import Interface
    from layers.stack import Stack
    from layers.timers import Timer

log = logging.getLogger("layers.ndp")
INCOMPLETE, REACHABLE, STALE, DELAY, PROBE, PERMANENT = (
    "incomplete", "reachable", "stale", "delay", "probe", "permanent")


@attrs.frozen
class NdpSettings:
    #: seconds between solicitations (RFC 4861 RetransTimer)
    retrans_timer: float = 1.0
    #: multicast solicitations before resolution fails (MAX_MULTICAST_SOLICIT)
    max_multicast_solicit: int = 3
    #: unicast probes of a stale entry in use (MAX_UNICAST_SOLICIT)
    max_unicast_solicit: int = 3
    #: seconds a confirmed entry stays reachable (REACHABLE_TIME)
    reachable_time: float = 30.0
    #: seconds in delay before probing (DELAY_FIRST_PROBE_TIME)
    delay_first_probe: float = 5.0
    #: packets queued per unresolved neighbour (Linux unres_qlen)
    queue_len: int = 101
    #: packets queued for all unresolved neighbours of a stack
    queue_total: int = 1024
    #: entries per interface (the oldest stale ones are evicted)
    max_entries: int = 1024
    #: solicitations duplicate address detection sends (RFC 4862 DupAddrDetectTransmits;
    #: 0 turns detection off)
    dad_transmits: int = 1
    #: act on router advertisements and solicit them (Linux accept_ra; false: neither)
    accept_ra: bool = True
    #: form addresses from advertised prefixes (SLAAC, Linux autoconf)
    autoconf: bool = True
    #: router solicitations sent when an interface comes up (MAX_RTR_SOLICITATIONS; 0: none)
    router_solicitations: int = 3
    #: seconds between them (RTR_SOLICITATION_INTERVAL)
    router_solicitation_interval: float = 4.0
    #: the first waits a random time up to this (MAX_RTR_SOLICITATION_DELAY)
    router_solicitation_delay: float = 1.0
    #: report multicast listening (MLDv2) for the groups interfaces join
    mld: bool = True
    #: seconds within which a state-change report is repeated (Unsolicited Report Interval)
    mld_unsolicited_interval: float = 1.0

    def validate(self) -> None:
        for key in ("retrans_timer", "reachable_time", "delay_first_probe",
                    "router_solicitation_interval", "mld_unsolicited_interval"):
            if not getattr(self, key) > 0:
                raise ConfigurationError(f"setting ndp.{key}={getattr(self, key)} must be > 0 "
                                         f"seconds")
        for key in ("max_multicast_solicit", "max_unicast_solicit", "queue_len",
                    "queue_total", "max_entries"):
            if getattr(self, key) < 1:
                raise ConfigurationError(f"setting ndp.{key}={getattr(self, key)} must be >= 1")
        if self.router_solicitations < 0 or self.router_solicitation_delay < 0:
            raise ConfigurationError(
                f"settings ndp.router_solicitations={self.router_solicitations} and "
                f"ndp.router_solicitation_delay={self.router_solicitation_delay} must be >= 0")
        if self.dad_transmits < 0:
            raise ConfigurationError(f"setting ndp.dad_transmits={self.dad_transmits} must be "
                                     f">= 0 (0 turns duplicate address detection off)")


class Neighbour:
    __slots__ = ("address", "mac", "probes", "queue", "router", "state", "timer")

    def __init__(self, address: int, state: str) -> None:
        self.address = address
        self.state = state
        self.mac = b""
        self.probes = 0
        self.router = False
        self.queue: deque[tuple[bytes, TxOffload | None]] = deque()
        self.timer: Timer | None = None


class NdpResolver:
    """The IPv6 neighbour cache of one Ethernet interface (a
    :class:`layers.protocols.NeighbourResolver` for ethertype 0x86DD)."""

    #: packets may come in pieces (a header beside a view of the payload) and go to the
    #: link unjoined; only a packet waiting for its neighbour is joined
    accepts_gather = True

    def __init__(self, ndp: Ndp, iface: Interface) -> None:
        assert iface.mac is not None
        self.ndp = ndp
        self.stack = ndp.stack
        self.iface = iface
        self.mac: bytes = iface.mac
        self.cfg = ndp.cfg
        self._c = ndp.counters
        self.table: dict[int, Neighbour] = {}
        #: RetransTimer and ReachableTime: the settings until a router advertises its own
        self.retrans_timer = self.cfg.retrans_timer
        self.reachable_time = self.cfg.reachable_time

    # --- output ---------------------------------------------------------------------------
    def output(self, next_hop: int, ethertype: int,
               payload: bytes | bytearray | memoryview | Gather,
               offload: TxOffload | None = None) -> None:
        n = self.table.get(next_hop)
        if n is not None and n.state != INCOMPLETE:
            if n.state == STALE:
                self._set(n, DELAY, self.cfg.delay_first_probe)
            self.iface.send_ethernet(n.mac, ethertype, payload, offload)
            return
        c = self._c
        if n is None:
            if len(self.table) >= self.cfg.max_entries and not self._evict():
                c.drop("table_full")
                self.stack.neighbour_unreachable(self.iface, ethertype, _joined(payload))
                return
            n = self.table[next_hop] = Neighbour(next_hop, INCOMPLETE)
            self._solicit(n)
        if len(n.queue) >= self.cfg.queue_len or self.ndp.queued >= self.cfg.queue_total:
            if not n.queue:
                c.drop("queue_overflow")
                self.stack.neighbour_unreachable(self.iface, ethertype, _joined(payload))
                return
            n.queue.popleft()
            self.ndp.queued -= 1
            c["queue_overflows"] += 1
            c.drop("queue_overflow")
        n.queue.append((_joined(payload), offload))
        self.ndp.queued += 1

    def _evict(self) -> bool:
        for n in list(self.table.values()):
            if n.state == STALE:
                self._delete(n)
                self._c["evictions"] += 1
                return True
        return False

    def _solicit(self, n: Neighbour) -> None:
        """One more multicast NS for an incomplete entry, or fail it."""
        if n.probes >= self.cfg.max_multicast_solicit:
            self._fail(n)
            return
        n.probes += 1
        self.ndp.send_ns(self.iface, n.address, solicited_node(n.address), with_source=True)
        n.timer = self.stack.call_later(self.retrans_timer, self._solicit, n)

    def _probe(self, n: Neighbour) -> None:
        if self.table.get(n.address) is not n:
            return
        if n.probes >= self.cfg.max_unicast_solicit:
            self._c["probe_failures"] += 1
            self._delete(n)
            return
        n.probes += 1
        self.ndp.send_ns(self.iface, n.address, n.address, with_source=True, link_dst=n.mac)
        n.timer = self.stack.call_later(self.retrans_timer, self._probe, n)

    def _fail(self, n: Neighbour) -> None:
        self._c["resolution_failures"] += 1
        queue = list(n.queue)
        self._delete(n)
        for payload, _ in queue:
            self._c.drop("unresolved")
            self.stack.neighbour_unreachable(self.iface, ETH_P_IPV6, payload)

    def _delete(self, n: Neighbour) -> None:
        if n.timer is not None:
            n.timer.cancel()
            n.timer = None
        self.ndp.queued -= len(n.queue)
        n.queue.clear()
        if self.table.get(n.address) is n:
            del self.table[n.address]

    def _set(self, n: Neighbour, state: str, lasts: float | None) -> None:
        if n.timer is not None:
            n.timer.cancel()
            n.timer = None
        n.state = state
        n.probes = 0
        if lasts is not None:
            n.timer = self.stack.call_later(lasts, self._state_ended, n)

    def _state_ended(self, n: Neighbour) -> None:
        n.timer = None
        if self.table.get(n.address) is not n:
            return
        if n.state == REACHABLE:
            self._set(n, STALE, None)
        elif n.state == DELAY:
            self._set(n, PROBE, None)
            self._probe(n)

    def _resolved(self, n: Neighbour, mac: bytes, state: str) -> None:
        n.mac = mac
        self._set(n, state, self.reachable_time if state == REACHABLE else None)
        queue, n.queue = n.queue, deque()
        self.ndp.queued -= len(queue)
        for payload, offload in queue:
            self.iface.send_ethernet(mac, ETH_P_IPV6, payload, offload)

    # --- learning from NS and NA (RFC 4861 7.2.3 and 7.2.5) ------------------------------
    def learn_from_solicitation(self, address: int, mac: bytes) -> None:
        n = self.table.get(address)
        if n is None:
            if len(self.table) >= self.cfg.max_entries and not self._evict():
                self._c.drop("table_full")
                return
            n = self.table[address] = Neighbour(address, STALE)
            n.mac = mac
            self._c["entries_learned"] += 1
        elif n.state == INCOMPLETE:
            self._resolved(n, mac, STALE)
        elif n.state != PERMANENT and n.mac != mac:
            n.mac = mac
            self._set(n, STALE, None)

    def advertisement(self, target: int, mac: bytes | None, solicited: bool, override: bool,
                      router: bool) -> None:
        n = self.table.get(target)
        if n is None or n.state == PERMANENT:
            self._c.drop("na_unsolicited_entry")  # no entry: nothing to update (7.2.5)
            return
        n.router = router
        if n.state == INCOMPLETE:
            if mac is None:
                self._c.drop("na_without_lladdr")
                return
            self._resolved(n, mac, REACHABLE if solicited else STALE)
            self._c["entries_learned"] += 1
            return
        different = mac is not None and mac != n.mac
        if not override and different:
            if n.state == REACHABLE:
                self._set(n, STALE, None)
            return
        if different and mac is not None:
            n.mac = mac
        if solicited:
            self._set(n, REACHABLE, self.reachable_time)
        elif different:
            self._set(n, STALE, None)

    # --- administration and reports -------------------------------------------------------
    def add_static(self, address: int, mac: bytes) -> None:
        n = self.table.get(address)
        if n is not None:
            self._delete(n)
        n = self.table[address] = Neighbour(address, PERMANENT)
        n.mac = mac

    def mark_router(self, address: int) -> None:
        n = self.table.get(address)
        if n is not None:
            n.router = True

    def lookup(self, address: int) -> tuple[bytes, str] | None:
        n = self.table.get(address)
        return None if n is None else (n.mac, n.state)

    def entries(self) -> list[dict[str, Any]]:
        return [{"interface": self.iface.name, "address": ip6_str(n.address),
                 "mac": mac_str(n.mac) if n.mac else None, "state": n.state,
                 "router": n.router, "queued": len(n.queue)}
                for n in self.table.values()]

    def stop(self) -> None:
        for n in list(self.table.values()):
            self._delete(n)


class _Detection:
    __slots__ = ("address", "done", "iface", "sent", "timer")

    def __init__(self, iface: Interface, address: int, done: Callable[[bool], None]) -> None:
        self.iface = iface
        self.address = address
        self.done = done
        self.sent = 0
        self.timer: Timer | None = None


class Ndp:
    """The ``ndp`` protocol object of one stack. It claims no ethertype: it receives NDP
    messages from icmpv6 (:class:`layers.protocols.ICMPv6Listener`), resolves neighbours for
    ipv6 (one :class:`NdpResolver` per Ethernet interface) and detects duplicate addresses
    (:class:`layers.protocols.DuplicateAddressDetector`)."""

    name = "ndp"
    ethertype = None
    ip_version = None
    needs_neighbour_resolver = False
    icmpv6_types = ND_TYPES | {MLD_QUERY}

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.counters = stack.counter("ndp")
        self.cfg = read_settings(stack, "ndp", NdpSettings)
        self.resolvers: dict[Interface, NdpResolver] = {}
        self.queued = 0
        self.detecting: dict[int, _Detection] = {}
        self.routers = RouterDiscovery(self)
        self.mld = Mld(self)

    def receive(self, interface: Interface, packet: memoryview, flags: int) -> None:
        self.counters.drop("not_a_network_protocol")  # never dispatched: no ethertype

    def resolver_for(self, iface: Interface) -> NdpResolver:
        res = self.resolvers.get(iface)
        if res is None:
            res = self.resolvers[iface] = NdpResolver(self, iface)
        return res

    # --- sending --------------------------------------------------------------------------
    def send_ns(self, iface: Interface, target: int, dst: int, *, with_source: bool,
                link_dst: bytes | None = None, src: int | None = None) -> None:
        ip6 = self.stack.ip6
        if ip6 is None or iface.mac is None:
            return
        if src is None:
            src = ip6.source_for(target) if not with_source else _source(ip6, iface, target)
        if src is None:
            src = 0
        body = b"\x00\x00\x00\x00" + ip6_bytes(target)
        if src:  # never a source link-layer option from the unspecified address (7.2.2)
            body += nd_lladdr_option(ND_OPT_SOURCE_LLADDR, iface.mac)
        msg = build_icmpv6(src, dst, ND_NEIGHBOR_SOLICIT, 0, body)
        self.counters["tx_solicitations"] += 1
        if link_dst is not None:
            from layers.wire.ipv6 import build_ipv6_header

            packet = build_ipv6_header(src, dst, NH_ICMPV6, len(msg), 255) + msg
            iface.send_ethernet(link_dst, ETH_P_IPV6, packet)
            return
        _send(ip6, dst, msg, src, iface)

    def send_na(self, iface: Interface, target: int, dst: int, solicited: bool) -> None:
        ip6 = self.stack.ip6
        if ip6 is None or iface.mac is None:
            return
        flags = NA_OVERRIDE | (NA_SOLICITED if solicited else 0)
        body = flags.to_bytes(4, "big") + ip6_bytes(target) + nd_lladdr_option(
            ND_OPT_TARGET_LLADDR, iface.mac)
        msg = build_icmpv6(target, dst, ND_NEIGHBOR_ADVERT, 0, body)
        self.counters["tx_advertisements"] += 1
        _send(ip6, dst, msg, target, iface)

    # --- receiving ------------------------------------------------------------------------
    def icmpv6_receive(self, datagram: IPDatagram, message: memoryview) -> None:
        c = self.counters
        t = message[0]
        if t == MLD_QUERY:
            self.mld.query(datagram, message)
            return
        if datagram.ttl != 255:  # RFC 4861 6.1.2, 7.1: only from on-link nodes
            c.drop("ra_bad_hop_limit" if t == ND_ROUTER_ADVERT else "bad_hop_limit")
            return
        if message[1] != 0:
            c.drop("ra_bad_code" if t == ND_ROUTER_ADVERT else "bad_code")
            return
        res = self.resolvers.get(datagram.interface)
        if res is None:
            c.drop("no_resolver")
            return
        if t == ND_NEIGHBOR_SOLICIT:
            self._solicitation(res, datagram, message)
        elif t == ND_NEIGHBOR_ADVERT:
            self._advertisement(res, datagram, message)
        elif t == ND_ROUTER_ADVERT:
            self.routers.advertisement(res.iface, datagram, message)
        else:
            c["rx_router_messages"] += 1  # solicitations (we route nothing) and redirects
            c.drop("unsupported_type")

    def _solicitation(self, res: NdpResolver, dg: IPDatagram, msg: memoryview) -> None:
        c = self.counters
        c["rx_solicitations"] += 1
        if len(msg) < 24:
            c.drop("truncated")
            return
        target = int.from_bytes(msg[8:24], "big")
        if is_multicast6(target):
            c.drop("bad_target")
            return
        options = nd_options(msg[24:])
        if options is None:
            c.drop("bad_option")
            return
        lladdr = None
        for kind, body in options:
            if kind == ND_OPT_SOURCE_LLADDR and len(body) >= 6:
                lladdr = body[:6]
        if dg.src == 0 and (dg.dst != solicited_node(target) or lladdr is not None):
            c.drop("bad_dad_solicitation")
            return
        ip6 = self.stack.ip6
        state = ip6.address_state(target) if ip6 is not None else None
        if state == "tentative":
            if dg.src == 0:  # someone else probes our tentative address (RFC 4862 5.4.3)
                self._duplicate(target)
            return
        if state != "preferred" and state != "deprecated":
            c.drop("not_our_target")
            return
        if dg.src == 0:  # a DAD probe for our address: defend it to all nodes
            self.send_na(res.iface, target, ALL_NODES, solicited=False)
            return
        if lladdr is not None:
            res.learn_from_solicitation(dg.src, lladdr)
        self.send_na(res.iface, target, dg.src, solicited=True)

    def _advertisement(self, res: NdpResolver, dg: IPDatagram, msg: memoryview) -> None:
        c = self.counters
        c["rx_advertisements"] += 1
        if len(msg) < 24:
            c.drop("truncated")
            return
        flags = int.from_bytes(msg[4:8], "big")
        target = int.from_bytes(msg[8:24], "big")
        solicited = bool(flags & NA_SOLICITED)
        if is_multicast6(target) or (solicited and is_multicast6(dg.dst)):
            c.drop("bad_target")
            return
        options = nd_options(msg[24:])
        if options is None:
            c.drop("bad_option")
            return
        lladdr = None
        for kind, body in options:
            if kind == ND_OPT_TARGET_LLADDR and len(body) >= 6:
                lladdr = body[:6]
        ip6 = self.stack.ip6
        state = ip6.address_state(target) if ip6 is not None else None
        if state == "tentative":
            self._duplicate(target)
            return
        if state is not None:
            c["conflicts"] += 1
            c.drop("address_conflict")
            return
        res.advertisement(target, lladdr, solicited, bool(flags & NA_OVERRIDE),
                          bool(flags & NA_ROUTER))

    # --- duplicate address detection (RFC 4862 5.4) ---------------------------------------
    def detect(self, interface: Interface, address: int, done: Callable[[bool], None]) -> None:
        if self.cfg.dad_transmits == 0 or interface.mac is None:
            done(True)
            return
        old = self.detecting.pop(address, None)
        if old is not None and old.timer is not None:
            old.timer.cancel()
        d = self.detecting[address] = _Detection(interface, address, done)
        self._dad_step(d)

    def _dad_step(self, d: _Detection) -> None:
        if self.detecting.get(d.address) is not d:
            return
        if d.sent >= self.cfg.dad_transmits:
            del self.detecting[d.address]
            self.counters["dad_ok"] += 1
            d.done(True)
            return
        d.sent += 1
        self.counters["tx_dad_probes"] += 1
        self.send_ns(d.iface, d.address, solicited_node(d.address), with_source=False, src=0)
        d.timer = self.stack.call_later(self.cfg.retrans_timer, self._dad_step, d)

    def _duplicate(self, address: int) -> None:
        d = self.detecting.pop(address, None)
        if d is None:
            return
        if d.timer is not None:
            d.timer.cancel()
        self.counters["dad_duplicates"] += 1
        d.done(False)

    def link_local(self, iface: Interface) -> int | None:
        """The preferred link-local address of ``iface``, or None (none yet, or tentative)."""
        ip6 = self.stack.ip6
        if ip6 is None:
            return None
        for address, _ in iface.addresses6:
            if is_link_local6(address) and ip6.address_state(address) == "preferred":
                return address
        return None

    # --- lifecycle and reports ------------------------------------------------------------
    def interface_up(self, iface: Interface) -> None:
        self.routers.interface_up(iface)
        self.mld.interface_up(iface)

    # --- MulticastListener: the ipv6 plugin's joins and leaves go to MLD -------------------
    def group_joined(self, interface: Interface, group: int) -> None:
        self.mld.group_joined(interface, group)

    def group_left(self, interface: Interface, group: int) -> None:
        self.mld.group_left(interface, group)

    def stop(self) -> None:
        self.routers.stop()
        self.mld.stop()
        for res in self.resolvers.values():
            res.stop()
        for d in self.detecting.values():
            if d.timer is not None:
                d.timer.cancel()
        self.detecting.clear()

    def entries(self) -> list[dict[str, Any]]:
        return [row for res in self.resolvers.values() for row in res.entries()]


def _source(ip6: Any, iface: Interface, target: int) -> int | None:
    """The source of a solicitation: the link-local address of ``iface`` if usable, else
    the stack's choice for ``target``."""
    found: int | None = ip6.source_for(target)
    return found


def _send(ip6: Any, dst: int, msg: bytes, src: int, iface: Interface) -> None:
    """Send an NDP message with hop limit 255 out of ``iface``."""
    ip6.send(dst, NH_ICMPV6, msg, src=src, ttl=255, interface=iface)


def _joined(payload: bytes | bytearray | memoryview | Gather) -> bytes:
    return b"".join(payload) if isinstance(payload, tuple) else bytes(payload)
