"""The ipv6 plugin for layers: IPv6 for a host (RFC 8200, RFC 4291, RFC 6724 in brief).

It provides one network protocol object, ``ipv6`` (ethertype 0x86DD on Ethernet links, IP
version 6 on IP links such as TUN), which the stack exposes as ``stack.ip6``
(:class:`layers.protocols.IPv6Service`). Addresses are 128-bit ints. We are a host: nothing is
forwarded and the hop limit of received packets is not decremented.

Addresses
    ``Interface.add_address6`` (``layers up --address 2001:db8::2/64``) configures one; the
    connected route of its prefix is added, and the interface joins the all-nodes group and
    the address's solicited-node group (RFC 4291 2.7.1, 2.8). An Ethernet interface gets a
    link-local address when it comes up, from its MAC as a modified EUI-64 (RFC 4291
    appendix A; ``ipv6.addr_gen_mode=eui64``) or an RFC 7217 stable opaque identifier
    (``stable-privacy``, keyed by ``ipv6.stable_secret``). Every address is *tentative* until
    duplicate address detection (RFC 4862 5.4, by whatever plugin provides
    :class:`layers.protocols.DuplicateAddressDetector`: ndp) says it is unique; packets to a
    tentative address are dropped (``tentative``). Without a detector (TUN links, no ndp)
    addresses are usable at once. A duplicate is logged, counted (``DadFails``) and unused.

Receive path
    Validates the header: length (``truncated``), version (``bad_version``), payload length
    within the packet (``bad_length``; link padding past it is ignored), no jumbograms
    (``jumbogram``), multicast or loopback sources (``martian_source``). Destinations: a
    preferred address of the stack (weak host model for global addresses; link-local ones
    only on their own interface), or a multicast group the interface joined
    (``multicast_not_joined`` otherwise); unicast in a link-layer multicast frame is dropped.
    Extension headers are walked in order: hop-by-hop (only first, else parameter problem
    code 1), destination options and hop-by-hop options are checked by the two high bits of
    unknown option types (RFC 8200 4.2: skip, discard, discard and report, discard and report
    unless multicast; ``unknown_option``), a routing header with segments left is refused
    with parameter problem code 0 pointing at its type (type 0 as RFC 5095 requires:
    ``routing_type0``; any other type: ``routing_unknown_type``), fragments are reassembled
    (:mod:`layers_ipv6.reassembly`: overlaps discard the packet per RFC 5722, memory and time
    bounded, time exceeded code 1 on timeout; atomic fragments, RFC 6946, are processed
    directly), no next header (59) ends the packet. The upper-layer header goes to
    ``stack.transports[next_header]`` when that transport lists 6 in ``ip_versions``;
    otherwise parameter problem code 1 points at the next-header field
    (``unknown_next_header``). Errors are sent by the transport on protocol 58 (icmpv6).

Send path (:meth:`IPv6.send`)
    Our own destinations loop back on the next poll. Otherwise the longest matching route
    picks the interface (link-local and multicast destinations need no route on a single
    interface; ``interface=`` picks it otherwise); the source is chosen as RFC 6724 prefers
    (same scope, longest common prefix, preferred addresses only). Multicast goes to the
    33:33 group MAC (RFC 2464 7), unicast through the interface's IPv6 neighbour resolver
    (ndp). Packets over the path MTU are fragmented by us, the source (8-byte multiples, a
    random 32-bit identification counter), unless ``dont_fragment`` (local EMSGSIZE).
    :meth:`IPv6.update_path_mtu` (packet too big, RFC 8201) lowers the path MTU, never below
    1280; entries expire after ``ipv6.pmtu_expires``. A payload in pieces stays in pieces
    (the header goes in front, the link writes them at once); a ``TxOffload`` (offsets from
    the IPv6 header) goes to a link with checksum offload, and a super-segment (GSO_TCPV6)
    to a link with GSO; otherwise the checksum is completed here (:meth:`IPv6.interface_for`
    tells a transport which link that is).

Counters (``stack.counter("ipv6")``)
    InReceives, InHdrErrors, InAddrErrors, InMcastPkts, InExtHeaders, InAtomicFragments,
    InUnknownProtos, InDelivers, OutRequests, OutDiscards, OutNoRoutes, OutLoopback,
    OutMcastPkts, OutNeighbourFailures, ReasmReqds, ReasmOKs, ReasmFails, ReasmTimeout,
    ReasmDuplicates, ReasmOverlaps, FragOKs, FragFails, FragCreates, PmtuUpdates, DadOKs,
    DadFails; every drop by reason in ``.drops``.

Settings (``--set ipv6.KEY=VALUE``; :class:`layers_ipv6.settings.IPv6Settings`)
    ``hop_limit`` (64), ``reasm_timeout`` (60.0 s), ``reasm_memory`` (262144 bytes; 0
    disables reassembly), ``addr_gen_mode`` (eui64, stable-privacy or none),
    ``stable_secret``, ``pmtu_expires`` (600.0 s), ``strong_host`` (false), ``bindv6only``
    (false: TCP listeners and UDP endpoints on ``::`` take IPv4 too unless they ask for
    ``v6only``, as Linux's ``net.ipv6.bindv6only``; the tcp and udp plugins read it).

Reports: ``addresses6``, ``routes6`` and ``groups6`` tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from layers.hookspecs import hookimpl
from layers_ipv6.protocol import IPv6, Route6, fragment6
from layers_ipv6.reassembly import Reassembler
from layers_ipv6.settings import IPv6Settings

if TYPE_CHECKING:
    from layers.interface import Interface
    from layers.stack import Stack

__version__ = "0.1.0"
__all__ = ["IPv6", "IPv6Settings", "Reassembler", "Route6", "fragment6"]


def _ipv6(stack: Stack) -> IPv6 | None:
    proto = stack.protocols.get("ipv6")
    return proto if isinstance(proto, IPv6) else None


@hookimpl
def layers_settings(stack: Stack) -> Mapping[str, Any]:
    return {"ipv6": IPv6Settings}


@hookimpl
def layers_network_protocols(stack: Stack) -> Iterable[IPv6]:
    return [IPv6(stack)]


@hookimpl
def layers_interface_up(stack: Stack, interface: Interface) -> None:
    proto = _ipv6(stack)
    if proto is not None:
        proto.interface_up(interface)


@hookimpl
def layers_stack_stopping(stack: Stack) -> None:
    proto = _ipv6(stack)
    if proto is not None:
        proto.stop()


@hookimpl
def layers_report(stack: Stack) -> Mapping[str, Any] | None:
    proto = _ipv6(stack)
    return proto.report() if proto is not None else None
