"""Link drivers (TAP, TUN, in-memory) and link wrappers (pcap, faults)."""

from layers.links.base import (
    GSO_NONE,
    GSO_TCPV4,
    RX_BROADCAST,
    RX_CSUM_VERIFIED,
    Link,
    LinkCapabilities,
    LinkStats,
    LinkWrapper,
    Medium,
    TxOffload,
)
from layers.links.memory import MemoryLink

__all__ = [
    "GSO_NONE",
    "GSO_TCPV4",
    "RX_BROADCAST",
    "RX_CSUM_VERIFIED",
    "Link",
    "LinkCapabilities",
    "LinkStats",
    "LinkWrapper",
    "Medium",
    "MemoryLink",
    "TxOffload",
]
