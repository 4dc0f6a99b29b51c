"""ARP for IPv4 over Ethernet (RFC 826), plus the RFC 5227 probe/announcement shapes.

Only the Ethernet/IPv4 flavour is supported (hardware type 1, protocol 0x0800, hardware
length 6, protocol length 4): that is the 28-byte packet every IPv4 host on Ethernet speaks.
Anything else is rejected with :class:`~layers.errors.MalformedPacket`, whose ``reason`` is a
counter key: ``truncated``, ``bad_hardware``, ``bad_hlen``, ``bad_protocol``, ``bad_plen``,
``bad_opcode``. Trailing bytes (Ethernet padding to 60 bytes) are ignored.
"""

from __future__ import annotations

import struct

import attrs

from layers.errors import MalformedPacket
from layers.wire.addr import ip4_str, mac_str
from layers.wire.ethernet import ETH_P_IP

#: hardware type, protocol type, hlen, plen, opcode, sha, spa, tha, tpa (addresses as ints)
ARP_HEADER = struct.Struct("!HHBBH6sI6sI")
ARP_LEN = 28
#: the fixed part before the addresses, checked before the length of the rest
ARP_FIXED = struct.Struct("!HHBBH")
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
_MAC_ZERO = b"\x00" * 6


@attrs.frozen(slots=True)
class ARPPacket:
    """One ARP packet. Addresses: MACs are 6-byte ``bytes``, IPv4 addresses ``int``."""

    opcode: int
    sender_mac: bytes
    sender_ip: int
    target_mac: bytes = _MAC_ZERO
    target_ip: int = 0
    hardware_type: int = ARPHRD_ETHER
    protocol_type: int = ETH_P_IP
    hardware_length: int = 6
    protocol_length: int = 4

    @property
    def is_request(self) -> bool:
        return self.opcode == ARPOP_REQUEST

    @property
    def is_reply(self) -> bool:
        return self.opcode == ARPOP_REPLY

    @property
    def is_gratuitous(self) -> bool:
        """An announcement: the sender asks for (or answers) its own address (RFC 5227 2.3)."""
        return self.sender_ip == self.target_ip and self.sender_ip != 0

    @property
    def is_probe(self) -> bool:
        """An RFC 5227 probe: a request from 0.0.0.0 checking whether target_ip is in use."""
        return self.opcode == ARPOP_REQUEST and self.sender_ip == 0

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> ARPPacket:
        """Parse and validate one Ethernet/IPv4 ARP packet (trailing padding is ignored)."""
        n = len(data)
        if n < 8:
            raise MalformedPacket("truncated", f"{n} bytes is shorter than an ARP header")
        hrd, pro, hln, pln, op = ARP_FIXED.unpack_from(data)
        if hrd != ARPHRD_ETHER:
            raise MalformedPacket("bad_hardware", f"hardware type {hrd}, expected 1 (Ethernet)")
        if pro != ETH_P_IP:
            raise MalformedPacket("bad_protocol", f"protocol type 0x{pro:04x}, expected 0x0800")
        if hln != 6:
            raise MalformedPacket("bad_hlen", f"hardware address length {hln}, expected 6")
        if pln != 4:
            raise MalformedPacket("bad_plen", f"protocol address length {pln}, expected 4")
        if n < ARP_LEN:
            raise MalformedPacket("truncated", f"{n} bytes is shorter than an ARP packet (28)")
        if op != ARPOP_REQUEST and op != ARPOP_REPLY:
            raise MalformedPacket("bad_opcode", f"opcode {op}")
        _, _, _, _, _, sha, spa, tha, tpa = ARP_HEADER.unpack_from(data)
        return cls(op, sha, spa, tha, tpa, hrd, pro, hln, pln)

    def to_bytes(self) -> bytes:
        """The 28-byte packet. Raises :class:`MalformedPacket` for fields that do not fit."""
        if (
            self.hardware_type != ARPHRD_ETHER
            or self.protocol_type != ETH_P_IP
            or self.hardware_length != 6
            or self.protocol_length != 4
        ):
            raise MalformedPacket("unsupported", "only Ethernet/IPv4 ARP can be encoded")
        if len(self.sender_mac) != 6 or len(self.target_mac) != 6:
            raise MalformedPacket("bad_hlen", "MAC addresses must be 6 bytes")
        if not (0 <= self.sender_ip <= 0xFFFFFFFF and 0 <= self.target_ip <= 0xFFFFFFFF):
            raise MalformedPacket("bad_plen", "IPv4 addresses must fit in 32 bits")
        if not 0 <= self.opcode <= 0xFFFF:
            raise MalformedPacket("bad_opcode", f"opcode {self.opcode}")
        return ARP_HEADER.pack(
            ARPHRD_ETHER, ETH_P_IP, 6, 4, self.opcode,
            bytes(self.sender_mac), self.sender_ip, bytes(self.target_mac), self.target_ip,
        )

    def __str__(self) -> str:
        sip, smac, tip = ip4_str(self.sender_ip), mac_str(self.sender_mac), ip4_str(self.target_ip)
        if self.opcode == ARPOP_REQUEST:
            if self.sender_ip == 0:
                return f"ARP probe who-has {tip} from {smac}"
            if self.is_gratuitous:
                return f"ARP announcement {sip} is-at {smac}"
            return f"ARP who-has {tip} tell {sip}"
        if self.opcode == ARPOP_REPLY:
            return f"ARP reply {sip} is-at {smac}"
        return f"ARP opcode {self.opcode}"


def build_arp(
    opcode: int, sender_mac: bytes, sender_ip: int, target_mac: bytes, target_ip: int
) -> bytes:
    """The 28-byte Ethernet/IPv4 ARP packet, on the fast path (no attrs object, no checks)."""
    return ARP_HEADER.pack(
        ARPHRD_ETHER, ETH_P_IP, 6, 4, opcode, sender_mac, sender_ip, target_mac, target_ip
    )
