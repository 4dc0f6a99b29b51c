"""IPv6 wire formats (RFC 8200), ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861).

Addresses are plain ``int`` (128 bits) inside the stack, like IPv4's 32-bit ints; they never
share a table with IPv4 addresses (each family keeps its own). :func:`ip6`, :func:`ip6_str`
and :func:`ip6_network` convert at the edges.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from collections.abc import Iterator

from layers.errors import ConfigurationError

#: version/traffic class/flow label, payload length, next header, hop limit, src, dst
IPV6_HEADER = struct.Struct("!IHBB16s16s")
IPV6_HLEN = 40
#: every IPv6 link carries packets of this size unfragmented (RFC 8200 section 5)
IPV6_MIN_MTU = 1280

# next-header values
NH_HOPOPTS = 0
NH_TCP = 6
NH_UDP = 17
NH_ROUTING = 43
NH_FRAGMENT = 44
NH_ESP = 50
NH_AH = 51
NH_ICMPV6 = 58
NH_NONE = 59
NH_DSTOPTS = 60
#: extension headers with the generic (next header, length in 8-octet units - 8) layout
EXTENSION_HEADERS = frozenset({NH_HOPOPTS, NH_ROUTING, NH_DSTOPTS})

#: fragment header: next header, reserved, offset (13 bits) | res | M, identification
FRAGMENT_HEADER = struct.Struct("!BBHI")
FRAGMENT_HLEN = 8

# options in hop-by-hop and destination options headers
OPT_PAD1 = 0
OPT_PADN = 1
OPT_ROUTER_ALERT = 5

# ICMPv6 (RFC 4443, RFC 4861)
ICMPV6_HEADER = struct.Struct("!BBH")
ICMPV6_DEST_UNREACH = 1
ICMPV6_PACKET_TOO_BIG = 2
ICMPV6_TIME_EXCEEDED = 3
ICMPV6_PARAM_PROB = 4
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
ND_ROUTER_SOLICIT = 133
ND_ROUTER_ADVERT = 134
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
ND_REDIRECT = 137
ND_TYPES = frozenset(range(133, 138))

# NDP options (RFC 4861 4.6)
ND_OPT_SOURCE_LLADDR = 1
ND_OPT_TARGET_LLADDR = 2
ND_OPT_PREFIX_INFO = 3
ND_OPT_REDIRECTED_HEADER = 4
ND_OPT_MTU = 5
# neighbour advertisement flags
NA_ROUTER = 0x80000000
NA_SOLICITED = 0x40000000
NA_OVERRIDE = 0x20000000

ALL_NODES = 0xFF02_0000_0000_0000_0000_0000_0000_0001
ALL_ROUTERS = 0xFF02_0000_0000_0000_0000_0000_0000_0002
UNSPECIFIED = 0
LOOPBACK = 1
_SOLICITED_PREFIX = 0xFF02_0000_0000_0000_0000_0001_FF00_0000
LINK_LOCAL_PREFIX = 0xFE80 << 112
_MASK128 = (1 << 128) - 1


def ip6(value: str | int | bytes | bytearray | memoryview) -> int:
    """An IPv6 address from text (``2001:db8::1``), 16 bytes, or an int."""
    if isinstance(value, int):
        if not 0 <= value <= _MASK128:
            raise ConfigurationError(f"IPv6 address {value} is out of range 0..2**128-1")
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        if len(value) != 16:
            raise ConfigurationError(f"an IPv6 address is 16 bytes, got {len(value)}")
        return int.from_bytes(value, "big")
    try:
        return int(ipaddress.IPv6Address(value.strip("[]")))
    except ValueError:
        raise ConfigurationError(
            f"{value!r} is not an IPv6 address; write it as 2001:db8::1"
        ) from None


def ip6_bytes(value: int) -> bytes:
    return value.to_bytes(16, "big")


def ip6_str(value: int) -> str:
    return str(ipaddress.IPv6Address(value))


def ip6_network(text: str) -> tuple[int, int]:
    """``2001:db8::2/64`` into ``(address, prefix_length)``; the host bits are kept."""
    if "/" not in text:
        ip6(text)
        raise ConfigurationError(f"{text!r} needs a prefix length, for example {text}/64")
    addr, _, plen = text.partition("/")
    if not plen.isdigit() or not 0 <= int(plen) <= 128:
        raise ConfigurationError(f"prefix length in {text!r} must be 0..128")
    return ip6(addr), int(plen)


def is_ip6_text(text: str) -> bool:
    """True when ``text`` (an address, maybe with /prefix) is written as IPv6."""
    return ":" in text


def prefix_mask6(prefix_length: int) -> int:
    return (_MASK128 << (128 - prefix_length)) & _MASK128 if prefix_length else 0


def is_multicast6(address: int) -> bool:
    return address >> 120 == 0xFF


def is_link_local6(address: int) -> bool:
    return address >> 118 == 0xFE80 >> 6


def host_address6_problem(address: int, prefix_length: int) -> str | None:
    """Why ``address/prefix_length`` cannot be one of a host's IPv6 addresses, or None."""
    text = f"{ip6_str(address)}/{prefix_length}"
    if address in (UNSPECIFIED, LOOPBACK):
        return f"{text} is the unspecified or loopback address; give a unicast address"
    if is_multicast6(address):
        return f"{text} is a multicast address; give a unicast address"
    if address >> 96 == 0xFFFF or address >> 32 == 0:
        return (f"{text} is an IPv4-mapped or IPv4-compatible address; give IPv4 addresses "
                f"as a.b.c.d/n")
    return None


def solicited_node(address: int) -> int:
    """The solicited-node multicast group of ``address`` (RFC 4291 2.7.1)."""
    return _SOLICITED_PREFIX | (address & 0xFFFFFF)


def multicast_mac6(group: int) -> bytes:
    """The Ethernet address of an IPv6 multicast group: 33:33 + its low 32 bits (RFC 2464 7)."""
    return b"\x33\x33" + (group & 0xFFFFFFFF).to_bytes(4, "big")


def eui64_interface_id(mac: bytes) -> int:
    """The modified EUI-64 interface identifier of a MAC (RFC 4291 appendix A)."""
    eui = bytes((mac[0] ^ 0x02,)) + mac[1:3] + b"\xff\xfe" + mac[3:6]
    return int.from_bytes(eui, "big")


def stable_interface_id(prefix: int, iface_name: str, secret: bytes, dad_counter: int = 0,
                        network_id: bytes = b"") -> int:
    """A semantically opaque interface identifier (RFC 7217 section 5): a hash of the prefix,
    the interface, the network, the DAD counter and a secret; stable for the same inputs."""
    data = (ip6_bytes(prefix)[:8] + iface_name.encode() + network_id
            + dad_counter.to_bytes(1, "big") + secret)
    iid = int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
    return iid & ~(0x0200 << 48) & 0xFFFFFFFFFFFFFFFF if iid else 1  # never all zeros


def pseudo_header_sum6(src: int, dst: int, next_header: int, length: int) -> int:
    """The partial ones'-complement sum of the IPv6 pseudo-header (RFC 8200 8.1)."""
    s = 0
    for value in (src, dst):
        while value:
            s += value & 0xFFFF
            value >>= 16
    return s + (length >> 16) + (length & 0xFFFF) + next_header


def build_ipv6_header(src: int, dst: int, next_header: int, payload_length: int,
                      hop_limit: int = 64, traffic_class: int = 0, flow_label: int = 0) -> bytes:
    return IPV6_HEADER.pack((6 << 28) | (traffic_class << 20) | (flow_label & 0xFFFFF),
                            payload_length, next_header, hop_limit, ip6_bytes(src),
                            ip6_bytes(dst))


def build_icmpv6(src: int, dst: int, icmp_type: int, code: int, body: bytes) -> bytes:
    """An ICMPv6 message with its checksum over the pseudo-header (RFC 4443 2.3)."""
    from layers.wire.checksum import checksum

    msg = ICMPV6_HEADER.pack(icmp_type, code, 0) + body
    csum = checksum(msg, pseudo_header_sum6(src, dst, NH_ICMPV6, len(msg)))
    return msg[:2] + csum.to_bytes(2, "big") + msg[4:]


def nd_options(data: bytes | bytearray | memoryview) -> Iterator[tuple[int, bytes]] | None:
    """The (type, body) options of an NDP message, or None when one is malformed (length 0 or
    past the end: RFC 4861 says to discard the whole message)."""
    out: list[tuple[int, bytes]] = []
    i, n = 0, len(data)
    while i < n:
        if i + 2 > n:
            return None
        length = data[i + 1] * 8
        if length == 0 or i + length > n:
            return None
        out.append((data[i], bytes(data[i + 2 : i + length])))
        i += length
    return iter(out)


def nd_lladdr_option(kind: int, mac: bytes) -> bytes:
    """A source/target link-layer address option for an Ethernet MAC (8 bytes)."""
    return bytes((kind, 1)) + mac


def build_fragment_header(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    return FRAGMENT_HEADER.pack(next_header, 0, (offset & 0xFFF8) | (1 if more else 0), ident)


def is_ip6_int(address: int) -> bool:
    """True for an IPv6 address held as an int. IPv4 addresses are below 2**32 and no host
    IPv6 address is (``::/96`` is refused for hosts), so the value tells the family."""
    return address > 0xFFFFFFFF


def ip_any(value: str | int) -> int:
    """An address of either family from text (IPv6 when it has a colon) or an int."""
    from layers.wire.addr import ip4

    if isinstance(value, int):
        return value
    return ip6(value) if ":" in value else ip4(value)


def ip_str(address: int) -> str:
    """Text for an address of either family (see :func:`is_ip6_int`); :data:`ANY6` is
    ``::``."""
    from layers.wire.addr import ip4_str

    if address == ANY6:
        return "::"
    return ip6_str(address) if address > 0xFFFFFFFF else ip4_str(address)


#: the IPv6 wildcard ``::`` where a table must tell it from IPv4's ``0.0.0.0`` (both would be
#: 0): a transport binds a socket on ``::`` under this value. It is no address.
ANY6 = 1 << 128


def bind_overlap(a: int, a_v6only: bool, b: int, b_v6only: bool) -> bool:
    """Whether sockets bound to addresses ``a`` and ``b`` share an address, as Linux's bind
    conflicts see it: 0 is every IPv4 address, :data:`ANY6` every IPv6 one and every IPv4 one
    too unless that socket is v6only (IPV6_V6ONLY)."""
    if a == b:
        return True
    if (a == ANY6 and (b > 0xFFFFFFFF or not a_v6only)) or (
            b == ANY6 and (a > 0xFFFFFFFF or not b_v6only)):
        return True
    return (a == 0 and b <= 0xFFFFFFFF) or (b == 0 and a <= 0xFFFFFFFF)


def ip_text(address: int, mapped: bool = False) -> str:
    """:func:`ip_str`, or an IPv4 address as ``::ffff:a.b.c.d`` when ``mapped``: how a
    dual-stack socket on ``::`` names its IPv4 peers (RFC 4291 2.5.5.2, as Linux's)."""
    if mapped and address <= 0xFFFFFFFF:
        return "::ffff:" + ip_str(address)
    return ip_str(address)


def unmap(address: int) -> int:
    """An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) as the IPv4 address it maps, which is
    how the stack holds it; any other address unchanged."""
    return address & 0xFFFFFFFF if address >> 32 == 0xFFFF else address


def pseudo_sum(src: int, dst: int, protocol: int, length: int) -> int:
    """The pseudo-header partial sum for a transport checksum, IPv4's or IPv6's by the
    addresses' family (:func:`is_ip6_int`)."""
    if src > 0xFFFFFFFF or dst > 0xFFFFFFFF:
        return pseudo_header_sum6(src, dst, protocol, length)
    return ((src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + protocol + length)
