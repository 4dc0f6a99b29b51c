"""TCP over IPv6 on a link with checksum offload and TSO: segments leave with partial checksums
(csum_start at the IPv6 header's end) and large writes as GSO_TCPV6 super-segments, in pieces
(the payload a view beside the headers). The link here does what the device does (checks the
partial sum, cuts, completes checksums) and the far end checks every checksum in software.
The TAP version against Linux is tests/tcp/test_tcp6_offload_linux.py."""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
from test_transports6 import A4, A6, B4, B6, PLUGINS, Sink

from layers.links.base import GSO_TCPV6, Gather, Link, LinkWrapper, TxOffload
from layers.virtual import VirtualNetwork
from layers.wire.checksum import checksum, fold
from layers.wire.ethernet import ETH_HLEN
from layers.wire.ipv6 import ANY6, IPV6_HLEN, ip6, pseudo_header_sum6
from layers.wire.tcp import TCP_CSUM_OFFSET

SIZE = 3 << 20


class OffloadLink(LinkWrapper):
    """A memory link end claiming checksum offload and TSO: it does what a device would
    (:func:`segment`) and records what it was given."""

    def __init__(self, inner: Link) -> None:
        super().__init__(inner)
        self.capabilities = attrs.evolve(inner.capabilities, tx_checksum=True,
                                         gso_max_size=65535)
        self.offloads: list[TxOffload | None] = []
        self.gathered = 0

    def send_gather(self, parts: Gather, offload: TxOffload | None = None) -> None:
        self.gathered += 1
        self.send(b"".join(parts), offload)

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        self.offloads.append(offload)
        if offload is None or not offload.csum_offset:
            self.inner.send(frame)
            return
        # no offload goes on: the far end verifies every checksum in software
        for piece in segment(bytes(frame), offload):
            self.inner.send(piece)


def segment(frame: bytes, offload: TxOffload) -> list[bytes]:
    """What the device does: cut a GSO_TCPV6 super-segment at ``gso_size`` (sequence numbers
    advanced, FIN and PSH on the last piece only, IPv6 payload length per piece) and complete
    each TCP checksum, checking first that the field held the pseudo-header sum."""
    ip = ETH_HLEN
    tcp = ip + IPV6_HLEN
    assert offload.csum_start == IPV6_HLEN and frame[ip] >> 4 == 6
    src = int.from_bytes(frame[ip + 8:ip + 24], "big")
    dst = int.from_bytes(frame[ip + 24:ip + 40], "big")
    hlen = (frame[tcp + 12] >> 4) * 4
    data = frame[tcp + hlen:]
    at = tcp + TCP_CSUM_OFFSET
    partial = int.from_bytes(frame[at:at + 2], "big")
    assert partial == fold(pseudo_header_sum6(src, dst, 6, len(frame) - tcp)), "bad partial sum"
    step = offload.gso_size or max(len(data), 1)
    seq = int.from_bytes(frame[tcp + 4:tcp + 8], "big")
    out = []
    for off in range(0, max(len(data), 1), step):
        chunk = data[off:off + step]
        last = off + step >= len(data)
        header = bytearray(frame[:tcp + hlen])
        header[ip + 4:ip + 6] = (hlen + len(chunk)).to_bytes(2, "big")
        header[tcp + 4:tcp + 8] = ((seq + off) & 0xFFFFFFFF).to_bytes(4, "big")
        if not last:
            header[tcp + 13] &= ~0x09  # FIN, PSH
        header[at:at + 2] = b"\0\0"
        seg = bytes(header[tcp:]) + chunk
        csum = checksum(seg, pseudo_header_sum6(src, dst, 6, len(seg)))
        header[at:at + 2] = csum.to_bytes(2, "big")
        out.append(bytes(header) + chunk)
    return out


def test_tcp_over_ipv6_uses_checksum_offload_and_tcpv6_super_segments() -> None:
    net = VirtualNetwork()
    s: dict[str, Any] = {"ndp.dad_transmits": 0, "tcp.secret": "ab" * 16}
    a = net.new_stack(PLUGINS, settings=s, name="a")
    b = net.new_stack(PLUGINS, settings=s, name="b")
    ends: list[OffloadLink] = []

    def wrap(link: Link) -> Link:
        ends.append(OffloadLink(link))
        return ends[-1]

    ia, ib = net.link(a, b, addresses=(f"{A4}/24", f"{B4}/24"), latency=0.001, wrap=wrap)
    a.add_address(ia, f"{A6}/64")
    b.add_address(ib, f"{B6}/64")
    a.start()
    b.start()
    servers: list[Sink] = []

    def accept() -> Sink:
        servers.append(Sink())
        return servers[-1]

    b.protocol("tcp").listen(accept, ANY6, 80)
    client = Sink()
    conn = a.protocol("tcp").connect(client, ip6(B6), 80)
    assert net.run_until_true(lambda: client.transport is not None and bool(servers), 5)
    payload = bytes(range(251)) * (SIZE // 251)
    client.transport.write(payload)
    client.transport.write_eof()
    assert net.run_until_true(lambda: servers[0].eof, 30)
    assert hashlib.sha256(servers[0].data).digest() == hashlib.sha256(payload).digest()

    sent = [o for o in ends[0].offloads if o is not None]
    supers = [o for o in sent if o.gso_size]
    assert supers, "no super-segment left the sender"
    assert all(o.gso_type == GSO_TCPV6 and o.gso_size == conn.mss for o in supers)
    assert all(o.csum_start == IPV6_HLEN and o.csum_offset == TCP_CSUM_OFFSET for o in sent)
    # most of the data went in super-segments, so far fewer frames than MSS-sized segments
    assert len(ends[0].offloads) < SIZE // conn.mss // 4
    assert ends[0].gathered > len(supers) // 2  # the pieces reached the link unjoined
    assert b.counter("tcp")["InCsumErrors"] == 0
    assert a.counter("ipv4")["OutRequests"] == 0
