"""A stack's attachment to one link: addresses, neighbour resolver, counters, output paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from layers.counters import Counters
from layers.errors import ConfigurationError
from layers.links.base import Gather, Link, Medium, TxOffload
from layers.wire.addr import (
    IPV4_BROADCAST,
    host_address_problem,
    ip4_str,
    mac_str,
    prefix_mask,
)
from layers.wire.ethernet import ETH_HEADER, ETH_P_IP
from layers.wire.ipv6 import host_address6_problem, ip6_str

if TYPE_CHECKING:
    from layers.protocols import NeighbourResolver
    from layers.stack import Stack


def _not_attached(iface: Interface, frame: bytes | bytearray | memoryview, flags: int) -> None:
    iface.counters.drop("not_attached")


class Interface:
    def __init__(self, stack: Stack, link: Link, name: str, index: int) -> None:
        self.stack = stack
        self.link = link
        self.name = name
        self.index = index
        self.capabilities = link.capabilities
        self.medium = link.capabilities.medium
        #: ``medium is Medium.IP``, kept: reading an enum member costs about 1k instructions
        #: in Python 3.11, and output() asks for every packet
        self._ip_medium = self.medium is Medium.IP
        self.mtu = link.capabilities.mtu
        self.mac: bytes | None = link.mac
        #: (address, prefix_length) pairs in the order they were added
        self.addresses: list[tuple[int, int]] = []
        #: subnet broadcast addresses plus 255.255.255.255
        self.broadcasts: set[int] = {IPV4_BROADCAST}
        #: IPv6 (address, prefix_length) pairs configured on it, in order (the ipv6 plugin
        #: adds the link-local one and tracks duplicate address detection)
        self.addresses6: list[tuple[int, int]] = []
        #: IPv4's neighbour resolver (ARP)
        self.resolver: NeighbourResolver | None = None
        #: ``resolver`` once it was seen to take payloads in pieces (``accepts_gather``)
        self._gather_resolver: NeighbourResolver | None = None
        #: the resolvers of other network protocols by ethertype (NDP for IPv6); other
        #: ethertypes use ``resolver``
        self.resolvers: dict[int, NeighbourResolver] = {}
        self.counters = Counters(f"if:{name}")
        #: the last 8 bytes of our Ethernet header (source MAC, ethertype) by ethertype
        self._eth_tails: dict[int, bytes] = {}
        self.up = False
        #: the receive path for this link's medium, ``dispatch(iface, frame, flags)``: the
        #: stack sets its Ethernet or IP demultiplexer when it adds the interface
        self.dispatch: Callable[[Interface, bytes | bytearray | memoryview, int], None] = (
            _not_attached
        )

    # --- addresses ------------------------------------------------------------------
    def add_address(self, address: int, prefix_length: int) -> None:
        problem = host_address_problem(address, prefix_length)
        if problem is not None:
            raise ConfigurationError(problem)
        if (address, prefix_length) in self.addresses:
            raise ConfigurationError(
                f"{ip4_str(address)}/{prefix_length} is on {self.name} already"
            )
        self.addresses.append((address, prefix_length))
        mask = prefix_mask(prefix_length)
        if prefix_length < 31:
            self.broadcasts.add((address & mask) | (~mask & 0xFFFFFFFF))
        self.stack._address_added(self, address, prefix_length)

    def add_address6(self, address: int, prefix_length: int, origin: str = "static") -> None:
        """Configure an IPv6 address; the IPv6 network layer (``stack.ip6``) is told, and
        runs duplicate address detection before using it. ``origin`` is what reports show
        (``static``, ``link-local``, ``autoconf`` for SLAAC)."""
        problem = host_address6_problem(address, prefix_length)
        if problem is not None:
            raise ConfigurationError(problem)
        if any(a == address for a, _ in self.addresses6):
            raise ConfigurationError(f"{ip6_str(address)} is on {self.name} already")
        self.addresses6.append((address, prefix_length))
        self.stack._address6_added(self, address, prefix_length, origin)

    def remove_address6(self, address: int) -> None:
        """Remove an IPv6 address (an autoconfigured one whose valid lifetime ended); the
        IPv6 network layer drops it with its groups and connected route. Absent: no-op."""
        before = len(self.addresses6)
        self.addresses6 = [(a, p) for a, p in self.addresses6 if a != address]
        if len(self.addresses6) != before:
            self.stack._address6_removed(self, address)

    @property
    def address(self) -> int | None:
        """The primary address (the first added), or None."""
        return self.addresses[0][0] if self.addresses else None

    # --- output ---------------------------------------------------------------------
    def transmit(
        self, frame: bytes | bytearray | memoryview | Gather, offload: TxOffload | None = None
    ) -> None:
        """Put one complete frame on the link (through any per-frame hooks); a tuple of
        pieces goes to the link as one scatter-gather write."""
        if isinstance(frame, tuple):
            self.transmit_pieces(frame, sum(map(len, frame)), offload)
            return
        c = self.counters
        c["tx_frames"] += 1
        c["tx_bytes"] += len(frame)
        self.stack._transmit(self, frame, offload)

    def transmit_pieces(self, pieces: Gather, size: int, offload: TxOffload | None = None) -> None:
        """Put one complete frame given in pieces (``size`` bytes in all, which the caller
        knows) on the link as one scatter-gather write; per-frame hooks, if any, see (and may
        rewrite) it joined."""
        c = self.counters
        c["tx_frames"] += 1
        c["tx_bytes"] += size
        stack = self.stack
        if stack._tx_hooked:
            stack._transmit(self, b"".join(pieces), offload)
        else:
            self.link.send_gather(pieces, offload)

    def send_ethernet(
        self,
        dst_mac: bytes,
        ethertype: int,
        payload: bytes | bytearray | memoryview | Gather,
        offload: TxOffload | None = None,
    ) -> None:
        """Frame ``payload`` with an Ethernet header from this interface's MAC and send it.
        A payload in pieces (a tuple) stays in pieces: the header goes in front of them and
        the link writes them all at once, so the payload is never copied here."""
        tail = self._eth_tails.get(ethertype)  # our MAC and the ethertype, made once
        if tail is None:
            assert self.mac is not None
            tail = self._eth_tails[ethertype] = ETH_HEADER.pack(bytes(6), self.mac,
                                                                ethertype)[6:]
        header = dst_mac + tail
        if isinstance(payload, tuple):
            self.transmit_pieces((header, *payload), 14 + sum(map(len, payload)), offload)
            return
        frame = header + payload
        # transmit(), inlined: this is every Ethernet frame's path
        c = self.counters
        c["tx_frames"] += 1
        c["tx_bytes"] += len(frame)
        stack = self.stack
        if stack._tx_hooked:
            stack._transmit(self, frame, offload)
        else:
            self.link.send(frame, offload)

    def output(
        self,
        next_hop: int,
        ethertype: int,
        payload: bytes | bytearray | memoryview | Gather,
        offload: TxOffload | None = None,
    ) -> None:
        """The network layer's exit: resolve ``next_hop`` if the medium needs it, then send."""
        if self._ip_medium:
            self.transmit(payload, offload)
            return
        if ethertype == ETH_P_IP:
            resolver = self.resolver
            if resolver is not None and resolver is self._gather_resolver:
                resolver.output(next_hop, ethertype, payload, offload)  # IPv4's usual path
                return
        else:
            resolver = self.resolvers.get(ethertype, self.resolver)
        if resolver is not None:
            if getattr(resolver, "accepts_gather", False):
                if ethertype == ETH_P_IP:
                    self._gather_resolver = resolver  # asked once, not per packet
            elif isinstance(payload, tuple):
                payload = b"".join(payload)  # a resolver written for one buffer gets one
            resolver.output(next_hop, ethertype, payload, offload)
        else:
            self.counters.drop("no_neighbour_resolver")

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "index": self.index,
            "up": self.up,
            "medium": self.medium.value,
            "mtu": self.mtu,
            "mac": mac_str(self.mac) if self.mac else None,
            "addresses": [f"{ip4_str(a)}/{p}" for a, p in self.addresses]
            + [f"{ip6_str(a)}/{p}" for a, p in self.addresses6],
            "link": self.link.describe(),
            "counters": dict(self.counters),
            "drops": dict(self.counters.drops),
        }

    def __repr__(self) -> str:
        return (
            f"<Interface {self.name} {self.medium.value} {[ip4_str(a) for a, _ in self.addresses]}>"
        )
