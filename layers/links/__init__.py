"""Link drivers (TAP, TUN, in-memory) and link wrappers (pcap, faults)."""

from layers.links.base import (
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    RX_BROADCAST,
    RX_CSUM_VERIFIED,
    Link,
    LinkCapabilities,
    LinkStats,
    LinkWrapper,
    Medium,
    TxOffload,
)
from layers.links.faults import FaultLink, parse_faults
from layers.links.memory import MemoryLink
from layers.links.pcap import PcapLink
from layers.links.tuntap import TapLink, TunLink

__all__ = [
    "GSO_NONE",
    "GSO_TCPV4",
    "GSO_TCPV6",
    "RX_BROADCAST",
    "RX_CSUM_VERIFIED",
    "FaultLink",
    "Link",
    "LinkCapabilities",
    "LinkStats",
    "LinkWrapper",
    "Medium",
    "MemoryLink",
    "PcapLink",
    "TapLink",
    "TunLink",
    "TxOffload",
    "parse_faults",
]
