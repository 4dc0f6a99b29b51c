"""The UDP header (RFC 768) and its checksum over the IPv4 pseudo-header.

Shared by the udp plugin, ICMP (which quotes UDP headers in its errors) and the conformance
testbench. The fast paths (:func:`build_udp`, :func:`udp_checksum_ok`) make no attrs object.
"""

from __future__ import annotations

import struct

import attrs

from layers.errors import MalformedPacket
from layers.wire.checksum import Buffer, checksum, ones_sum, pseudo_header_sum
from layers.wire.ipv4 import PROTO_UDP

UDP_HEADER = struct.Struct("!HHHH")
UDP_HLEN = 8
#: the checksum field's offset inside the UDP header
UDP_CSUM_OFFSET = 6
#: the largest UDP payload an IPv4 datagram without options can carry (65535 - 20 - 8)
UDP_MAX_PAYLOAD = 65507


def udp_checksum(src: int, dst: int, segment: Buffer) -> int:
    """The checksum to put in the header of ``segment`` (whose checksum field holds zero).

    A computed 0 is returned as 0xFFFF: zero on the wire means "no checksum" (RFC 768)."""
    c = checksum(segment, pseudo_header_sum(src, dst, PROTO_UDP, len(segment)))
    return c if c else 0xFFFF


def udp_checksum_ok(src: int, dst: int, segment: Buffer) -> bool:
    """True when ``segment`` (header and payload, exactly UDP-length bytes) has no checksum
    (field zero) or a correct one."""
    if segment[6] == 0 and segment[7] == 0:
        return True
    return ones_sum(segment, pseudo_header_sum(src, dst, PROTO_UDP, len(segment))) == 0xFFFF


def build_udp(
    src: int, dst: int, sport: int, dport: int, payload: Buffer, *, with_checksum: bool = True
) -> bytearray:
    """Header plus ``payload``, with its checksum unless ``with_checksum`` is False."""
    length = UDP_HLEN + len(payload)
    seg = bytearray(length)
    UDP_HEADER.pack_into(seg, 0, sport, dport, length, 0)
    seg[UDP_HLEN:] = payload
    if with_checksum:
        c = checksum(seg, pseudo_header_sum(src, dst, PROTO_UDP, length))
        seg[6] = (c >> 8) if c else 0xFF
        seg[7] = (c & 0xFF) if c else 0xFF
    return seg


@attrs.frozen(slots=True)
class UDPHeader:
    """A UDP header. ``length`` and ``checksum`` are filled in by :meth:`build` when None."""

    sport: int
    dport: int
    length: int | None = None
    checksum: int | None = None

    @classmethod
    def from_bytes(cls, data: Buffer) -> UDPHeader:
        """Parse the header of a UDP segment; raises :class:`MalformedPacket` (``truncated``,
        ``bad_length``) when ``data`` is shorter than 8 bytes or than the length field says,
        or when that field is below 8. Bytes beyond the length field are not checked."""
        n = len(data)
        if n < UDP_HLEN:
            raise MalformedPacket("truncated", f"{n} bytes is shorter than a UDP header")
        sport, dport, length, csum = UDP_HEADER.unpack_from(data)
        if length < UDP_HLEN or length > n:
            raise MalformedPacket("bad_length", f"UDP length {length} with {n} bytes present")
        return cls(sport, dport, length, csum)

    def build(self, src: int, dst: int, payload: Buffer) -> bytes:
        """This header (completed) and ``payload`` as a segment from ``src`` to ``dst``."""
        length = self.length if self.length is not None else UDP_HLEN + len(payload)
        seg = bytearray(UDP_HEADER.pack(self.sport, self.dport, length, 0)) + payload
        csum = self.checksum
        if csum is None:
            csum = udp_checksum(src, dst, seg)
        seg[6:8] = csum.to_bytes(2, "big")
        return bytes(seg)
