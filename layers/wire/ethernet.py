"""Ethernet II framing."""

from __future__ import annotations

import struct

import attrs

from layers.errors import MalformedPacket
from layers.wire.addr import mac_str

ETH_HEADER = struct.Struct("!6s6sH")
ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100


@attrs.frozen(slots=True)
class EthernetHeader:
    dst: bytes
    src: bytes
    ethertype: int

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> EthernetHeader:
        if len(data) < ETH_HLEN:
            raise MalformedPacket("truncated", f"ethernet frame of {len(data)} bytes")
        dst, src, ethertype = ETH_HEADER.unpack_from(data)
        return cls(dst, src, ethertype)

    def to_bytes(self) -> bytes:
        return ETH_HEADER.pack(self.dst, self.src, self.ethertype)

    def __str__(self) -> str:
        return f"{mac_str(self.src)} > {mac_str(self.dst)} type 0x{self.ethertype:04x}"
