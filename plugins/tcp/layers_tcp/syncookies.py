"""SYN cookies (RFC 4987 section 3.6), encoded as Linux's net/ipv4/syncookies.c does.

When a listener's SYN queue is full (``tcp.syncookies`` 1, Linux's default) or always
(``tcp.syncookies`` 2), the SYN-ACK carries all the state in its sequence number and keeps
none: ISN = H1(addresses, ports) + the client's ISN + (minute << 24) + ((H2(addresses, ports,
minute) + MSS index) mod 2**24), with the MSS rounded down to Linux's table (536, 1300, 1440,
1460). The ACK that returns ISN + 1 proves the client saw the SYN-ACK; a cookie older than two
minutes is refused. Window scale, SACK-permitted (and ECN, not used here) ride in the low six
bits of our timestamp value, which the client echoes: without timestamps, a cookie connection
has neither window scaling nor SACK, as in Linux.
"""

from __future__ import annotations

import hashlib
import struct

#: Linux's msstab for IPv4 (the MSS a cookie can encode: two bits)
MSS_TABLE = (536, 1300, 1440, 1460)
COOKIE_BITS = 24
COOKIE_MASK = (1 << COOKIE_BITS) - 1
#: minutes a cookie stays valid (Linux's MAX_SYNCOOKIE_AGE)
MAX_AGE = 2
#: how long after a SYN queue overflow cookie ACKs are still checked (Linux's
#: TCP_SYNCOOKIE_VALID, 2 minutes), in seconds
VALID_AFTER_OVERFLOW = 120.0
MASK = 0xFFFFFFFF
#: the low bits of TSval: window scale (0xf: none), SACK-permitted, ECN
TS_OPT_WSCALE_MASK = 0x0F
TS_OPT_SACK = 1 << 4
TS_OPT_ECN = 1 << 5
TS_OPT_BITS = 6
_ADDRS = struct.Struct("!IIHHI")


class SynCookies:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _hash(self, which: int, src: int, dst: int, sport: int, dport: int, count: int) -> int:
        if src > 0xFFFFFFFF or dst > 0xFFFFFFFF:  # IPv6 addresses: 16 bytes each
            data = (src.to_bytes(16, "big") + dst.to_bytes(16, "big")
                    + _ADDRS.pack(0, 0, sport, dport, count) + bytes((which,)))
        else:
            data = _ADDRS.pack(src, dst, sport, dport, count) + bytes((which,))
        return int.from_bytes(hashlib.blake2s(data, key=self._key, digest_size=4).digest())

    @staticmethod
    def minute(now: float) -> int:
        return int(now // 60)

    def make(self, now: float, src: int, dst: int, sport: int, dport: int, client_isn: int,
             mss: int) -> tuple[int, int]:
        """(our ISN, the MSS it encodes) for a SYN from ``src:sport`` to ``dst:dport``."""
        index = 0
        for i, value in enumerate(MSS_TABLE):
            if value <= mss:
                index = i
        count = self.minute(now)
        cookie = (self._hash(1, src, dst, sport, dport, 0) + client_isn + (count << COOKIE_BITS)
                  + ((self._hash(2, src, dst, sport, dport, count) + index) & COOKIE_MASK))
        return cookie & MASK, MSS_TABLE[index]

    def check(self, now: float, src: int, dst: int, sport: int, dport: int, client_isn: int,
              cookie: int) -> int | None:
        """The MSS encoded in ``cookie`` (our ISN, the ACK's number minus one) for the
        connection whose client ISN was ``client_isn``; None if forged or too old."""
        diff = (cookie - self._hash(1, src, dst, sport, dport, 0) - client_isn) & MASK
        count = self.minute(now)
        # the cookie keeps the minute's low 8 bits: its age is taken modulo 256, and the
        # hash is checked with the whole minute it was made in (as Linux's
        # check_tcp_syn_cookie), not those 8 bits, which differ from it after 256 minutes
        age = (count - (diff >> COOKIE_BITS)) & (MASK >> COOKIE_BITS)
        if age > MAX_AGE or age > count:  # too old, or made before the clock began
            return None
        index = (diff - self._hash(2, src, dst, sport, dport, count - age)) & COOKIE_MASK
        return MSS_TABLE[index] if index < len(MSS_TABLE) else None


def encode_ts(tsval: int, wscale: int | None, sack: bool) -> int:
    """Our TSval with the options in its low six bits, never ahead of ``tsval`` (Linux's
    cookie_init_timestamp)."""
    options = (TS_OPT_WSCALE_MASK if wscale is None else wscale) | (TS_OPT_SACK if sack else 0)
    if (tsval & 0x3F) < options:
        tsval -= 1 << TS_OPT_BITS
    return ((tsval & ~0x3F) | options) & MASK


def decode_ts(tsecr: int) -> tuple[int | None, bool]:
    """(peer's window scale or None, SACK-permitted) from the TSecr of the cookie's ACK."""
    wscale = tsecr & TS_OPT_WSCALE_MASK
    return (None if wscale == TS_OPT_WSCALE_MASK else min(wscale, 14)), bool(tsecr & TS_OPT_SACK)
