"""The contracts between layers, as typing Protocols.

Plugins never import each other: a transport talks to "whatever provides IPv4 output" through
:class:`IPv4Service`, IPv4 talks to "whatever resolves neighbours" through
:class:`NeighbourResolver`, and so on. Any plugin that implements the methods can take a place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from layers.interface import Interface
    from layers.links.base import Gather, TxOffload


class IPDatagram(NamedTuple):
    """What a network layer hands a transport for one received datagram (after reassembly)."""

    interface: Interface
    src: int
    dst: int
    protocol: int
    ttl: int
    #: the ToS/DS byte as received; its low two bits are the ECN field (RFC 3168,
    #: ``layers.wire.ipv4.ECN_*``). For a reassembled datagram the ECN field is CE when any
    #: fragment carried CE (RFC 3168 5.3); reassembly never yields CE mixed with Not-ECT
    tos: int
    #: the IP header as received (ICMP quotes it in errors)
    header: bytes | memoryview
    payload: bytes | memoryview
    #: RX_* flags from layers.links.base (checksum verified by the link, link broadcast)
    flags: int = 0
    #: the destination was a broadcast address (link or IP)
    broadcast: bool = False


@attrs.frozen
class TransportError:
    """An error for a datagram a transport sent: from an ICMP message or raised locally
    (neighbour resolution failed, no route). Delivered through ``TransportProtocol.error``."""

    errno: int
    #: the offending datagram's addressing, as the transport sent it
    src: int
    dst: int
    protocol: int
    #: the start of the offending transport header (at least 8 bytes when from ICMP)
    quote: bytes
    #: who reported it: the ICMP sender, or our own address for local errors
    reporter: int = 0
    icmp_type: int | None = None
    icmp_code: int | None = None
    #: next-hop MTU from "fragmentation needed" (RFC 1191), else None
    mtu: int | None = None

    @property
    def local(self) -> bool:
        return self.icmp_type is None


@runtime_checkable
class NetworkProtocol(Protocol):
    """A protocol dispatched by ethertype (Ethernet links) and/or IP version (IP links)."""

    name: str
    #: ethertype on Ethernet media, or None
    ethertype: int | None
    #: IP version nibble on IP media (TUN), or None
    ip_version: int | None
    #: on an Ethernet link this protocol cannot send without a neighbour resolver
    needs_neighbour_resolver: bool

    def receive(self, interface: Interface, packet: memoryview, flags: int) -> None:
        """Handle one packet (the frame minus its link header). Must not raise for bad input:
        raise :class:`layers.errors.MalformedPacket` at most, which the stack counts."""


@runtime_checkable
class IPv4Service(Protocol):
    """What transports use to send: provided by the network protocol with ``ip_version == 4``."""

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
        """Route, fragment if needed, and send. False (and a local error) when unroutable.

        ``tos`` is the whole ToS/DS byte, ECN field included: a transport that negotiated
        ECN passes ``ECN_ECT0`` (ORed with any DSCP) for the packets it wants marked rather
        than dropped. Every fragment carries it.

        ``payload`` may come in pieces (a tuple of buffers, e.g. a transport header and a view
        of the application's data): the packet then leaves as pieces too, headers in front,
        and a link with scatter-gather writes never copies the data."""

    def send_pieces(self, dst: int, protocol: int, parts: Gather, plen: int, src: int, tos: int,
                    offload: TxOffload | None) -> bool:
        """``send(dst, protocol, parts, src=src, tos=tos, dont_fragment=True,
        offload=offload)`` for a transport whose packet is in pieces already, of ``plen``
        bytes in all, from a source it knows: what a TCP segment is. Positional and told the
        length, so that a cached egress can skip the checks those make needless (it is on
        the path of every data segment). Optional: TCP sends through :meth:`send` when a
        service has no ``send_pieces`` (a network plugin written before it was added)."""

    def source_for(self, dst: int) -> int | None:
        """The local address a datagram to ``dst`` would leave from, or None without a route."""

    def path_mtu(self, dst: int) -> int:
        """The largest IP packet that reaches ``dst`` unfragmented, as far as we know."""

    def unreachable(self, interface: Interface, packet: bytes, errno: int) -> None:
        """A packet this protocol handed to the link layer could not be delivered."""


@runtime_checkable
class IPv6Service(Protocol):
    """What transports and neighbour discovery use to send IPv6: provided by the network
    protocol with ``ip_version == 6``, as ``stack.ip6``. Addresses are 128-bit ints.

    A transport receives IPv6 datagrams only when it lists 6 in an ``ip_versions`` attribute
    (absent: ``(4,)``): its checksum must then use the IPv6 pseudo-header
    (:func:`layers.wire.ipv6.pseudo_header_sum6`) for datagrams whose ``header`` starts with
    version 6."""

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
        """As :meth:`IPv4Service.send`; ``ttl`` is the hop limit. Only the source fragments
        in IPv6: ``dont_fragment`` means EMSGSIZE instead of a fragment header."""

    def send_pieces(self, dst: int, protocol: int, parts: Gather, plen: int, src: int, tos: int,
                    offload: TxOffload | None) -> bool:
        """As :meth:`IPv4Service.send_pieces`."""

    def source_for(self, dst: int) -> int | None:
        """The local address a datagram to ``dst`` would leave from (RFC 6724 in brief)."""

    def path_mtu(self, dst: int) -> int:
        """The largest packet that reaches ``dst`` unfragmented, as far as we know."""

    def interface_for(self, dst: int) -> Interface | None:
        """The interface a datagram to ``dst`` leaves through, or None (our own address, no
        route): a transport reads its capabilities to leave checksums and segmentation to the
        link. ``offload`` offsets given to :meth:`send` count from the IPv6 header."""

    def address_state(self, address: int) -> str | None:
        """``"tentative"`` (DAD running), ``"preferred"``, ``"deprecated"`` (an autoconfigured
        address past its preferred lifetime: still ours, not chosen as a source), ``"duplicate"``,
        or None when not ours."""


@runtime_checkable
class IPv6Configuration(Protocol):
    """What configures the IPv6 layer beyond sending: static and learned routes (the core's
    ``Stack.add_route`` for IPv6, router advertisements), autoconfigured addresses and their
    lifetimes (SLAAC, RFC 4862), the link MTU a router announces, and the multicast groups an
    interface has joined (MLD). Provided by the ipv6 plugin next to :class:`IPv6Service`;
    the ndp plugin and the core use it. Addresses are 128-bit ints."""

    def add_route6(self, network: int, prefix_length: int, interface: Interface, *,
                   gateway: int | None = None, metric: int = 0,
                   origin: str = "static") -> None:
        """Add a route; ``gateway`` None means on-link. Adding one that exists is a no-op."""

    def remove_route6(self, network: int, prefix_length: int, interface: Interface, *,
                      gateway: int | None = None, origin: str = "static") -> None:
        """Remove the route with exactly these fields, if present."""

    def interface_id(self, interface: Interface, prefix: int, dad_counter: int = 0) -> int | None:
        """The 64-bit interface identifier for an address in ``prefix`` on ``interface``, made
        as the link-local one is (``ipv6.addr_gen_mode``); None when the mode is ``none``."""

    def deprecate_address6(self, address: int, deprecated: bool = True) -> None:
        """The preferred lifetime ended (RFC 4862 5.5.4): still received on, no longer chosen
        as a source for new communication (``deprecated=False``: preferred again)."""

    def address_removed(self, interface: Interface, address: int) -> None:
        """Called by the core from ``Interface.remove_address6`` (a valid lifetime ended):
        the address, its groups and its connected route go."""

    def set_link_mtu6(self, interface: Interface, mtu: int) -> None:
        """The IPv6 MTU of ``interface`` (a router's MTU option), within 1280..link MTU."""

    def groups6(self, interface: Interface) -> list[int]:
        """The multicast groups ``interface`` has joined."""

    def set_hop_limit6(self, hop_limit: int) -> None:
        """The hop limit of packets sent without one (a router's Cur Hop Limit)."""


@runtime_checkable
class MulticastListener(Protocol):
    """Told when an interface joins or leaves an IPv6 multicast group, so it can report the
    membership to routers and snooping switches (MLDv2, RFC 3810: the ndp plugin)."""

    def group_joined(self, interface: Interface, group: int) -> None: ...

    def group_left(self, interface: Interface, group: int) -> None: ...


@runtime_checkable
class DuplicateAddressDetector(Protocol):
    """Checks that an IPv6 address is unique on its link before it is used (RFC 4862 5.4):
    provided by the ndp plugin and called by the IPv6 network layer."""

    def detect(self, interface: Interface, address: int, done: Callable[[bool], None]) -> None:
        """Probe ``address`` on ``interface``; call ``done(True)`` when it is unique,
        ``done(False)`` when another node has it."""


@runtime_checkable
class ICMPv6Listener(Protocol):
    """Receives the ICMPv6 messages of the types it lists (NDP: 133..137): the icmpv6
    transport hands them over after checking the checksum, with the whole message."""

    icmpv6_types: frozenset[int]

    def icmpv6_receive(self, datagram: IPDatagram, message: memoryview) -> None: ...


class UnpackedReceive(Protocol):
    """A transport's optional ``receive_unpacked``: :meth:`TransportProtocol.receive` of one
    datagram given by its fields, everything of :class:`IPDatagram` but the protocol (the
    transport's own) and the header. IPv4 calls it instead of ``receive`` for each datagram
    that was not reassembled, so it makes neither the IPDatagram nor a view of the header
    per packet (TCP and ICMP offer it: every segment and echo request comes this way). A
    transport that needs the header (to quote it) does not offer it."""

    def __call__(self, iface: Interface, src: int, dst: int, ttl: int, tos: int,
                 payload: bytes | memoryview, flags: int, broadcast: bool) -> None: ...


@runtime_checkable
class TransportProtocol(Protocol):
    """A protocol dispatched by IP protocol number. It may also offer ``receive_unpacked``
    (see :class:`UnpackedReceive`), which IPv4 then prefers."""

    name: str
    protocol: int

    def receive(self, datagram: IPDatagram) -> None:
        """Handle one datagram addressed to this stack."""

    def error(self, error: TransportError) -> None:
        """An ICMP or local error about a datagram this protocol sent."""


@runtime_checkable
class NeighbourResolver(Protocol):
    """Maps next-hop addresses to link addresses on one Ethernet interface (ARP for IPv4)."""

    def output(
        self,
        next_hop: int,
        ethertype: int,
        payload: bytes | bytearray | memoryview | Gather,
        offload: TxOffload | None = None,
    ) -> None:
        """Send ``payload`` to ``next_hop``: now if resolved, else after resolution (bounded
        queue). If resolution fails, ``Stack.neighbour_unreachable`` is called per packet.
        A resolver whose class sets ``accepts_gather = True`` may get ``payload`` in pieces
        (a tuple of buffers, see :data:`layers.links.base.Gather`), to pass on to
        :meth:`Interface.send_ethernet` unjoined; any other resolver gets one buffer."""

    def entries(self) -> list[Mapping[str, Any]]:
        """The cache, for ``layers arp``: dicts with address, mac, state, expires.

        Optional fast path: a resolver may also offer ``resolved_mac(next_hop) -> bytes |
        None``, the MAC to which a packet would go straight out with no bookkeeping (ARP:
        reachable or permanent entries). IPv4 then caches the whole Ethernet and IP header
        per destination and skips :meth:`output` until ``stack.egress_generation`` moves on,
        so such a resolver must call ``stack.egress_changed()`` whenever an entry's MAC or
        state changes or an entry goes. A resolver without ``resolved_mac`` sees every
        packet."""


@runtime_checkable
class ErrorReporter(Protocol):
    """Sends ICMP errors on behalf of other protocols (rate limiting and the "never in reply to
    an error or a broadcast" rules are the reporter's job)."""

    def destination_unreachable(self, datagram: IPDatagram, code: int) -> None: ...

    def time_exceeded(self, datagram: IPDatagram, code: int) -> None: ...

    def parameter_problem(self, datagram: IPDatagram, pointer: int) -> None: ...


@attrs.frozen
class EchoReply:
    src: int
    seq: int
    ttl: int
    size: int
    rtt: float


#: called with an EchoReply, or with an OSError (timeout, EHOSTUNREACH, an ICMP error)
EchoCallback = Callable[["EchoReply | OSError"], None]


@runtime_checkable
class EchoService(Protocol):
    """Sends ICMP echo requests (implemented by the icmp plugin; used by ``layers ping``)."""

    def echo(
        self,
        dst: int,
        *,
        ident: int,
        seq: int,
        payload: bytes,
        callback: EchoCallback,
        timeout: float = 1.0,
        ttl: int | None = None,
    ) -> None: ...
