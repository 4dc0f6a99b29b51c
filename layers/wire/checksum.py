"""The Internet checksum (RFC 1071) without a Python loop over bytes.

``int.from_bytes(data)`` reads the whole buffer as one big number; because 2**16 == 1
(mod 0xFFFF), that number modulo 0xFFFF is the ones'-complement sum of its 16-bit words.

Two things make it cheaper than ``int.from_bytes(data, "big") % 0xFFFF``:

* **The remainder is folded first.** CPython divides a big number by a one-digit divisor one
  30-bit digit at a time, each step a hardware division (tens of cycles, one after the other):
  for 1500 bytes that is most of the time. Since 2**s == 1 (mod 0xFFFF) for any ``s`` that is
  a multiple of 16, ``(x >> s) + (x & (2**s - 1))`` has the same remainder as ``x`` and half
  its digits; a fold or two (shifts, masks and additions: linear, no division) leave at most
  512 bytes to divide.
* **The bytes are read little-endian** (a little cheaper in CPython). That number is the
  big-endian one with every 16-bit word's bytes swapped, i.e. 256 times it modulo 0xFFFF
  (256 * 256 == 1), so the sum is multiplied by 256 at the end; an odd trailing byte lands
  in the low half of its word, exactly RFC 1071's zero padding.

For a 1460-byte segment this takes about half the time of the plain remainder, though about
8 % more instructions (a division is one instruction of tens of cycles): ``tests/core/
bench_checksum.py`` prints both, and says how to count instructions with cachegrind. The
property tests in ``tests/core/test_wire.py`` hold it to a word-by-word reference.
"""

from __future__ import annotations

Buffer = bytes | bytearray | memoryview


_from_bytes = int.from_bytes
#: fold while the number has more bits than this (below it one division is cheaper)
_FOLD_ABOVE = 4096
#: masks ``2**s - 1`` by ``s`` (multiples of 64 bits); only small ones are kept
_MASKS: dict[int, int] = {}
_MASK_CACHE_BITS = 1 << 15


def _mask(bits: int) -> int:
    m = (1 << bits) - 1
    if bits <= _MASK_CACHE_BITS:
        _MASKS[bits] = m
    return m


def ones_sum(data: Buffer, initial: int = 0) -> int:
    """The 16-bit ones'-complement sum of ``data`` plus ``initial`` (an earlier partial sum).

    An odd trailing byte is padded with zero, as RFC 1071 requires. The result is in
    ``0..0xFFFF``; 0xFFFF stands for a non-zero sum that is a multiple of 0xFFFF.
    """
    x = _from_bytes(data, "little")
    bits = len(data) << 3
    if bits > _FOLD_ABOVE:
        masks = _MASKS
        while bits > _FOLD_ABOVE:
            s = ((bits >> 1) + 63) & ~63  # at least half, a multiple of 16
            m = masks.get(s)
            if m is None:
                m = _mask(s)
            x = (x >> s) + (x & m)
            bits = s + 1
    if not x and not initial:
        return 0
    s = (((x % 0xFFFF) << 8) + initial) % 0xFFFF
    return s if s else 0xFFFF


def checksum(data: Buffer, initial: int = 0) -> int:
    """The Internet checksum of ``data`` (complement of :func:`ones_sum`)."""
    return ~ones_sum(data, initial) & 0xFFFF


def verify(data: Buffer, initial: int = 0) -> bool:
    """True when ``data`` (which includes its checksum field) sums to all ones."""
    return ones_sum(data, initial) == 0xFFFF


def pseudo_header_sum(src: int, dst: int, protocol: int, length: int) -> int:
    """The partial sum of the IPv4 pseudo-header used by UDP and TCP checksums."""
    return (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + protocol + length


def fold(value: int) -> int:
    """Fold a partial sum (any size) to 16 bits, without complementing."""
    if value == 0:
        return 0
    s = value % 0xFFFF
    return s if s else 0xFFFF
