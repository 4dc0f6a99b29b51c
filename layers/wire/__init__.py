"""Wire formats and helpers shared by the core and the plugins.

Formats are data definitions, like a kernel's uapi headers: the core owns them so that plugins
(which never import each other) can all read and write every header. Behaviour lives in the
plugins.
"""

from layers.wire.addr import (
    BROADCAST_MAC,
    IPV4_BROADCAST,
    ZERO_MAC,
    ip4,
    ip4_bytes,
    ip4_network,
    ip4_str,
    is_multicast_mac,
    mac,
    mac_str,
    prefix_mask,
)
from layers.wire.checksum import checksum, fold, ones_sum, pseudo_header_sum, verify
from layers.wire.ethernet import (
    ETH_HEADER,
    ETH_HLEN,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    EthernetHeader,
)
from layers.wire.ipv4 import (
    IP_DF,
    IP_MF,
    IP_OFFMASK,
    IPV4_HEADER,
    IPV4_MIN_HLEN,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    IPv4Header,
    build_ipv4_header,
)

__all__ = [
    "BROADCAST_MAC",
    "ETH_HEADER",
    "ETH_HLEN",
    "ETH_P_ARP",
    "ETH_P_IP",
    "ETH_P_IPV6",
    "IPV4_BROADCAST",
    "IPV4_HEADER",
    "IPV4_MIN_HLEN",
    "IP_DF",
    "IP_MF",
    "IP_OFFMASK",
    "PROTO_ICMP",
    "PROTO_TCP",
    "PROTO_UDP",
    "ZERO_MAC",
    "EthernetHeader",
    "IPv4Header",
    "build_ipv4_header",
    "checksum",
    "fold",
    "ip4",
    "ip4_bytes",
    "ip4_network",
    "ip4_str",
    "is_multicast_mac",
    "mac",
    "mac_str",
    "ones_sum",
    "prefix_mask",
    "pseudo_header_sum",
    "verify",
]
