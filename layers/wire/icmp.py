"""ICMP for IPv4 (RFC 792): the message format, the type and code numbers, the quoted header
inside error messages, and the errno a socket user sees for each error.

Every ICMP message starts with the same 8 bytes::

    type(8) code(8) checksum(16) rest-of-header(32)

The rest-of-header word is identifier/sequence for echo and timestamp messages, the next-hop
MTU for "fragmentation needed" (RFC 1191, low 16 bits), the pointer for parameter problem (top
8 bits), the gateway for redirects, and unused (zero) otherwise. Error messages carry the
offending datagram's IP header and at least the first 8 bytes of its payload; :class:`IcmpQuote`
reads that.
"""

from __future__ import annotations

import errno as _errno
import struct

import attrs

from layers.errors import MalformedPacket
from layers.wire.addr import ip4_str
from layers.wire.checksum import checksum, ones_sum
from layers.wire.ipv4 import IP_MF, IP_OFFMASK, IPV4_HEADER, IPV4_MIN_HLEN, IPV4_MIN_MTU

#: type, code, checksum, rest-of-header (one 32-bit word)
ICMP_HEADER = struct.Struct("!BBHI")
#: type, code, checksum, identifier, sequence (echo and timestamp messages)
ICMP_ECHO_HEADER = struct.Struct("!BBHHH")
ICMP_HLEN = 8
#: bytes of the offending datagram's payload an error must quote at least (RFC 792)
ICMP_QUOTE_MIN_DATA = 8

# --- types (RFC 792, RFC 950, RFC 1256) -----------------------------------------------------
ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_SOURCE_QUENCH = 4
ICMP_REDIRECT = 5
ICMP_ECHO = 8
ICMP_ROUTER_ADVERT = 9
ICMP_ROUTER_SOLICIT = 10
ICMP_TIME_EXCEEDED = 11
ICMP_PARAMETERPROB = 12
ICMP_TIMESTAMP = 13
ICMP_TIMESTAMPREPLY = 14
ICMP_INFO_REQUEST = 15
ICMP_INFO_REPLY = 16
ICMP_ADDRESS = 17
ICMP_ADDRESSREPLY = 18

#: the types that are error messages (they quote a datagram; no error is sent about them)
ICMP_ERROR_TYPES = frozenset(
    {ICMP_DEST_UNREACH, ICMP_SOURCE_QUENCH, ICMP_REDIRECT, ICMP_TIME_EXCEEDED, ICMP_PARAMETERPROB}
)

# --- destination unreachable codes --------------------------------------------------------
ICMP_NET_UNREACH = 0
ICMP_HOST_UNREACH = 1
ICMP_PROT_UNREACH = 2
ICMP_PORT_UNREACH = 3
ICMP_FRAG_NEEDED = 4
ICMP_SR_FAILED = 5
ICMP_NET_UNKNOWN = 6
ICMP_HOST_UNKNOWN = 7
ICMP_HOST_ISOLATED = 8
ICMP_NET_ANO = 9
ICMP_HOST_ANO = 10
ICMP_NET_UNR_TOS = 11
ICMP_HOST_UNR_TOS = 12
ICMP_PKT_FILTERED = 13
ICMP_PREC_VIOLATION = 14
ICMP_PREC_CUTOFF = 15

# --- time exceeded codes -------------------------------------------------------------------
ICMP_EXC_TTL = 0
ICMP_EXC_FRAGTIME = 1

#: destination-unreachable code -> the errno a socket sees (the table Linux uses)
ICMP_UNREACH_ERRNO: tuple[int, ...] = (
    _errno.ENETUNREACH,  # 0 network unreachable
    _errno.EHOSTUNREACH,  # 1 host unreachable
    _errno.ENOPROTOOPT,  # 2 protocol unreachable
    _errno.ECONNREFUSED,  # 3 port unreachable
    _errno.EMSGSIZE,  # 4 fragmentation needed and DF set
    _errno.EOPNOTSUPP,  # 5 source route failed
    _errno.ENETUNREACH,  # 6 destination network unknown
    _errno.EHOSTDOWN,  # 7 destination host unknown
    _errno.ENONET,  # 8 source host isolated
    _errno.ENETUNREACH,  # 9 network administratively prohibited
    _errno.EHOSTUNREACH,  # 10 host administratively prohibited
    _errno.ENETUNREACH,  # 11 network unreachable for TOS
    _errno.EHOSTUNREACH,  # 12 host unreachable for TOS
    _errno.EHOSTUNREACH,  # 13 communication administratively prohibited
    _errno.EHOSTUNREACH,  # 14 host precedence violation
    _errno.EHOSTUNREACH,  # 15 precedence cutoff in effect
)

#: the next-hop MTU "plateaus" of RFC 1191 section 7, for routers that report an MTU of 0
MTU_PLATEAUS = (32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68)


def icmp_errno(icmp_type: int, code: int) -> int:
    """The errno a socket user sees for an ICMP error of ``icmp_type``/``code``.

    Destination unreachable maps by code (ECONNREFUSED for port unreachable, EHOSTUNREACH for
    host unreachable...); time exceeded gives EHOSTUNREACH and parameter problem EPROTO, as
    Linux does. Anything else (a source quench, an unknown code) gives EHOSTUNREACH.
    """
    if icmp_type == ICMP_DEST_UNREACH and 0 <= code < len(ICMP_UNREACH_ERRNO):
        return ICMP_UNREACH_ERRNO[code]
    if icmp_type == ICMP_PARAMETERPROB:
        return _errno.EPROTO
    return _errno.EHOSTUNREACH


def plateau_mtu(total_length: int) -> int:
    """The largest RFC 1191 plateau below ``total_length`` (at least IPv4's minimum MTU)."""
    for plateau in MTU_PLATEAUS:
        if plateau < total_length:
            return plateau
    return IPV4_MIN_MTU


_TYPE_NAMES = {
    ICMP_ECHOREPLY: "echo reply",
    ICMP_DEST_UNREACH: "destination unreachable",
    ICMP_SOURCE_QUENCH: "source quench",
    ICMP_REDIRECT: "redirect",
    ICMP_ECHO: "echo request",
    ICMP_ROUTER_ADVERT: "router advertisement",
    ICMP_ROUTER_SOLICIT: "router solicitation",
    ICMP_TIME_EXCEEDED: "time exceeded",
    ICMP_PARAMETERPROB: "parameter problem",
    ICMP_TIMESTAMP: "timestamp request",
    ICMP_TIMESTAMPREPLY: "timestamp reply",
    ICMP_INFO_REQUEST: "information request",
    ICMP_INFO_REPLY: "information reply",
    ICMP_ADDRESS: "address mask request",
    ICMP_ADDRESSREPLY: "address mask reply",
}


def icmp_type_name(icmp_type: int) -> str:
    return _TYPE_NAMES.get(icmp_type, f"type {icmp_type}")


@attrs.frozen(slots=True)
class IcmpMessage:
    """One ICMP message. ``rest`` is the 32-bit rest-of-header word; the properties read it
    the way each type uses it. ``to_bytes`` fills the checksum in when ``checksum`` is None."""

    type: int
    code: int = 0
    rest: int = 0
    payload: bytes = b""
    checksum: int | None = None

    # --- the rest-of-header word, per type ----------------------------------------------
    @property
    def ident(self) -> int:
        """Echo/timestamp identifier."""
        return self.rest >> 16

    @property
    def seq(self) -> int:
        """Echo/timestamp sequence number."""
        return self.rest & 0xFFFF

    @property
    def mtu(self) -> int:
        """Next-hop MTU of "fragmentation needed" (0 from routers older than RFC 1191)."""
        return self.rest & 0xFFFF

    @property
    def pointer(self) -> int:
        """The offending octet of a parameter problem."""
        return self.rest >> 24

    @property
    def gateway(self) -> int:
        """The gateway address of a redirect."""
        return self.rest

    @property
    def is_error(self) -> bool:
        return self.type in ICMP_ERROR_TYPES

    # --- constructors ---------------------------------------------------------------------
    @classmethod
    def echo(
        cls, ident: int, seq: int, payload: bytes = b"", *, reply: bool = False
    ) -> IcmpMessage:
        rest = ((ident & 0xFFFF) << 16) | (seq & 0xFFFF)
        return cls(ICMP_ECHOREPLY if reply else ICMP_ECHO, 0, rest, bytes(payload))

    @classmethod
    def error(cls, icmp_type: int, code: int, quote: bytes, *, rest: int = 0) -> IcmpMessage:
        """An error message quoting ``quote`` (the offending IP header and payload start)."""
        return cls(icmp_type, code, rest, bytes(quote))

    # --- wire -----------------------------------------------------------------------------
    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, *, verify_checksum: bool = True
    ) -> IcmpMessage:
        """Parse; raises :class:`MalformedPacket` (``truncated``, ``bad_checksum``)."""
        n = len(data)
        if n < ICMP_HLEN:
            raise MalformedPacket("truncated", f"{n} bytes is shorter than an ICMP header")
        if verify_checksum and ones_sum(data) != 0xFFFF:
            raise MalformedPacket("bad_checksum")
        icmp_type, code, csum, rest = ICMP_HEADER.unpack_from(data)
        return cls(icmp_type, code, rest, bytes(data[ICMP_HLEN:]), csum)

    def to_bytes(self) -> bytes:
        head = ICMP_HEADER.pack(
            self.type, self.code, 0 if self.checksum is None else self.checksum, self.rest
        )
        if self.checksum is not None:
            return head + self.payload
        return bytes(build_icmp(self.type, self.code, self.rest, self.payload))

    def quote(self) -> IcmpQuote:
        """The quoted datagram of an error message (raises MalformedPacket if unreadable)."""
        return IcmpQuote.from_bytes(self.payload)

    def __str__(self) -> str:
        return f"ICMP {icmp_type_name(self.type)} code {self.code} ({len(self.payload)} bytes)"


def build_icmp(
    icmp_type: int, code: int, rest: int, payload: bytes | bytearray | memoryview = b""
) -> bytearray:
    """An ICMP message with its checksum, on the fast path (no attrs object)."""
    msg = bytearray(ICMP_HEADER.pack(icmp_type, code, 0, rest))
    msg += payload
    csum = checksum(msg)
    msg[2] = csum >> 8
    msg[3] = csum & 0xFF
    return msg


@attrs.frozen(slots=True)
class IcmpQuote:
    """The datagram an ICMP error quotes: its IP header and the start of its payload.

    The quoted header is not checked for a valid checksum or a total length that matches what
    is present (the quote is truncated by design); it must be IPv4 with a sane IHL and be
    followed by at least 8 bytes of payload (RFC 792), which is where ports and echo
    identifiers live.
    """

    src: int
    dst: int
    protocol: int
    header_length: int
    total_length: int
    ident: int
    #: the 16-bit flags/fragment-offset word
    frag: int
    ttl: int
    #: the quoted IP header, options included
    header: bytes
    #: the quoted payload (the transport header start), at least 8 bytes
    data: bytes

    @property
    def frag_offset(self) -> int:
        return self.frag & IP_OFFMASK

    @property
    def more_fragments(self) -> bool:
        return bool(self.frag & IP_MF)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> IcmpQuote:
        """Parse an error's payload; raises :class:`MalformedPacket` with ``quote_truncated``,
        ``quote_bad_version`` or ``quote_bad_ihl``."""
        n = len(data)
        if n < IPV4_MIN_HLEN + ICMP_QUOTE_MIN_DATA:
            raise MalformedPacket("quote_truncated", f"{n} quoted bytes")
        vihl, _tos, total, ident, frag, ttl, proto, _csum, src, dst = IPV4_HEADER.unpack_from(
            data
        )
        if vihl >> 4 != 4:
            raise MalformedPacket("quote_bad_version", f"quoted IP version {vihl >> 4}")
        hlen = (vihl & 0xF) * 4
        if hlen < IPV4_MIN_HLEN:
            raise MalformedPacket("quote_bad_ihl", f"quoted IHL {vihl & 0xF}")
        if n < hlen + ICMP_QUOTE_MIN_DATA:
            raise MalformedPacket("quote_truncated", f"{n} quoted bytes with a {hlen}-byte header")
        mv = memoryview(data)
        return cls(
            src=src,
            dst=dst,
            protocol=proto,
            header_length=hlen,
            total_length=total,
            ident=ident,
            frag=frag,
            ttl=ttl,
            header=bytes(mv[:hlen]),
            data=bytes(mv[hlen:]),
        )

    def __str__(self) -> str:
        return f"{ip4_str(self.src)} > {ip4_str(self.dst)} proto {self.protocol}"
