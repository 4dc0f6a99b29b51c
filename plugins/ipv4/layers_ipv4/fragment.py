"""Splitting one IPv4 datagram into fragments (RFC 791 section 3.2, "Fragmentation").

Pure functions over bytes: no stack, no clock. The plugin calls :func:`fragment` on the send
path; the tests call it directly as well.
"""

from __future__ import annotations

from layers.wire.checksum import checksum
from layers.wire.ipv4 import IP_DF, IP_MF, IP_OFFMASK, IPV4_HEADER, IPV4_MIN_HLEN

Buffer = bytes | bytearray | memoryview

#: option types that carry no length byte
_OPT_END = 0
_OPT_NOP = 1
#: the "copied" flag: the option must appear in every fragment
_OPT_COPIED = 0x80


def copied_options(options: Buffer) -> bytes:
    """The options that must be repeated in every fragment after the first (those with the
    copied flag, such as source routes and security), padded to a multiple of 4 bytes.

    Malformed option lists are cut at the first option that does not fit: we never act on
    options, we only must not copy garbage into later fragments.
    """
    out = bytearray()
    i, n = 0, len(options)
    while i < n:
        kind = options[i]
        if kind == _OPT_END:
            break
        if kind == _OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            break
        length = options[i + 1]
        if length < 2 or i + length > n:
            break
        if kind & _OPT_COPIED:
            out += options[i : i + length]
        i += length
    out += b"\x00" * (-len(out) % 4)
    return bytes(out)


def _header(
    src: int,
    dst: int,
    protocol: int,
    ttl: int,
    tos: int,
    ident: int,
    frag_word: int,
    total: int,
    options: bytes,
) -> bytes:
    hlen = IPV4_MIN_HLEN + len(options)
    head = IPV4_HEADER.pack(
        0x40 | (hlen >> 2), tos, total, ident, frag_word, ttl, protocol, 0, src, dst
    ) + options
    csum = checksum(head)
    return head[:10] + csum.to_bytes(2, "big") + head[12:]


def fragment(
    src: int,
    dst: int,
    protocol: int,
    payload: Buffer,
    mtu: int,
    *,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    options: bytes = b"",
    flags: int = 0,
    offset: int = 0,
) -> list[bytes]:
    """Cut ``payload`` into complete IPv4 packets of at most ``mtu`` bytes each.

    Every fragment but the last carries a multiple of 8 data bytes and MF. The first carries
    all ``options`` (already padded to a multiple of 4), the others only the copied ones.
    ``flags``/``offset`` describe the datagram being cut (non-zero when re-fragmenting a
    fragment: its MF then stays on the last piece). DF in ``flags`` is ignored: deciding
    whether fragmentation is allowed is the caller's job.

    Raises ValueError when ``mtu`` leaves no room for 8 data bytes after a header.
    """
    if len(options) % 4:
        raise ValueError("options must be padded to a multiple of 4 bytes")
    later_options = copied_options(options) if options else b""
    data = memoryview(payload)
    n = len(data)
    out: list[bytes] = []
    pos = 0
    last_mf = flags & IP_MF
    keep = flags & ~(IP_MF | IP_DF | IP_OFFMASK) & 0xE000
    first = True
    while True:
        opts = options if first else later_options
        hlen = IPV4_MIN_HLEN + len(opts)
        room = (mtu - hlen) & ~7
        if room <= 0:
            raise ValueError(f"an MTU of {mtu} leaves no room for fragment data")
        size = min(room, n - pos)
        more = pos + size < n
        frag_word = keep | (IP_MF if more else last_mf) | (offset + (pos >> 3))
        out.append(
            _header(src, dst, protocol, ttl, tos, ident, frag_word, hlen + size, opts)
            + data[pos : pos + size]
        )
        pos += size
        first = False
        if not more:
            return out
