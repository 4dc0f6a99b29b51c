"""The IPv4 header (RFC 791). Shared by every plugin that must read or build one: ipv4 itself,
ICMP (which quotes headers in its errors), the transports and the conformance testbench."""

from __future__ import annotations

import struct

import attrs

from layers.errors import MalformedPacket
from layers.wire.addr import ip4_str
from layers.wire.checksum import checksum, ones_sum

IPV4_HEADER = struct.Struct("!BBHHHBBHII")
IPV4_MIN_HLEN = 20
#: the largest IPv4 datagram: the 16-bit total length field
IPV4_MAX_TOTAL_LENGTH = 65535
#: the smallest MTU every IPv4 link must carry, 60-byte header plus 8 of data (RFC 791)
IPV4_MIN_MTU = 68
#: the datagram size every host must be able to reassemble (RFC 791, RFC 1122 3.3.2)
IPV4_MIN_REASM = 576
IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFMASK = 0x1FFF
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
#: The ECN field: the low two bits of the ToS/DS byte (RFC 3168 section 5). A sender that
#: negotiated ECN marks its packets ECT(0) (or ECT(1)); a router that would otherwise drop one
#: sets CE instead. Not-ECT packets are never marked.
ECN_MASK = 0x03
ECN_NOT_ECT = 0x00
ECN_ECT1 = 0x01
ECN_ECT0 = 0x02
ECN_CE = 0x03


@attrs.frozen(slots=True)
class IPv4Header:
    """An IPv4 header. ``options`` is the raw option bytes (a multiple of 4 long).

    ``to_bytes`` fills in IHL and the checksum when ``checksum`` is None, and the total length
    when ``total_length`` is None (then ``payload_length`` must be given)."""

    src: int
    dst: int
    protocol: int
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    flags: int = 0  # the top three bits of the fragment word: IP_DF, IP_MF
    frag_offset: int = 0  # in 8-byte units
    total_length: int | None = None
    checksum: int | None = None
    options: bytes = b""
    version: int = 4
    ihl: int | None = None

    @property
    def header_length(self) -> int:
        return (self.ihl if self.ihl is not None else 5 + len(self.options) // 4) * 4

    @property
    def ecn(self) -> int:
        """The ECN codepoint (``ECN_NOT_ECT``, ``ECN_ECT1``, ``ECN_ECT0`` or ``ECN_CE``)."""
        return self.tos & ECN_MASK

    @property
    def more_fragments(self) -> bool:
        return bool(self.flags & IP_MF)

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags & IP_DF)

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, *, verify_checksum: bool = True
    ) -> IPv4Header:
        """Parse and validate; raises :class:`MalformedPacket` with one of the reasons
        ``truncated``, ``bad_version``, ``bad_ihl``, ``bad_length``, ``bad_checksum``."""
        n = len(data)
        if n < IPV4_MIN_HLEN:
            raise MalformedPacket("truncated", f"{n} bytes is shorter than an IPv4 header")
        vihl, tos, total, ident, frag, ttl, proto, csum, src, dst = IPV4_HEADER.unpack_from(data)
        version = vihl >> 4
        if version != 4:
            raise MalformedPacket("bad_version", f"version {version}")
        ihl = vihl & 0xF
        hlen = ihl * 4
        if ihl < 5:
            raise MalformedPacket("bad_ihl", f"IHL {ihl} is below 5")
        if hlen > n:
            raise MalformedPacket("bad_ihl", f"IHL {ihl} runs past the {n}-byte packet")
        if total < hlen or total > n:
            raise MalformedPacket("bad_length", f"total length {total} with {n} bytes present")
        if verify_checksum and ones_sum(memoryview(data)[:hlen]) != 0xFFFF:
            raise MalformedPacket("bad_checksum")
        return cls(
            src=src,
            dst=dst,
            protocol=proto,
            ttl=ttl,
            tos=tos,
            ident=ident,
            flags=frag & 0xE000,
            frag_offset=frag & IP_OFFMASK,
            total_length=total,
            checksum=csum,
            options=bytes(data[IPV4_MIN_HLEN:hlen]),
            version=version,
            ihl=ihl,
        )

    def to_bytes(self, payload_length: int | None = None) -> bytes:
        hlen = self.header_length
        total = self.total_length
        if total is None:
            if payload_length is None:
                raise ValueError("give total_length or payload_length")
            total = hlen + payload_length
        options = self.options + b"\x00" * (hlen - IPV4_MIN_HLEN - len(self.options))
        head = (
            IPV4_HEADER.pack(
                (self.version << 4) | (hlen // 4),
                self.tos,
                total,
                self.ident,
                self.flags | self.frag_offset,
                self.ttl,
                self.protocol,
                0 if self.checksum is None else self.checksum,
                self.src,
                self.dst,
            )
            + options
        )
        if self.checksum is None:
            head = head[:10] + checksum(head).to_bytes(2, "big") + head[12:]
        return head

    def __str__(self) -> str:
        return f"{ip4_str(self.src)} > {ip4_str(self.dst)} proto {self.protocol} ttl {self.ttl}"


def build_ipv4_header(
    src: int,
    dst: int,
    protocol: int,
    payload_length: int,
    *,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    flags_frag: int = 0,
) -> bytearray:
    """A 20-byte header with its checksum, on the fast path (no attrs object)."""
    head = bytearray(
        IPV4_HEADER.pack(
            0x45, tos, 20 + payload_length, ident, flags_frag, ttl, protocol, 0, src, dst
        )
    )
    head[10:12] = checksum(head).to_bytes(2, "big")
    return head
