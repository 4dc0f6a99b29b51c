"""IPv6, ICMPv6 and NDP between two stacks on the virtual clock: echo (fragmented too),
neighbour discovery and its states, duplicate address detection, extension headers, the
reassembly policies, and header validation counted by reason."""

from __future__ import annotations

import errno
from collections.abc import Generator
from typing import Any

import pytest

from layers.errors import ConfigurationError
from layers.frame import Frame
from layers.hookspecs import hookimpl
from layers.interface import Interface
from layers.links.base import Medium
from layers.protocols import EchoReply, IPDatagram, TransportError
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire.checksum import checksum
from layers.wire.ethernet import ETH_P_IPV6
from layers.wire.ipv6 import (
    ALL_NODES,
    ICMPV6_PARAM_PROB,
    ICMPV6_TIME_EXCEEDED,
    NH_DSTOPTS,
    NH_FRAGMENT,
    NH_HOPOPTS,
    NH_ROUTING,
    build_fragment_header,
    build_icmpv6,
    build_ipv6_header,
    eui64_interface_id,
    ip6,
    ip6_str,
    multicast_mac6,
    pseudo_header_sum6,
    solicited_node,
)

A, B = "2001:db8::1", "2001:db8::2"
P6 = ["ipv6", "icmpv6", "ndp"]
TEST_PROTO = 253


class Recorder:
    """A transport on next header 253 for IPv6 (errors and datagrams), and a tap of every
    IPv6 frame its stack receives."""

    name = "rec6"
    protocol = TEST_PROTO
    ip_versions = (6,)

    def __init__(self) -> None:
        self.received: list[IPDatagram] = []
        self.errors: list[TransportError] = []
        self.frames: list[bytes] = []

    def receive(self, datagram: IPDatagram) -> None:
        self.received.append(datagram)

    def error(self, error: TransportError) -> None:
        self.errors.append(error)

    @hookimpl
    def layers_transport_protocols(self, stack: Stack) -> list[Any]:
        return [self]

    @hookimpl(wrapper=True)
    def layers_frame_received(self, stack: Stack, frame: Frame) -> Generator[None, None, None]:
        data = bytes(frame.data)
        if data[12:14] == b"\x86\xdd":
            self.frames.append(data[14:])
        yield

    def icmp_errors(self, icmp_type: int) -> list[bytes]:
        """ICMPv6 messages of ``icmp_type`` received (from the IPv6 payload on)."""
        return [f[40:] for f in self.frames if f[6] == 58 and f[40] == icmp_type]


def pair(settings: dict[str, Any] | None = None, *, mtu: int = 1500
         ) -> tuple[VirtualNetwork, Stack, Stack, Interface, Interface, Recorder]:
    net = VirtualNetwork()
    rec = Recorder()
    s = {"ndp.dad_transmits": 0, **(settings or {})}
    a = net.new_stack([*P6, rec], name="a", settings=s)
    b = net.new_stack(P6, name="b", settings=s)
    ia, ib = net.link(a, b, addresses=(f"{A}/64", f"{B}/64"), latency=0.001, mtu=mtu)
    a.start()
    b.start()
    net.run_for(0.01)
    return net, a, b, ia, ib, rec


def echo(net: VirtualNetwork, a: Stack, dst: str, size: int = 56, seq: int = 1
         ) -> EchoReply | OSError:
    got: list[EchoReply | OSError] = []
    a.protocol("icmpv6").echo(ip6(dst), ident=7, seq=seq, payload=bytes(range(256)) * (
        size // 256) + bytes(size % 256), callback=got.append, timeout=5.0)
    assert net.run_until_true(lambda: bool(got), timeout=10.0)
    return got[0]


@pytest.mark.parametrize("size", [56, 1452, 4000])
def test_echo_between_two_stacks(size: int) -> None:
    net, a, b, *_ = pair()
    reply = echo(net, a, B, size)
    assert isinstance(reply, EchoReply), reply
    assert reply.src == ip6(B) and reply.size == 8 + size and reply.ttl == 64
    assert b.counter("icmpv6")["out_echo_reps"] == 1
    if size + 48 > 1500:
        assert a.counter("ipv6")["FragCreates"] >= 3
        assert b.counter("ipv6")["ReasmOKs"] == 1 and a.counter("ipv6")["ReasmOKs"] == 1
    else:
        assert b.counter("ipv6")["ReasmReqds"] == 0


def test_echo_to_the_link_local_address_and_all_nodes() -> None:
    net, a, b, _ia, ib, _ = pair()
    ll = next(x for x, _ in ib.addresses6 if x >> 112 == 0xFE80)
    assert ll & 0xFFFFFFFFFFFFFFFF == eui64_interface_id(ib.mac or b"")
    reply = echo(net, a, ip6_str(ll))
    assert isinstance(reply, EchoReply) and reply.src == ll
    reply = echo(net, a, "ff02::1", seq=2)
    assert isinstance(reply, EchoReply) and reply.src == ll  # answered from its link-local
    assert b.counter("ipv6")["InMcastPkts"] >= 1


def test_ndp_resolves_with_one_exchange_and_learns_both_ways() -> None:
    net, a, b, ia, ib, _ = pair()
    assert isinstance(echo(net, a, B), EchoReply)
    ra, rb = ia.resolvers[ETH_P_IPV6], ib.resolvers[ETH_P_IPV6]
    assert ra.entries() and rb.entries()
    (row_a,) = [r for r in a.report()["ndp"] if r["address"] == B]
    assert row_a["state"] == "reachable" and row_a["mac"] is not None
    (row_b,) = [r for r in b.report()["ndp"] if r["address"] == A]
    # b learned a from the solicitation's source option: stale, then delay once used
    assert row_b["state"] in ("stale", "delay")
    assert a.counter("ndp")["tx_solicitations"] == 1
    assert b.counter("ndp")["tx_advertisements"] == 1
    # reachable ages to stale; a later packet goes out at once and moves it to delay,
    # then a unicast probe confirms it
    net.run_for(31.0)
    assert [r["state"] for r in a.report()["ndp"] if r["address"] == B] == ["stale"]
    assert isinstance(echo(net, a, B, seq=2), EchoReply)
    net.run_for(7.0)
    assert [r["state"] for r in a.report()["ndp"] if r["address"] == B] == ["reachable"]
    assert a.counter("ndp")["tx_solicitations"] == 2  # the probe


def test_resolution_failure_reports_unreachable_to_the_transport() -> None:
    net, a, _b, _ia, _ib, rec = pair({"ndp.queue_len": 2})
    for _ in range(4):
        assert a.ip6 is not None
        a.ip6.send(ip6("2001:db8::99"), TEST_PROTO, b"hello")
    net.run_for(5.0)
    c = a.counter("ndp")
    assert c["tx_solicitations"] == 3 and c["resolution_failures"] == 1
    assert c["queue_overflows"] == 2  # the queue held 2 of the 4
    assert [e.errno for e in rec.errors] == [errno.EHOSTUNREACH] * 2
    assert a.report()["ndp"] == []  # the failed entry is gone


def test_dad_makes_addresses_tentative_then_preferred() -> None:
    net = VirtualNetwork()
    a = net.new_stack(P6, name="a")  # detects duplicates (one probe, a second apart)
    b = net.new_stack(P6, name="b", settings={"ndp.dad_transmits": 0})
    net.link(a, b, addresses=(f"{A}/64", f"{B}/64"), latency=0.001)
    a.start()
    b.start()
    rows = {r["address"]: r["state"] for r in a.report()["addresses6"]}
    assert rows[A] == "tentative"
    # b's first solicitation meets a tentative address and stays unanswered (RFC 4862
    # 5.4.3); its second, a second later, is answered once detection has ended
    reply = echo(net, b, A)
    assert isinstance(reply, EchoReply) and reply.rtt > 1.0
    assert b.counter("ndp")["tx_solicitations"] == 2
    rows = {r["address"]: r["state"] for r in a.report()["addresses6"]}
    assert set(rows.values()) == {"preferred"}
    assert a.counter("ndp")["tx_dad_probes"] == 2  # global and link-local
    assert isinstance(echo(net, a, B, seq=3), EchoReply)


def test_dad_detects_a_duplicate() -> None:
    net = VirtualNetwork()
    a = net.new_stack(P6, name="a")
    b = net.new_stack(P6, name="b")
    net.link(a, b, addresses=(f"{A}/64", None))
    a.start()
    b.start()
    net.run_for(2.0)  # a's address is preferred
    ib = b.interfaces[0]
    ib.add_address6(ip6(A), 64)
    net.run_for(2.0)
    rows = {r["address"]: r["state"] for r in b.report()["addresses6"]}
    assert rows[A] == "duplicate"
    assert b.counter("ipv6")["DadFails"] == 1 and a.counter("ndp")["tx_advertisements"] >= 1


def _send_raw(a: Stack, ia: Interface, ib: Interface, packet: bytes) -> None:
    assert ib.mac is not None
    ia.send_ethernet(ib.mac, ETH_P_IPV6, packet)


def _with_ext(exts: list[tuple[int, bytes]], last_nh: int, payload: bytes,
              src: str = A, dst: str = B) -> bytes:
    """An IPv6 packet with extension headers ``[(type, body incl. its 2-byte prefix)]``."""
    out = b""
    types = [t for t, _ in exts] + [last_nh]
    for i, (_t, body) in enumerate(exts):
        out += bytes((types[i + 1], len(body) // 8 - 1)) + body[2:]
    out += payload
    return build_ipv6_header(ip6(src), ip6(dst), types[0], len(out)) + out


def _options(*opts: bytes) -> bytes:
    body = b"\x00\x00" + b"".join(opts)
    pad = -len(body) % 8
    if pad == 1:
        body += b"\x00"
    elif pad:
        body += bytes((1, pad - 2)) + bytes(pad - 2)
    return body


@pytest.mark.parametrize(
    ("option", "delivered", "problem"),
    [
        (b"\x01\x02\x00\x00", True, False),  # PadN
        (b"\x1e\x02\x00\x00", True, False),  # unknown, action 00: skip
        (b"\x5e\x02\x00\x00", False, False),  # action 01: discard silently
        (b"\x9e\x02\x00\x00", False, True),  # action 10: discard, parameter problem
        (b"\xde\x02\x00\x00", False, True),  # action 11: the same to a unicast destination
    ],
)
@pytest.mark.parametrize("header", [NH_HOPOPTS, NH_DSTOPTS])
def test_unknown_options_by_their_two_high_bits(
    header: int, option: bytes, delivered: bool, problem: bool
) -> None:
    net, a, b, ia, ib, rec = pair()
    assert isinstance(echo(net, a, B), EchoReply)  # resolved both ways
    b_rec = Recorder()
    b.transports[TEST_PROTO] = b_rec
    _send_raw(a, ia, ib, _with_ext([(header, _options(option))], TEST_PROTO, b"data"))
    net.run_for(0.1)
    assert len(b_rec.received) == int(delivered)
    if delivered:
        assert bytes(b_rec.received[0].payload) == b"data"
    probs = rec.icmp_errors(ICMPV6_PARAM_PROB)
    assert len(probs) == int(problem)
    if problem:
        assert probs[0][1] == 2 and int.from_bytes(probs[0][4:8], "big") == 42  # the option
    else:
        assert b.counter("ipv6").drops["unknown_option"] == int(not delivered)


def test_routing_header_type0_is_refused() -> None:
    net, a, b, ia, ib, rec = pair()
    assert isinstance(echo(net, a, B), EchoReply)
    rh0 = b"\x00\x00" + bytes((0, 1)) + bytes(4) + ip6("2001:db8::77").to_bytes(16, "big")
    _send_raw(a, ia, ib, _with_ext([(NH_ROUTING, rh0)], TEST_PROTO, b"data"))
    net.run_for(0.1)
    (prob,) = rec.icmp_errors(ICMPV6_PARAM_PROB)
    assert prob[1] == 0 and int.from_bytes(prob[4:8], "big") == 42  # points at the type
    assert b.counter("ipv6").drops["routing_type0"] == 1
    # with segments left 0 the header is ignored and the packet delivered
    b_rec = Recorder()
    b.transports[TEST_PROTO] = b_rec
    rh0_done = b"\x00\x00" + bytes((0, 0)) + bytes(4) + ip6("2001:db8::77").to_bytes(16, "big")
    _send_raw(a, ia, ib, _with_ext([(NH_ROUTING, rh0_done)], TEST_PROTO, b"data"))
    net.run_for(0.1)
    assert len(b_rec.received) == 1


def test_hop_by_hop_after_another_header_and_unknown_next_header() -> None:
    net, a, _b, ia, ib, rec = pair()
    assert isinstance(echo(net, a, B), EchoReply)
    _send_raw(a, ia, ib, _with_ext([(NH_DSTOPTS, _options()), (NH_HOPOPTS, _options())],
                                   TEST_PROTO, b"x"))
    net.run_for(0.1)
    (prob,) = rec.icmp_errors(ICMPV6_PARAM_PROB)
    assert prob[1] == 1 and int.from_bytes(prob[4:8], "big") == 40  # dest opts' next header
    # b has no transport for 253: parameter problem code 1 at the IPv6 next-header field
    _send_raw(a, ia, ib, _with_ext([], TEST_PROTO, b"x"))
    net.run_for(2.0)
    probs = rec.icmp_errors(ICMPV6_PARAM_PROB)
    assert len(probs) == 2 and probs[1][1] == 1 and int.from_bytes(probs[1][4:8], "big") == 6
    assert rec.errors and rec.errors[-1].icmp_type == ICMPV6_PARAM_PROB  # told the sender


def _fragments(payload: bytes, pieces: list[tuple[int, int, bool]], ident: int = 99,
               nh: int = TEST_PROTO) -> list[bytes]:
    out = []
    for start, end, more in pieces:
        body = build_fragment_header(nh, start, more, ident) + payload[start:end]
        out.append(build_ipv6_header(ip6(A), ip6(B), NH_FRAGMENT, len(body)) + body)
    return out


def test_fragments_out_of_order_overlap_and_timeout() -> None:
    net, a, b, ia, ib, rec = pair()
    assert isinstance(echo(net, a, B), EchoReply)
    b_rec = Recorder()
    b.transports[TEST_PROTO] = b_rec
    data = bytes(range(256)) * 10
    for f in reversed(_fragments(data, [(0, 1024, True), (1024, 2048, True),
                                        (2048, 2560, False)])):
        _send_raw(a, ia, ib, f)
    net.run_for(0.1)
    assert [bytes(d.payload) for d in b_rec.received] == [data]
    # overlapping fragments: the whole packet is dropped (RFC 5722), later ones too
    for f in _fragments(data, [(0, 1024, True), (1016, 2048, True), (2048, 2560, False)],
                        ident=100):
        _send_raw(a, ia, ib, f)
    net.run_for(0.1)
    assert len(b_rec.received) == 1
    c = b.counter("ipv6")
    assert c["ReasmOverlaps"] == 1 and c.drops["reasm_overlap"] == 2
    # a missing piece: time exceeded code 1 after 60 s, quoting the first fragment
    for f in _fragments(data, [(0, 1024, True), (2048, 2560, False)], ident=101):
        _send_raw(a, ia, ib, f)
    net.run_for(59.0)
    assert rec.icmp_errors(ICMPV6_TIME_EXCEEDED) == []
    net.run_for(2.0)
    (te,) = rec.icmp_errors(ICMPV6_TIME_EXCEEDED)
    assert te[1] == 1 and c["ReasmTimeout"] == 1
    assert len(b.protocol("ipv6").reassembler) == 0 and b.protocol("ipv6").reassembler.memory == 0
    # a fragment whose length is not a multiple of 8 with M set: parameter problem
    _send_raw(a, ia, ib, _fragments(data, [(0, 1001, True)], ident=102)[0])
    net.run_for(0.1)
    assert b.counter("ipv6").drops["bad_fragment"] == 1


def test_reassembly_memory_is_bounded() -> None:
    net, a, b, ia, ib, _rec = pair({"ipv6.reasm_memory": 4096})
    assert isinstance(echo(net, a, B), EchoReply)
    data = bytes(1024)
    for ident in range(20):  # first halves only: each waits for a second half
        _send_raw(a, ia, ib, _fragments(data, [(0, 512, True)], ident=ident)[0])
    net.run_for(0.1)
    r = b.protocol("ipv6").reassembler
    assert r.memory <= 4096 and len(r) <= 7
    assert b.counter("ipv6").drops["reasm_memory"] >= 13


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x60" + bytes(20), "truncated"),
        (build_ipv6_header(ip6(A), ip6(B), 59, 0)[:0] + b"\x40" + bytes(39), "bad_version"),
        (build_ipv6_header(ip6(A), ip6(B), 59, 100), "bad_length"),
        (build_ipv6_header(ip6("ff02::1"), ip6(B), 59, 0), "martian_source"),
        (build_ipv6_header(ip6(A), ip6("2001:db8::55"), 59, 0), "not_for_us"),
        (build_ipv6_header(ip6(A), ip6("ff02::1:2"), 59, 0), "multicast_not_joined"),
        (build_ipv6_header(ip6(A), ip6(B), 59, 0), "no_next_header"),
    ],
)
def test_bad_headers_are_dropped_by_reason(packet: bytes, reason: str) -> None:
    net, a, b, ia, ib, _ = pair()
    assert isinstance(echo(net, a, B), EchoReply)
    net.run_for(2.0)  # MLD reports to ff02::16 (not joined by b) are over
    before = b.counter("ipv6").drops[reason]
    _send_raw(a, ia, ib, packet)
    net.run_for(0.1)
    assert b.counter("ipv6").drops[reason] == before + 1
    assert not b.internal_failures


def test_icmpv6_bad_checksum_and_multicast_frames() -> None:
    net, a, b, ia, ib, _ = pair()
    assert isinstance(echo(net, a, B), EchoReply)
    msg = bytearray(build_icmpv6(ip6(A), ip6(B), 128, 0, b"\x00\x01\x00\x01"))
    msg[2] ^= 1
    _send_raw(a, ia, ib, build_ipv6_header(ip6(A), ip6(B), 58, len(msg)) + bytes(msg))
    net.run_for(0.1)
    assert b.counter("icmpv6").drops["bad_checksum"] == 1
    # the wire helpers agree with a direct computation of RFC 8200 8.1's pseudo-header
    pseudo = ip6(A).to_bytes(16, "big") + ip6(B).to_bytes(16, "big") + len(msg).to_bytes(
        4, "big") + b"\x00\x00\x00\x3a"
    good = build_icmpv6(ip6(A), ip6(B), 128, 0, b"\x00\x01\x00\x01")
    assert checksum(pseudo + good[:2] + b"\x00\x00" + good[4:]) == int.from_bytes(
        good[2:4], "big")
    assert pseudo_header_sum6(1, 2, 58, 8) == 1 + 2 + 58 + 8
    assert multicast_mac6(solicited_node(ip6(B))) == bytes.fromhex("3333ff000002")
    assert solicited_node(ip6(B)) == ip6("ff02::1:ff00:2") and ALL_NODES == ip6("ff02::1")


def test_stable_privacy_link_local_and_settings_errors() -> None:
    net = VirtualNetwork()
    s = net.new_stack(P6, settings={"ipv6.addr_gen_mode": "stable-privacy"})
    t = net.new_stack(P6, settings={"ipv6.addr_gen_mode": "stable-privacy"})
    net.link(s, t)
    s.start()
    t.start()
    (ll,) = [x for x, _ in s.interfaces[0].addresses6]
    assert ll >> 64 == 0xFE80 << 48
    assert ll & 0xFFFFFFFFFFFFFFFF != eui64_interface_id(s.interfaces[0].mac or b"")
    with pytest.raises(ConfigurationError, match="addr_gen_mode"):
        VirtualNetwork().new_stack(P6, settings={"ipv6.addr_gen_mode": "random"})
    with pytest.raises(ConfigurationError, match="multicast"):
        s.add_address(s.interfaces[0], "ff02::5/64")


def test_tun_stack_runs_without_ndp() -> None:
    net = VirtualNetwork()
    a = net.new_stack(["ipv6", "icmpv6"], name="a")
    b = net.new_stack(["ipv6", "icmpv6"], name="b")
    net.link(a, b, addresses=(f"{A}/64", f"{B}/64"), medium=Medium.IP)
    a.start()
    b.start()
    reply = echo(net, a, B)
    assert isinstance(reply, EchoReply) and reply.src == ip6(B)
