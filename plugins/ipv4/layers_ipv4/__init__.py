"""The ipv4 plugin for layers: IPv4 for a host (RFC 791, RFC 1122 section 3.2).

It provides one network protocol object, ``ipv4`` (ethertype 0x0800 on Ethernet links, IP
version 4 on IP links such as TUN), which the stack also exposes to transports as ``stack.ip``
(:class:`layers.protocols.IPv4Service`). We are a host, not a router: nothing is forwarded and
the TTL of received packets is not decremented.

Receive path
    Validates the header: length (``truncated``), version (``bad_version``), IHL at least 5 and
    inside the packet (``bad_ihl``), total length at least the header and at most the bytes
    present (``bad_length``; bytes past the total length are link padding and ignored), header
    checksum (``bad_checksum``). Options are skipped without being acted on (``InOptions``
    counts packets that had some); so is the reserved flag bit. Sources that cannot be on a link
    are martians (``martian_source``): 0/8 (except 0.0.0.0 to a broadcast, for BOOTP/DHCP),
    127/8, 224/4 and above (multicast, class E, 255.255.255.255), a subnet broadcast of the
    interface, and one of our own addresses (Linux does the same). Accepted destinations: any of
    the stack's addresses (the weak host model of RFC 1122 3.3.4.2, as Linux; set
    ``ipv4.strong_host`` to accept only the receiving interface's), a subnet broadcast of the
    interface and 255.255.255.255 (``datagram.broadcast`` is then set). Anything else is
    ``not_for_us`` (``multicast`` for group addresses: we join no groups). A unicast datagram
    that arrived in a link-layer broadcast is dropped (``unicast_in_link_broadcast``, RFC 1122
    3.3.6). Fragments are reassembled (policies in :mod:`layers_ipv4.reassembly`: exact
    duplicates are ignored, any other overlap discards the whole datagram, memory and time are
    bounded, time exceeded code 1 is requested on timeout when the first fragment had arrived;
    a datagram is CE when any fragment was, and one whose fragments mix Not-ECT with ECT or CE
    is discarded, ``reasm_ecn_mismatch``, as Linux does: RFC 3168 5.3).
    Datagrams go to ``stack.transports[protocol].receive`` (or by their fields to its
    ``receive_unpacked`` where it has one, except reassembled ones) with the link's RX flags
    (``RX_CSUM_VERIFIED`` passes through; it is cleared on reassembled datagrams, whose
    fragments no link can have verified). An unknown protocol asks ``stack.errors`` for
    destination unreachable code 2 (protocol unreachable) unless the datagram was a broadcast.

Loopback
    The stack gets Linux's ``lo`` (``stack.loopback``, :mod:`layers.links.loopback`): an IP
    device with MTU 65536 and checksum offload, holding 127.0.0.1/8 and the local route
    127.0.0.0/8. Every address of 127/8 is ours (``stack.is_local``), answered from the address
    it was sent to; packets toward other 127/8 addresses get 127.0.0.1 as their source.

Send path (:meth:`IPv4.send`)
    A destination that is one of our addresses, or in 127/8 while we have ``lo``, is looped
    back on the next poll (``stack.call_soon``), never re-entering ``receive`` synchronously;
    ``lo`` counts it sent and received, and a partial checksum the transport left is trusted
    (``RX_CSUM_VERIFIED``), as Linux's loopback does. Otherwise
    ``stack.routes`` picks the route (longest prefix, then the default gateway); without one
    the transport gets a local ``TransportError`` (ENETUNREACH) and ``send`` returns False.
    0.0.0.0 and 127/8 are never sent on a link (RFC 1122 3.2.1.3). The source is the given
    one (it must be ours, or 0.0.0.0) or the outgoing interface's address in the next hop's
    subnet, else its primary address (EADDRNOTAVAIL without one). 255.255.255.255 leaves by
    the source address's interface, else the default route's, else the only interface; it and
    subnet broadcasts go to the link broadcast address without neighbour resolution, multicast
    to the RFC 1112 group MAC. Packets larger than the path MTU are fragmented on 8-byte
    boundaries (only options with the copied flag would be repeated; we send none), unless DF
    was asked for (local EMSGSIZE error carrying the MTU) or the packet is a GSO super-segment
    (``offload.gso_size``) the interface accepts (``capabilities.gso_max_size``). The
    TxOffload passes through unchanged, except that a partial checksum the interface cannot
    complete (no ``tx_checksum``) or that fragmentation would split is completed in software.
    The identification field comes from one counter per stack with a random start. The
    transport's ``tos`` byte goes into every packet and fragment unchanged, ECN field included
    (transports that negotiated ECN pass ``ECN_ECT0`` for their data, RFC 3168).

Egress cache
    What the send path decided for a unicast destination (interface, source, the sum of the
    header's constant words and, on Ethernet, the neighbour's MAC as a prebuilt Ethernet
    header) is kept per destination, as Linux's dst cache with the neighbour's cached
    hardware header, and reused while ``stack.egress_generation`` is unchanged (one integer
    compare per send). Routes added or removed, addresses added, interfaces up or down,
    every ARP state change or removal, and path MTUs recorded bump it. Not cached: neighbours
    that are not reachable or permanent (ARP's bookkeeping runs per packet), destinations
    with a learned path MTU, sources other than the one the stack would choose, broadcast and
    multicast. The interface MTU is read per packet. At most 4096 destinations; then the
    cache is emptied, as the route lookup cache is. ``send_pieces`` (TCP's data segments:
    pieces whose length the transport gives, its own source, don't-fragment) goes through the
    cache without ``send``'s other checks, and to ``send`` on a miss.

Errors and path MTU
    :meth:`IPv4.unreachable` (called through ``stack.neighbour_unreachable`` when ARP gives
    up) hands the transport a ``TransportError`` quoting up to 64 bytes of its header.
    :meth:`IPv4.path_mtu` answers the route's interface MTU, lowered by what
    :meth:`IPv4.update_path_mtu` (called by ICMP on "fragmentation needed", RFC 1191) learned.

Counters (``stack.counter("ipv4")``, ``netstat -s`` names)
    InReceives, InHdrErrors, InAddrErrors, InOptions, InBcastPkts, InUnknownProtos,
    InDelivers, OutRequests, OutDiscards, OutNoRoutes, OutLoopback, OutBcastPkts,
    OutMcastPkts, OutNeighbourFailures, ReasmReqds, ReasmOKs, ReasmFails, ReasmTimeout,
    ReasmDuplicates, ReasmOverlaps, FragOKs, FragFails, FragCreates, PmtuUpdates; Linux's
    IpExt InECT0Pkts, InECT1Pkts, InCEPkts (valid received packets by ECN codepoint, each
    fragment counted; Not-ECT packets are not counted, to keep the common path free); every
    drop by reason in ``.drops``.

Settings (``--set ipv4.KEY=VALUE``; :class:`layers_ipv4.settings.IPv4Settings`)
    ``ipv4.ttl`` (int, 64)
        TTL of datagrams we send when the transport does not give one.
    ``ipv4.reasm_timeout`` (float, 30.0)
        Seconds a partial datagram is kept from its first fragment (RFC 1122 suggests 60 to
        120; Linux uses 30).
    ``ipv4.reasm_memory`` (int, 262144)
        Bytes all partial datagrams may hold together (data plus 64 bytes per fragment); the
        oldest datagrams are discarded to make room. 0 disables reassembly.
    ``ipv4.strong_host`` (bool, False)
        Accept unicast only for the receiving interface's own addresses.
    ``ipv4.drop_unicast_in_l2_broadcast`` (bool, True)
        Drop unicast datagrams that arrived in link-layer broadcast frames.
    ``ipv4.pmtu_expires`` (float, 600.0)
        Seconds a learned path MTU is kept.
    ``ipv4.min_pmtu`` (int, 552)
        The smallest path MTU ``update_path_mtu`` accepts (smaller reports are raised to it).
    ``ipv4.loopback`` (bool, True)
        Give the stack the loopback interface ``lo``. False: no ``lo``, 127/8 is unreachable
        (ENETUNREACH); packets to our own addresses are still looped back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from layers.hookspecs import hookimpl
from layers_ipv4.fragment import copied_options, fragment
from layers_ipv4.protocol import IPv4
from layers_ipv4.reassembly import Reassembler
from layers_ipv4.settings import IPv4Settings

if TYPE_CHECKING:
    from layers.stack import Stack

__version__ = "0.1.0"
__all__ = ["IPv4", "IPv4Settings", "Reassembler", "copied_options", "fragment"]


@hookimpl
def layers_settings(stack: Stack) -> Mapping[str, Any]:
    return {"ipv4": IPv4Settings}


@hookimpl
def layers_network_protocols(stack: Stack) -> Iterable[IPv4]:
    return [IPv4(stack)]


@hookimpl
def layers_stack_stopping(stack: Stack) -> None:
    proto = stack.protocols.get("ipv4")
    if isinstance(proto, IPv4):
        proto.stop()
