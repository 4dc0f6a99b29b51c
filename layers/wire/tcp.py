"""The TCP header (RFC 9293) and its options (MSS, window scale, SACK, timestamps).

Shared by the tcp plugin, ICMP (which quotes TCP headers in its errors), the tests and the
conformance testbench. :class:`TCPHeader` and :class:`TCPOptions` are the validating attrs
forms; the fast paths (:data:`TCP_HEADER`, :func:`parse_timestamps`, :func:`tcp_checksum`)
make no attrs object and are what the plugin uses per segment.

Sequence numbers here are the 32-bit wire values; the plugin unwraps them.
"""

from __future__ import annotations

import struct

import attrs

from layers.errors import MalformedPacket
from layers.wire.checksum import Buffer, checksum, ones_sum, pseudo_header_sum
from layers.wire.ipv4 import IPV4_MAX_TOTAL_LENGTH, IPV4_MIN_HLEN, PROTO_TCP

#: sport, dport, seq, ack, data offset (4 bits) + reserved + flags (12 bits), window,
#: checksum, urgent pointer
TCP_HEADER = struct.Struct("!HHIIHHHH")
TCP_MIN_HLEN = 20
TCP_MAX_HLEN = 60
#: the checksum field's offset inside the TCP header
TCP_CSUM_OFFSET = 16

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_ECE = 0x40
TCP_CWR = 0x80
TCP_FLAG_MASK = 0x1FF  # includes the old NS/AE bit

_FLAG_NAMES = ((TCP_FIN, "F"), (TCP_SYN, "S"), (TCP_RST, "R"), (TCP_PSH, "P"),
               (TCP_ACK, "."), (TCP_URG, "U"), (TCP_ECE, "E"), (TCP_CWR, "W"))

TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_MSS = 2
TCPOPT_WSCALE = 3
TCPOPT_SACK_PERM = 4
TCPOPT_SACK = 5
TCPOPT_TIMESTAMP = 8

#: RFC 7323: shift counts above 14 are treated as 14
TCP_MAX_WSCALE = 14
#: RFC 9293: the MSS a sender assumes when the peer sent no MSS option
TCP_DEFAULT_MSS = 536
#: the one floor on the MSS: no segment carries less data than this (options deducted),
#: whatever the peer's MSS option, the path MTU or the ``mss=`` option say. Linux's
#: tcp_min_snd_mss (48): a peer announcing a tiny MSS cannot make us cut a transfer into
#: tiny segments (CVE-2019-11479), yet any real peer's MSS (48 and up) is honoured as sent.
#: Linux's other constant, TCP_MIN_MSS 88, only bounds its TCP_MAXSEG socket option; a
#: floor of 88 here would send more than a peer announcing 48..87 accepts.
TCP_MIN_MSS = 48
#: the largest MSS over IPv4: the largest datagram less the minimal IPv4 and TCP headers
TCP_MAX_MSS = IPV4_MAX_TOTAL_LENGTH - IPV4_MIN_HLEN - TCP_MIN_HLEN
#: the largest window the 16-bit header field carries (before RFC 7323 scaling)
TCP_MAX_WINDOW = 0xFFFF

#: room for options in the header (TCP_MAX_HLEN - TCP_MIN_HLEN)
TCP_MAX_OPTIONS = TCP_MAX_HLEN - TCP_MIN_HLEN
#: NOP NOP TIMESTAMP(10): the timestamp option as every stack sends it (RFC 7323 appendix A)
TCP_TS_PREFIX = b"\x01\x01\x08\x0a"
#: that option's first two 16-bit words summed, for a checksum taken without building it
TCP_TS_PREFIX_SUM = 0x0101 + 0x080A
#: the whole option: prefix, TSval, TSecr
TCP_TS_OPTION = struct.Struct("!4sII")
TCP_TS_OPTION_LEN = TCP_TS_OPTION.size
#: the header length (data offset) of a segment whose only option is that one
TCP_TS_HLEN = TCP_MIN_HLEN + TCP_TS_OPTION_LEN
#: NOP NOP SACK: the SACK option as sent, before its length byte and blocks (RFC 2018)
TCP_SACK_PREFIX = b"\x01\x01\x05"
#: one SACK block: left and right edge
TCP_SACK_BLOCK = struct.Struct("!II")
#: a SACK option with no blocks (NOP NOP kind length), and the bytes of one block
TCP_SACK_HLEN = 4
TCP_SACK_BLOCK_LEN = TCP_SACK_BLOCK.size

_TS = struct.Struct("!II")
_TS_PREFIX = TCP_TS_PREFIX
_MSS = struct.Struct("!BBH")


def flags_str(flags: int) -> str:
    """tcpdump style: ``S``, ``S.``, ``P.``, ``F.``, ``R``."""
    return "".join(ch for bit, ch in _FLAG_NAMES if flags & bit) or "none"


def tcp_checksum(src: int, dst: int, segment: Buffer) -> int:
    """The checksum to store in ``segment`` (header and payload, checksum field zero)."""
    return checksum(segment, pseudo_header_sum(src, dst, PROTO_TCP, len(segment)))


def tcp_checksum_ok(src: int, dst: int, segment: Buffer) -> bool:
    """True when ``segment`` (exactly the TCP length) carries a correct checksum."""
    return ones_sum(segment, pseudo_header_sum(src, dst, PROTO_TCP, len(segment))) == 0xFFFF


def tcp_partial_checksum(src: int, dst: int, length: int) -> int:
    """The pseudo-header sum, folded and not complemented: what goes in the checksum field
    when the link completes the checksum (``TxOffload`` with ``csum_offset``, Linux's
    CHECKSUM_PARTIAL)."""
    s = pseudo_header_sum(src, dst, PROTO_TCP, length)
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def parse_timestamps(options: Buffer) -> tuple[int, int] | None:
    """(TSval, TSecr) from an option block, or None: the same answer as
    ``parse_options(options).timestamp`` (with two timestamp options, the last one, as Linux's
    tcp_parse_options). A block that is exactly NOP NOP TS is read without walking it."""
    n = len(options)
    if n == 0:
        return None
    if n == TCP_TS_OPTION_LEN and options[:4] == _TS_PREFIX:
        return _TS.unpack_from(options, 4)
    try:
        return parse_options(options).timestamp
    except MalformedPacket:
        return None


@attrs.frozen(slots=True)
class TCPOptions:
    """The options TCP understands. ``unknown`` keeps (kind, data) of the others."""

    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    #: SACK blocks as (left edge, right edge) 32-bit sequence numbers
    sack: tuple[tuple[int, int], ...] = ()
    #: (TSval, TSecr)
    timestamp: tuple[int, int] | None = None
    unknown: tuple[tuple[int, bytes], ...] = ()

    def to_bytes(self) -> bytes:
        """Encode in Linux's order (MSS, SACK-permitted+TS or NOP NOP TS, NOP WS, SACK),
        padded with NOP/EOL to a multiple of four bytes. At most 40 bytes."""
        out = bytearray()
        if self.mss is not None:
            out += _MSS.pack(TCPOPT_MSS, 4, self.mss)
        if self.sack_permitted and self.timestamp is not None:
            out += b"\x04\x02\x08\x0a" + _TS.pack(*self.timestamp)
        elif self.timestamp is not None:
            out += _TS_PREFIX + _TS.pack(*self.timestamp)
        elif self.sack_permitted:
            out += b"\x01\x01\x04\x02"
        if self.wscale is not None:
            out += bytes((TCPOPT_NOP, TCPOPT_WSCALE, 3, self.wscale))
        if self.sack:
            out += bytes((TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK, 2 + 8 * len(self.sack)))
            for left, right in self.sack:
                out += _TS.pack(left, right)
        for kind, data in self.unknown:
            out += bytes((kind, 2 + len(data))) + data
        while len(out) % 4:
            out.append(TCPOPT_EOL)
        if len(out) > 40:
            raise ValueError(f"TCP options take {len(out)} bytes; at most 40 fit")
        return bytes(out)


#: the option block of Linux's SYN and SYN-ACK (MSS, SACK-permitted, timestamps, NOP, window
#: scale), 20 bytes with the variable fields zeroed, and the mask that zeroes them
_LINUX_SYN = bytes.fromhex("02040000" "0402080a" "0000000000000000" "01030300")
_LINUX_SYN_MASK = int.from_bytes(bytes.fromhex("ffff0000" "ffffffff" "0000000000000000" "ffffff00"))
_LINUX_SYN_INT = int.from_bytes(_LINUX_SYN)
_LINUX_SYN_FIELDS = struct.Struct("!2xH4xII3xB")
_LINUX_SYN_PACK = struct.Struct("!2sH4sII3sB")


def syn_options(mss: int, wscale: int | None, sack_permitted: bool,
                timestamp: tuple[int, int] | None) -> bytes:
    """``TCPOptions(mss, wscale, sack_permitted, timestamp=timestamp).to_bytes()``, the
    options of a SYN or SYN-ACK; the usual set (all four, as Linux's) in one step."""
    if wscale is not None and sack_permitted and timestamp is not None:
        return _LINUX_SYN_PACK.pack(b"\x02\x04", mss, b"\x04\x02\x08\x0a", timestamp[0],
                                    timestamp[1], b"\x01\x03\x03", wscale)
    return TCPOptions(mss=mss, wscale=wscale, sack_permitted=sack_permitted,
                      timestamp=timestamp).to_bytes()


def parse_options(data: Buffer) -> TCPOptions:
    """Decode an option block. Raises :class:`MalformedPacket` (``bad_option``) for a length
    that runs past the block or is below 2, or a known option of the wrong length. An option
    given twice counts once, with the value of its last occurrence (as Linux reads them)."""
    mv = memoryview(data)
    n = len(mv)
    if n == 20 and int.from_bytes(mv) & _LINUX_SYN_MASK == _LINUX_SYN_INT:
        # Linux's SYN, as every connection from it opens: the walk below, in one step
        f = _LINUX_SYN_FIELDS.unpack(mv)  # MSS, TSval, TSecr, window scale
        return TCPOptions(f[0], f[3], True, (), (f[1], f[2]), ())
    i = 0
    mss: int | None = None
    wscale: int | None = None
    sack_perm = False
    sack: list[tuple[int, int]] = []
    ts: tuple[int, int] | None = None
    unknown: list[tuple[int, bytes]] = []
    while i < n:
        kind = mv[i]
        if kind == TCPOPT_EOL:
            break
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise MalformedPacket("bad_option", f"option {kind} has no length byte")
        length = mv[i + 1]
        if length < 2 or i + length > n:
            raise MalformedPacket("bad_option", f"option {kind} length {length} at {i} of {n}")
        body = mv[i + 2 : i + length]
        if kind == TCPOPT_MSS:
            if length != 4:
                raise MalformedPacket("bad_option", f"MSS option length {length}")
            mss = (body[0] << 8) | body[1]
        elif kind == TCPOPT_WSCALE:
            if length != 3:
                raise MalformedPacket("bad_option", f"window scale option length {length}")
            wscale = body[0]
        elif kind == TCPOPT_SACK_PERM:
            if length != 2:
                raise MalformedPacket("bad_option", f"SACK-permitted option length {length}")
            sack_perm = True
        elif kind == TCPOPT_SACK:
            if (length - 2) % 8 or length < 10:
                raise MalformedPacket("bad_option", f"SACK option length {length}")
            for j in range(0, length - 2, 8):
                sack.append(_TS.unpack_from(body, j))
        elif kind == TCPOPT_TIMESTAMP:
            if length != 10:
                raise MalformedPacket("bad_option", f"timestamp option length {length}")
            ts = _TS.unpack_from(body)
        else:
            unknown.append((kind, bytes(body)))
        i += length
    return TCPOptions(mss, wscale, sack_perm, tuple(sack), ts, tuple(unknown))


@attrs.frozen(slots=True)
class TCPHeader:
    """A TCP header. ``to_bytes`` computes the checksum when ``checksum`` is None (the
    addresses are then required) and the data offset from the options when ``data_offset`` is
    None. A parsed header keeps the data offset it arrived with: re-encoding it gives a header
    of that length (options padded with EOL), so ``header_length`` is always the length
    ``to_bytes`` writes; to re-encode at the options' own length, evolve it with
    ``data_offset=None``."""

    sport: int
    dport: int
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 0
    checksum: int | None = None
    urgent: int = 0
    options: TCPOptions = TCPOptions()
    #: in 32-bit words; None: computed from the options
    data_offset: int | None = None

    @property
    def header_length(self) -> int:
        if self.data_offset is not None:
            return self.data_offset * 4
        return TCP_MIN_HLEN + len(self.options.to_bytes())

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)

    @classmethod
    def from_bytes(
        cls,
        data: Buffer,
        *,
        src: int | None = None,
        dst: int | None = None,
    ) -> TCPHeader:
        """Parse and validate the header at the start of ``data`` (a whole segment). With
        ``src`` and ``dst`` the checksum is verified over all of ``data``. Raises
        :class:`MalformedPacket`: ``truncated``, ``bad_offset``, ``bad_option``,
        ``bad_checksum``."""
        n = len(data)
        if n < TCP_MIN_HLEN:
            raise MalformedPacket("truncated", f"{n} bytes is shorter than a TCP header")
        sport, dport, seq, ack, off_flags, window, csum, urg = TCP_HEADER.unpack_from(data)
        doff = off_flags >> 12
        if doff < 5 or doff * 4 > n:
            raise MalformedPacket("bad_offset", f"data offset {doff} with {n} bytes")
        if src is not None and dst is not None and not tcp_checksum_ok(src, dst, data):
            raise MalformedPacket("bad_checksum")
        options = parse_options(memoryview(data)[TCP_MIN_HLEN : doff * 4])
        return cls(sport, dport, seq, ack, off_flags & TCP_FLAG_MASK, window, csum, urg,
                   options, doff)

    def to_bytes(
        self, payload: Buffer = b"", *, src: int | None = None, dst: int | None = None
    ) -> bytes:
        """Header plus ``payload``. The checksum is computed when ``self.checksum`` is None,
        which needs ``src`` and ``dst``."""
        opts = self.options.to_bytes()
        hlen = TCP_MIN_HLEN + len(opts)
        if self.data_offset is None:
            doff = hlen // 4
        else:
            doff = self.data_offset
            if not 5 <= doff <= 15 or doff * 4 < hlen:
                raise ValueError(
                    f"data offset {doff} does not hold a {hlen}-byte header with these options; "
                    f"use attrs.evolve(header, data_offset=None) to size it from the options"
                )
            hlen = doff * 4  # the option area keeps its length: EOL (zero) padding
        seg = bytearray(hlen + len(payload))
        TCP_HEADER.pack_into(
            seg, 0, self.sport, self.dport, self.seq & 0xFFFFFFFF, self.ack & 0xFFFFFFFF,
            (doff << 12) | (self.flags & TCP_FLAG_MASK), self.window,
            0 if self.checksum is None else self.checksum, self.urgent,
        )
        seg[TCP_MIN_HLEN : TCP_MIN_HLEN + len(opts)] = opts
        seg[hlen:] = payload
        if self.checksum is None:
            if src is None or dst is None:
                raise ValueError("give src and dst to compute the TCP checksum")
            c = tcp_checksum(src, dst, seg)
            seg[16] = c >> 8
            seg[17] = c & 0xFF
        return bytes(seg)

    def __str__(self) -> str:
        return (f"{self.sport} > {self.dport} [{flags_str(self.flags)}] seq {self.seq} "
                f"ack {self.ack} win {self.window}")
