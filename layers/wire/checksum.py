"""The Internet checksum (RFC 1071) without a Python loop over bytes.

``int.from_bytes(data)`` reads the whole buffer as one big number; because 2**16 == 1
(mod 0xFFFF), that number modulo 0xFFFF is the ones'-complement sum of its 16-bit words.

Two things make it cheaper than ``int.from_bytes(data, "big") % 0xFFFF``:

* **The remainder is folded first.** CPython divides a big number by a one-digit divisor one
  30-bit digit at a time, each step a hardware division (tens of cycles, one after the other):
  for 1500 bytes that is most of the time. Since 2**s == 1 (mod 0xFFFF) for any ``s`` that is
  a multiple of 16, ``(x >> s) + (x & (2**s - 1))`` has the same remainder as ``x`` and half
  its digits; a few folds (shifts, masks and additions: linear, no division) leave at most
  256 bytes to divide. Which folds a length takes (their shifts and masks) is worked out once
  per 16 bytes of length and kept, so a segment pays for the folds alone.
* **The bytes are read little-endian** (a little cheaper in CPython). That number is the
  big-endian one with every 16-bit word's bytes swapped, i.e. 256 times it modulo 0xFFFF
  (256 * 256 == 1), so the sum is multiplied by 256 at the end; an odd trailing byte lands
  in the low half of its word, exactly RFC 1071's zero padding.

For a 1480-byte segment this takes 2.7 us here against 4.0 us for one remainder of the whole
number (and 3.1 us when the folds stopped at 512 bytes and were worked out on every call),
with about as many instructions (a division is one instruction of tens of cycles):
``tests/core/bench_checksum.py`` prints both, and says how to count instructions with
cachegrind. The property tests in ``tests/core/test_wire.py`` hold it to a word-by-word
reference.
"""

from __future__ import annotations

Buffer = bytes | bytearray | memoryview


_from_bytes = int.from_bytes
#: fold while the number has more bits than this (below it one division is cheaper)
_FOLD_ABOVE = 2048
#: masks ``2**s - 1`` by ``s`` (multiples of 64 bits); only small ones are kept
_MASKS: dict[int, int] = {}
_MASK_CACHE_BITS = 1 << 15
#: the folds of a length, by ``(length + 15) >> 4`` (they depend on nothing else); kept for
#: lengths up to a 64 KiB packet's
_FOLDS: dict[int, tuple[tuple[int, int], ...]] = {}
_FOLDS_CACHED = (1 << 16) >> 4


def _mask(bits: int) -> int:
    m = (1 << bits) - 1
    if bits <= _MASK_CACHE_BITS:
        _MASKS[bits] = m
    return m


def _folds(length: int) -> tuple[tuple[int, int], ...]:
    """``((shift, mask), ...)``: the folds that bring a ``length``-byte number to at most
    ``_FOLD_ABOVE`` bits."""
    bits = length << 3
    folds = []
    while bits > _FOLD_ABOVE:
        s = ((bits >> 1) + 63) & ~63  # at least half, a multiple of 16 (of 64: fewer masks)
        m = _MASKS.get(s)
        if m is None:
            m = _mask(s)
        folds.append((s, m))
        bits = s + 1
    plan = tuple(folds)
    key = (length + 15) >> 4  # (4 * length + 63) & ~63, the first shift, depends on it alone
    if key <= _FOLDS_CACHED:
        _FOLDS[key] = plan
    return plan


def ones_sum(data: Buffer, initial: int = 0) -> int:
    """The 16-bit ones'-complement sum of ``data`` plus ``initial`` (an earlier partial sum).

    An odd trailing byte is padded with zero, as RFC 1071 requires. The result is in
    ``0..0xFFFF``; 0xFFFF stands for a non-zero sum that is a multiple of 0xFFFF.
    """
    x = _from_bytes(data, "little")
    n = len(data)
    if n > _FOLD_ABOVE >> 3:
        for s, m in _FOLDS.get((n + 15) >> 4) or _folds(n):
            x = (x >> s) + (x & m)
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
