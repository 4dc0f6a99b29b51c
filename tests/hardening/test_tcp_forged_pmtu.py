"""A forged ICMP "fragmentation needed" with MTU 68 cannot shrink a connection's segments.

IPv4 raises a reported path MTU to its minimum (552, Linux's min_pmtu) and TCP follows the
path MTU IPv4 recorded, as Linux's tcp_v4_mtu_reduced does; an error quoting a sequence
number outside SND.UNA..SND.NXT is ignored (RFC 5927).
"""

from __future__ import annotations

from typing import Any

from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire import ICMP_DEST_UNREACH, PROTO_ICMP, PROTO_TCP, build_icmp, build_ipv4_header
from layers.wire.addr import ip4

A, B = ip4("10.0.0.1"), ip4("10.0.0.2")
ROUTER = ip4("10.0.0.254")


class Sink:
    def __init__(self) -> None:
        self.got = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got += len(data)

    def eof_received(self) -> bool:
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        pass


def forged_frag_needed(a: Stack, conn: Any, seq: int, mtu: int) -> bytes:
    """An Ethernet frame to ``a``: ICMP type 3 code 4 from a router, quoting a segment of
    ``conn`` with sequence number ``seq``."""
    iface = a.interfaces[0]
    quoted_tcp = (conn.lport.to_bytes(2, "big") + conn.rport.to_bytes(2, "big")
                  + (seq & 0xFFFFFFFF).to_bytes(4, "big"))
    quoted = build_ipv4_header(A, B, PROTO_TCP, 1460, flags_frag=0x4000) + quoted_tcp
    icmp = build_icmp(ICMP_DEST_UNREACH, 4, mtu, quoted)
    ip = build_ipv4_header(ROUTER, A, PROTO_ICMP, len(icmp))
    assert iface.mac is not None
    return iface.mac + bytes.fromhex("02aabbccddee") + b"\x08\x00" + ip + icmp


def run(mtu: int, quote: str) -> tuple[Stack, Any, int]:
    net = VirtualNetwork()
    a, b = net.pair(["arp", "ipv4", "icmp", "tcp"], settings={"tcp.secret": "cd" * 16},
                    latency=0.005)
    sink = Sink()
    b.protocol("tcp").listen(lambda: sink, 0, 5001)
    client = Sink()
    conn = a.protocol("tcp").connect(client, B, 5001)
    assert net.run_until_true(lambda: client.transport is not None, timeout=10)
    conn.write(bytes(100_000))
    net.run_until_true(lambda: conn.snd_max - conn.snd_una > 5000, timeout=10)
    seq = {"in_flight": conn.snd_una, "acked": conn.snd_una - 100_000,
           "unsent": conn.snd_max + 100_000}[quote]
    a.receive(a.interfaces[0], forged_frag_needed(a, conn, seq, mtu))
    mss_after = conn.mss
    segs_before = a.counters["tcp"]["OutSegs"]
    assert net.run_until_true(lambda: sink.got == 100_000, timeout=60)
    return a, conn, mss_after if segs_before >= 0 else 0


def test_a_forged_mtu_of_68_is_clamped_as_linux_does() -> None:
    a, conn, mss = run(68, "in_flight")
    assert a.counters["icmp"]["errors_delivered"] == 1
    assert a.protocol("ipv4").path_mtu(B) == 552
    # 552 - 40 bytes of headers - 12 of timestamps: never the 48 a raw 68 would give
    assert mss == conn.mss == 500
    # 100 kB took about 200 segments (2,084 with an MSS of 48)
    assert a.counters["tcp"]["OutSegs"] < 400


def test_an_error_quoting_data_not_in_flight_is_ignored() -> None:
    for quote in ("acked", "unsent"):
        a, conn, mss = run(600, quote)
        assert a.counters["tcp"].drops["icmp_out_of_window"] == 1
        assert mss == conn.mss > 1400
        assert a.protocol("ipv4").path_mtu(B) == 1500  # nor recorded by IP (as in Linux)
