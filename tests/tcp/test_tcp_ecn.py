"""ECN in TCP (RFC 3168 section 6): negotiation on the SYN and SYN-ACK by ``tcp.ecn`` (0, 1,
2 as Linux's net.ipv4.tcp_ecn), ECT(0) on new data only, the receiver's ECE until CWR, the
sender's once-per-window reduction through the congestion control's ``on_ecn`` and CWR on the
next new data; then two stacks through a link that marks CE: a congestion response without a
single retransmission."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import layers_tcp
import pytest
from tcp_support import PEER_I, PEER_PORT, SA, US_I, A, P, Recorder, S, Seg, Wire

from layers.cli.ss import format_tcp_info
from layers.congestion import (
    CongestionContext,
    CongestionControlBase,
    CongestionControlInfo,
    RateSample,
)
from layers.errors import ConfigurationError
from layers.hookspecs import hookimpl
from layers.links.base import Link, LinkWrapper, Medium, TxOffload
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire import ip4
from layers.wire.checksum import checksum
from layers.wire.ethernet import ETH_HLEN, ETH_P_IP
from layers.wire.ipv4 import ECN_CE, ECN_ECT0, ECN_ECT1, ECN_NOT_ECT
from layers.wire.tcp import TCP_CWR, TCP_ECE, TCPOptions

ECE, CWR = TCP_ECE, TCP_CWR
ECN_SYN = S | ECE | CWR
ECN_SYNACK = SA | ECE
#: no options at all, so segment sizes are plain (MSS 1460)
BARE = {"tcp.timestamps": False, "tcp.window_scaling": False, "tcp.sack": False}
MSS = TCPOptions(mss=1460)


def wire(ecn: int, **settings: Any) -> Wire:
    return Wire({**BARE, "tcp.ecn": ecn, **settings})


def accept(w: Wire, syn_flags: int = ECN_SYN, *, syn_tos: int = 0) -> tuple[Any, Seg]:
    """The peer connects to our listener: SYN (with ``syn_flags``) in, SYN-ACK out, ACK in."""
    if (0, 80) not in w.tcp.listeners:
        w.listen(80)
    w.inject(syn_flags, 1000, opts=MSS, tos=syn_tos)
    synack = w.one()
    w.inject(A, 1001, synack.seq + 1)
    return w.tcp.conns[(US_I, 80, PEER_I, PEER_PORT)], synack


def connect(w: Wire, synack_flags: int = ECN_SYNACK, **options: Any) -> tuple[Any, Seg, Seg]:
    """We connect to the peer: SYN out, SYN-ACK (with ``synack_flags``) in, ACK out."""
    conn = w.tcp.connect(Recorder(), PEER_I, 80, **options)
    syn = w.one()
    w.inject(synack_flags, 5000, syn.seq + 1, sport=80, dport=syn.tcp.sport, opts=MSS)
    ack = w.one()
    assert ack.flags & A and ack.ack == 5001
    return conn, syn, ack


# --- negotiation ----------------------------------------------------------------------------


@pytest.mark.parametrize("ecn,asks", [(0, False), (1, True), (2, False)])
def test_our_syn_asks_only_with_setting_1(ecn: int, asks: bool) -> None:
    w = wire(ecn)
    w.tcp.connect(Recorder(), PEER_I, 80)
    syn = w.one()
    assert syn.flags == (ECN_SYN if asks else S)
    assert syn.ip.tos == 0  # RFC 3168 6.1.1: a SYN is never ECT


@pytest.mark.parametrize("synack,agreed", [
    (ECN_SYNACK, True),  # the ECN-setup SYN-ACK
    (SA, False),  # a peer without ECN
    (SA | ECE | CWR, False),  # ECE and CWR both: a reflecting middlebox, not an agreement
    (SA | CWR, False),
])
def test_active_open_agrees_only_on_an_ecn_setup_synack(synack: int, agreed: bool) -> None:
    w = wire(1)
    conn, _, ack = connect(w, synack)
    assert conn.ecn_ok is agreed
    assert ack.ip.tos == 0 and not ack.flags & (ECE | CWR)
    c = w.counters
    assert (c["ECNNegotiated"], c["ECNRefusedByPeer"]) == (int(agreed), int(not agreed))
    conn.write(b"x" * 100)
    [data] = w.sent()
    assert data.ip.tos == (ECN_ECT0 if agreed else ECN_NOT_ECT)


@pytest.mark.parametrize("ecn", [0, 1, 2])
@pytest.mark.parametrize("syn,tos,wanted", [
    (ECN_SYN, 0, True),  # an ECN-setup SYN
    (S | ECE, 0, False),  # ECE alone is not a request
    (S, 0, False),
    (ECN_SYN, ECN_ECT0, False),  # a SYN arriving ECT: the path mangles the field (Linux)
    (ECN_SYN, ECN_CE, False),
])
def test_passive_open_answers_an_ecn_setup_syn(ecn: int, syn: int, tos: int,
                                                wanted: bool) -> None:
    w = wire(ecn)
    conn, synack = accept(w, syn, syn_tos=tos)
    agreed = wanted and ecn != 0
    assert synack.flags == (ECN_SYNACK if agreed else SA)
    assert synack.ip.tos == 0
    assert conn.ecn_ok is agreed
    assert w.counters["ECNNegotiated"] == int(agreed)


def test_the_per_connection_option_overrides_the_setting() -> None:
    w = wire(0)
    w.tcp.connect(Recorder(), PEER_I, 80, ecn=1)
    assert w.one().flags == ECN_SYN
    w.listen(81, ecn=2)
    w.inject(ECN_SYN, 1000, dport=81, opts=MSS)
    assert w.one().flags == ECN_SYNACK
    with pytest.raises(ConfigurationError, match="ecn=3"):
        w.tcp.connect(Recorder(), PEER_I, 82, ecn=3)


def test_bad_setting_names_the_fix() -> None:
    with pytest.raises(ConfigurationError, match=r"tcp.ecn=5 .*net.ipv4.tcp_ecn"):
        wire(5)


def capabilities(ecn: int) -> dict[str, bool]:
    """What the TCP plugin reports for a stack with ``tcp.ecn=ecn`` (it has a TCP layer)."""
    caps = layers_tcp.layers_capabilities(wire(ecn).stack)
    assert caps is not None, "a stack with TCP reports its capabilities"
    return caps


def test_capability_follows_the_setting() -> None:
    assert capabilities(0)["tcp.ecn"] is False
    assert capabilities(2)["tcp.ecn"] is True


def test_retransmitted_syn_falls_back_but_a_late_agreement_is_taken() -> None:
    w = wire(1)
    conn = w.tcp.connect(Recorder(), PEER_I, 80)
    assert w.one().flags == ECN_SYN
    w.advance(1.0)  # the SYN's RTO
    retry = w.one()
    assert retry.flags == S  # RFC 3168 6.1.1.1 (tcp.ecn_fallback, on by default)
    w.inject(ECN_SYNACK, 5000, retry.seq + 1, sport=80, dport=retry.tcp.sport, opts=MSS)
    assert conn.ecn_ok  # the first SYN did reach the peer, as Linux assumes


def test_no_fallback_keeps_asking() -> None:
    w = wire(1, **{"tcp.ecn_fallback": False})
    w.tcp.connect(Recorder(), PEER_I, 80)
    w.one()
    w.advance(1.0)
    assert w.one().flags == ECN_SYN


def test_synack_retransmission_keeps_ece() -> None:
    w = wire(1)
    w.listen(80)
    w.inject(ECN_SYN, 1000, opts=MSS)
    assert w.one().flags == ECN_SYNACK
    w.advance(1.0)
    assert w.one().flags == ECN_SYNACK


def test_simultaneous_open_agrees_when_both_syns_ask() -> None:
    w = wire(1)
    conn = w.tcp.connect(Recorder(), PEER_I, 80)
    syn = w.one()
    w.inject(ECN_SYN, 5000, sport=80, dport=syn.tcp.sport, opts=MSS)
    synack = w.one()
    assert synack.flags == ECN_SYNACK and conn.ecn_ok


# --- ECT on new data only -------------------------------------------------------------------


def test_ect0_goes_on_new_data_only() -> None:
    w = wire(1)
    conn, _, ack = connect(w, nodelay=True)
    assert ack.ip.tos == 0
    conn.write(b"a" * 3000)
    first = w.sent()
    assert [len(s.payload) for s in first] == [1460, 1460, 80]
    assert {s.ip.tos for s in first} == {ECN_ECT0}
    # the RTO resends the first segment: Not-ECT (RFC 3168 6.1.5)
    w.advance(0.3)
    [rexmit] = w.sent()
    assert rexmit.seq == first[0].seq and rexmit.ip.tos == ECN_NOT_ECT
    assert w.counters["RetransSegs"] == 1
    # a pure ACK of the peer's data: Not-ECT
    w.inject(A, 5001, first[-1].seq + 80, b"reply", sport=80, dport=conn.lport)
    w.advance(0.05)
    pure = [s for s in w.sent() if not s.payload]
    assert pure and {s.ip.tos for s in pure} == {ECN_NOT_ECT}
    # a FIN without data: Not-ECT
    conn.write_eof()
    [fin] = w.sent()
    assert not fin.payload and fin.ip.tos == ECN_NOT_ECT


def test_zero_window_probe_is_not_ect() -> None:
    w = wire(1)
    conn, _, _ = connect(w)
    w.inject(A, 5001, conn.snd_una, wnd=0, sport=80, dport=conn.lport)
    conn.write(b"b" * 500)
    w.nothing()
    w.advance(5.0)
    probes = w.sent()
    assert probes and all(not s.payload and s.ip.tos == 0 for s in probes)
    assert w.counters["WindowProbes"] >= 1


# --- receiver: CE -> ECE until CWR ----------------------------------------------------------


def test_ce_on_data_is_echoed_until_cwr() -> None:
    w = wire(1)
    conn, _ = accept(w)
    seq = 1001
    w.inject(P | A, seq, conn.snd_nxt, b"1" * 100, tos=ECN_ECT0)
    w.advance(0.1)
    assert not any(s.flags & ECE for s in w.sent())  # unmarked: no echo
    seq += 100
    w.inject(P | A, seq, conn.snd_nxt, b"2" * 100, tos=ECN_CE)
    [ack] = w.sent()  # at once, not after the delayed-ACK timer (like Linux)
    assert ack.flags & ECE and ack.ack == seq + 100
    seq += 100
    for _ in range(3):  # every ACK echoes until CWR, CE or not
        w.inject(P | A, seq, conn.snd_nxt, b"3" * 100, tos=ECN_ECT0)
        seq += 100
    w.advance(0.1)
    acks = w.sent()
    assert acks and all(s.flags & ECE for s in acks)
    # data we send meanwhile carries ECE too (and ECT)
    conn.write(b"r" * 10)
    [out] = w.sent()
    assert out.flags & ECE and out.ip.tos == ECN_ECT0
    w.inject(A, seq, out.seq + 10)
    # CWR: the echo stops; the CWR data is acknowledged at once
    w.inject(P | A | CWR, seq, conn.snd_nxt, b"4" * 100, tos=ECN_ECT0)
    [after] = w.sent()
    assert not after.flags & ECE and after.ack == seq + 100
    c = w.counters
    assert (c["ECNCEReceived"], c["ECNCWRReceived"]) == (1, 1)


def test_cwr_and_ce_on_one_segment_keep_the_echo_going() -> None:
    w = wire(1)
    conn, _ = accept(w)
    w.inject(P | A, 1001, conn.snd_nxt, b"1" * 100, tos=ECN_CE)
    assert w.one().flags & ECE
    w.inject(P | A | CWR, 1101, conn.snd_nxt, b"2" * 100, tos=ECN_CE)
    w.advance(0.1)
    assert all(s.flags & ECE for s in w.sent())


def test_ce_without_ecn_agreed_is_ignored() -> None:
    w = wire(0)
    conn, synack = accept(w)
    assert synack.flags == SA
    w.inject(P | A, 1001, conn.snd_nxt, b"1" * 100, tos=ECN_CE)
    w.advance(0.1)
    assert not any(s.flags & ECE for s in w.sent())
    assert w.counters["ECNCEReceived"] == 0
    assert w.stack.counters["ipv4"]["InCEPkts"] == 1


@pytest.mark.parametrize("tos", [ECN_ECT0, ECN_ECT1])
def test_unmarked_ect_data_takes_the_fast_path(tos: int) -> None:
    w = wire(1)
    conn, _ = accept(w)
    w.inject(P | A, 1001, conn.snd_nxt, b"1" * 100, tos=tos)
    w.inject(P | A, 1101, conn.snd_nxt, b"2" * 100, tos=tos)
    w.settle()
    assert conn.rcv_nxt == 1201 and not conn._ece_pending
    assert not any(s.flags & ECE for s in w.sent())


# --- sender: ECE -> on_ecn once per window, CWR on the next new data -------------------------


def spy_on_ecn(conn: Any) -> list[tuple[int, float]]:
    calls: list[tuple[int, float]] = []
    original = conn.cc.on_ecn

    def on_ecn(in_flight: int, now: float) -> None:
        calls.append((in_flight, now))
        original(in_flight, now)

    conn.cc.on_ecn = on_ecn
    return calls


def test_ece_reduces_once_per_window_and_sets_cwr_on_new_data() -> None:
    w = wire(1)
    conn, _, _ = connect(w)
    calls = spy_on_ecn(conn)
    base = conn.snd_una
    conn.write(bytes(20 * 1460))
    first = w.sent()
    assert len(first) == 10  # the initial window
    cwnd_before = conn.cc.cwnd
    # the first ACK echoes a CE mark: one reduction, to half of what is in flight
    w.inject(A | ECE, 5001, base + 1460, sport=80, dport=conn.lport)
    assert calls == [(9 * 1460, w.now)]  # in flight after this ACK
    assert conn.cc.cwnd == 9 * 1460 // 2 < cwnd_before
    assert conn.cc.ssthresh == 9 * 1460 // 2
    assert w.sent() == []  # 9 segments in flight, a window of 4.5: nothing new yet
    # more ECE ACKs for the same window (the peer echoes until it sees CWR): no further
    # reduction; as they open the window, new data leaves, CWR on the first segment only
    new: list[Seg] = []
    for i in range(2, 11):
        w.inject(A | ECE, 5001, base + i * 1460, sport=80, dport=conn.lport)
        new += w.sent()
    assert len(calls) == 1
    assert new and new[0].flags & CWR and new[0].ip.tos == ECN_ECT0
    assert new[0].seq == first[-1].seq + 1460  # the first byte after the reduced window
    assert not any(s.flags & CWR for s in new[1:])
    # an ACK past the reduction's window (so our CWR was seen) echoing a new mark: again
    high = new[0].seq
    w.inject(A | ECE, 5001, high + 1460, sport=80, dport=conn.lport)
    assert len(calls) == 2
    assert conn._cwr_pending  # for the next new data, when the window lets it go
    c = w.counters
    assert c["ECNReductions"] == 2 and c["ECNEchoReceived"] == 11
    assert c["ECNCWRSent"] == 1 and c["RetransSegs"] == 0


def test_ece_is_ignored_in_loss_recovery() -> None:
    w = wire(1)
    conn, _, _ = connect(w)
    calls = spy_on_ecn(conn)
    base = conn.snd_una
    conn.write(bytes(10 * 1460))
    w.sent()
    for _ in range(3):  # three duplicate ACKs: fast retransmit, recovery
        w.inject(A, 5001, base, sport=80, dport=conn.lport)
    assert conn.recovery.in_recovery
    w.inject(A | ECE, 5001, base, sport=80, dport=conn.lport)
    w.inject(A | ECE, 5001, base + 1460, sport=80, dport=conn.lport)  # a partial ACK
    assert calls == [] and w.counters["ECNReductions"] == 0
    assert w.counters["ECNEchoReceived"] == 2


def test_ece_without_ecn_agreed_is_ignored() -> None:
    w = wire(0)
    conn, _, _ = connect(w, SA)
    base = conn.snd_una
    conn.write(bytes(4 * 1460))
    w.sent()
    cwnd = conn.cc.cwnd
    w.inject(A | ECE, 5001, base + 1460, sport=80, dport=conn.lport)
    assert conn.cc.cwnd >= cwnd and w.counters["ECNEchoReceived"] == 0
    assert not any(s.flags & CWR for s in w.sent())


# --- end to end: a link that marks CE -------------------------------------------------------


class CEMarker(LinkWrapper):
    """Marks CE on every ``every``-th ECT packet it sends (an AQM that would otherwise have
    dropped it); Not-ECT packets pass untouched. Works on Ethernet and IP media."""

    def __init__(self, inner: Link, every: int) -> None:
        super().__init__(inner)
        self.every = every
        self.ect_seen = 0
        self.marked = 0

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        off = 0
        if self.capabilities.medium is Medium.ETHERNET:
            if int.from_bytes(frame[12:14], "big") != ETH_P_IP:
                self.inner.send(frame, offload)
                return
            off = ETH_HLEN
        if frame[off + 1] & 3 in (ECN_ECT0, ECN_ECT1):
            self.ect_seen += 1
            if self.ect_seen % self.every == 0:
                buf = bytearray(frame)
                buf[off + 1] |= ECN_CE
                buf[off + 10 : off + 12] = b"\0\0"
                hlen = (buf[off] & 0xF) * 4
                buf[off + 10 : off + 12] = checksum(buf[off : off + hlen]).to_bytes(2, "big")
                self.marked += 1
                frame = bytes(buf)
        self.inner.send(frame, offload)


def run_pair(client_ecn: int, server_ecn: int, *, every: int = 0, size: int = 0,
             medium: Medium = Medium.IP) -> dict[str, Any]:
    """A transfer from a (client) to b (server) through links that mark every ``every``-th
    ECT packet (0: none). Returns what the tests look at."""
    net = VirtualNetwork()
    plugins = ["ipv4", "tcp"] if medium is Medium.IP else ["arp", "ipv4", "tcp"]
    a = net.new_stack(plugins, settings={"tcp.secret": "ab" * 16, "tcp.ecn": client_ecn},
                      name="a")
    b = net.new_stack(plugins, settings={"tcp.secret": "cd" * 16, "tcp.ecn": server_ecn},
                      name="b")
    markers: list[CEMarker] = []

    def wrap(link: Link) -> Link:
        m = CEMarker(link, every) if every else link
        if isinstance(m, CEMarker):
            markers.append(m)
        return m

    net.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"), latency=0.005, medium=medium,
             wrap=wrap)
    a.start()
    b.start()
    server = Recorder()
    accepted: list[Any] = []

    def factory() -> Recorder:
        return server

    b.protocol("tcp").listen(factory, 0, 5001)
    client = Recorder()
    conn = a.protocol("tcp").connect(client, ip4("10.0.0.2"), 5001)
    assert net.run_until_true(lambda: client.kinds() == ["made"], timeout=10)
    accepted.extend(c for c in b.protocol("tcp").conns.values())
    peer = accepted[0]
    cc_log: list[tuple[float, int]] = []
    if size:
        data = random.Random(5).randbytes(size)
        original = conn.cc.on_ecn

        def on_ecn(in_flight: int, now: float) -> None:
            cc_log.append((now, conn.cc.cwnd))
            original(in_flight, now)

        conn.cc.on_ecn = on_ecn
        conn.write(data)
        conn.write_eof()
        assert net.run_until_true(lambda: "eof" in server.kinds(), timeout=120)
        assert hashlib.sha256(server.data).digest() == hashlib.sha256(data).digest()
    return {"a": a, "b": b, "conn": conn, "peer": peer, "markers": markers, "cc_log": cc_log,
            "net": net}


@pytest.mark.parametrize("client", [0, 1, 2])
@pytest.mark.parametrize("server", [0, 1, 2])
def test_negotiation_matrix_between_two_stacks(client: int, server: int) -> None:
    r = run_pair(client, server)
    agreed = client == 1 and server in (1, 2)  # 2 answers but never asks, as Linux
    assert r["conn"].ecn_ok is agreed and r["peer"].ecn_ok is agreed
    assert r["conn"].describe()["ecn"] is agreed
    assert ("ecn" in format_tcp_info(r["conn"].describe()).split()) is agreed  # layers ss -i


@pytest.mark.parametrize("medium", [Medium.IP, Medium.ETHERNET])
def test_ce_marks_make_the_sender_back_off_without_retransmitting(medium: Medium) -> None:
    r = run_pair(1, 2, every=40, size=1 << 20, medium=medium)
    a: Stack = r["a"]
    b: Stack = r["b"]
    ca, cb = a.counters["tcp"], b.counters["tcp"]
    marked = sum(m.marked for m in r["markers"])
    assert marked > 0
    # the receiver saw the marks and echoed them; the sender reduced, with CWR in reply
    assert cb["ECNCEReceived"] == b.counters["ipv4"]["InCEPkts"] > 0
    assert ca["ECNEchoReceived"] > 0 and ca["ECNReductions"] > 0
    assert len(r["cc_log"]) == ca["ECNReductions"]
    assert ca["ECNCWRSent"] == ca["ECNReductions"] and cb["ECNCWRReceived"] == ca["ECNCWRSent"]
    # the same figures per connection, in its telemetry samples
    assert r["conn"].sample().ecn_reductions == ca["ECNReductions"]
    assert r["peer"].sample().ecn_ce_received == cb["ECNCEReceived"]
    assert r["conn"].sample().as_dict()["ecn_reductions"] == ca["ECNReductions"]
    # ... at most once per window: fewer reductions than marks
    assert ca["ECNReductions"] < marked
    # a congestion response and no loss: nothing resent, ssthresh set by on_ecn
    assert ca["RetransSegs"] == 0 and ca["FastRetransmits"] == 0 and ca["RTOs"] == 0
    assert r["conn"].cc.ssthresh < 1 << 30
    # marks only ever on data: the receiver's pure ACKs are Not-ECT
    assert a.counters["ipv4"]["InECT0Pkts"] == 0 and a.counters["ipv4"]["InCEPkts"] == 0


def test_without_ecn_the_same_marker_changes_nothing() -> None:
    r = run_pair(0, 2, every=40, size=1 << 20)
    ca = r["a"].counters["tcp"]
    assert sum(m.marked for m in r["markers"]) == 0  # Not-ECT packets are never marked
    assert ca["ECNReductions"] == 0 and r["conn"].cc.ssthresh == 1 << 30


# --- end to end through the shaper's CoDel with ecn=1 ---------------------------------------


def through_codel(tcp_ecn: int, size: int = 1 << 20,
                  algorithm: str = "newreno") -> tuple[Any, Stack, Any]:
    """``size`` bytes a -> b through 10 Mbit/s, 10 ms each way, CoDel marking ECT packets."""
    from layers.links.shaper import bottleneck

    net = VirtualNetwork()
    settings = {"tcp.secret": "ef" * 16, "tcp.ecn": tcp_ecn,
                "tcp.congestion_control": algorithm}
    plugins = ["arp", "ipv4", "tcp", *([algorithm] if algorithm != "newreno" else [])]
    a = net.new_stack(plugins, settings=settings, name="a")
    b = net.new_stack(plugins, settings=settings, name="b")
    path = bottleneck(net, a, b, "rate=10mbit,delay=10ms,queue=codel,ecn=1",
                      addresses=("10.0.0.1/24", "10.0.0.2/24"))
    a.start()
    b.start()
    server = Recorder()
    b.protocol("tcp").listen(lambda: server, 0, 5001)
    client = Recorder()
    conn = a.protocol("tcp").connect(client, ip4("10.0.0.2"), 5001)
    assert net.run_until_true(lambda: client.kinds() == ["made"], timeout=10)
    data = random.Random(9).randbytes(size)
    conn.write(data)
    conn.write_eof()
    assert net.run_until_true(lambda: "eof" in server.kinds(), timeout=120)
    assert hashlib.sha256(server.data).digest() == hashlib.sha256(data).digest()
    return path, a, conn


def test_codel_marks_instead_of_dropping_and_tcp_backs_off() -> None:
    path, a, conn = through_codel(1)
    q = path.forward.qdisc.stats
    c = a.counters["tcp"]
    assert q.marked > 0 and q.dropped == 0
    assert c["ECNReductions"] > 0 and conn.cc.ssthresh < 1 << 30
    assert c["RetransSegs"] == 0
    # without ECN the same queue has to drop, and TCP to resend
    path0, a0, _ = through_codel(0)
    assert path0.forward.qdisc.stats.dropped > 0 and path0.forward.qdisc.stats.marked == 0
    assert a0.counters["tcp"]["RetransSegs"] > 0


@pytest.mark.parametrize("algorithm", ["cubic", "bbr"])
def test_codel_marks_reach_other_algorithms(algorithm: str) -> None:
    path, a, conn = through_codel(1, algorithm=algorithm)
    c = a.counters["tcp"]
    assert path.forward.qdisc.stats.marked > 0 and path.forward.qdisc.stats.dropped == 0
    assert c["ECNReductions"] > 0 and c["RetransSegs"] == 0
    # each reduction reached the algorithm (CUBIC cuts by beta; BBR v1 only counts them)
    seen = conn.cc.ecn_events if algorithm == "cubic" else conn.cc.ecn_echoes
    assert seen == c["ECNReductions"]


# --- the order of events a congestion control sees, ECN among loss and timeout ---------------


class RecordingECN(CongestionControlBase):
    """Halves on every reduction and records the events (ACK runs collapse to one entry)."""

    name = "recording-ecn"

    def __init__(self, ctx: CongestionContext) -> None:
        super().__init__(ctx)
        self.events: list[str] = []
        self.ece_samples = 0

    def on_start(self, mss: int, now: float) -> None:
        super().on_start(mss, now)
        self.events.append("start")

    def on_ack(self, rs: RateSample) -> None:
        self.ece_samples += rs.ece
        tag = "ack/ece" if rs.ece else "ack/rec" if rs.in_recovery else "ack"
        if self.events[-1] != tag:
            self.events.append(tag)

    def _halve(self, in_flight: int, event: str) -> None:
        self.ssthresh = max(in_flight // 2, 2 * self.mss)
        self.events.append(event)

    def on_enter_recovery(self, in_flight: int, now: float) -> None:
        super().on_enter_recovery(in_flight, now)
        self._halve(in_flight, "enter")

    def on_exit_recovery(self, in_flight: int, now: float) -> None:
        self.cwnd = self.ssthresh
        self.events.append("exit")

    def on_timeout(self, in_flight: int, now: float) -> None:
        super().on_timeout(in_flight, now)
        self._halve(in_flight, "timeout")
        self.cwnd = self.mss

    def on_ecn(self, in_flight: int, now: float) -> None:
        self._halve(in_flight, "ecn")
        self.cwnd = self.ssthresh


class RecordingECNPlugin:
    @hookimpl
    def layers_congestion_controls(self) -> list[CongestionControlInfo]:
        return [CongestionControlInfo("recording-ecn", RecordingECN)]


def test_ecn_events_in_order_among_loss_and_timeout() -> None:
    w = Wire({**BARE, "tcp.ecn": 1, "tcp.congestion_control": "recording-ecn"},
             plugins=["ipv4", "tcp", RecordingECNPlugin()])
    conn, _ = accept(w)
    cc = conn.cc
    assert isinstance(cc, RecordingECN) and conn.ecn_ok
    mss = conn.mss
    us = conn.snd_una

    def ack(n: int, flags: int = A) -> None:
        w.inject(flags, 1001, us + n * mss)

    def key_events() -> list[str]:
        return [e for e in cc.events if not e.startswith("ack")]

    conn.write(bytes(40 * mss))
    w.sent()
    ack(1, A | ECE)  # a CE mark echoed: reduce, once for this window
    ack(2, A | ECE)
    assert key_events() == ["start", "ecn"] and cc.ece_samples == 2
    assert cc.events[-1] == "ack/ece"  # the ECE ACKs reached on_ack flagged
    for _ in range(3):  # segment 2 lost: three duplicate ACKs
        ack(2)
    assert key_events() == ["start", "ecn", "enter"]
    ack(3, A | ECE)  # an echo during recovery: the loss response covers it
    assert key_events() == ["start", "ecn", "enter"]
    # everything outstanding at the loss: recovery ends
    ack(int((conn.recovery.recover - us) // mss))
    assert key_events() == ["start", "ecn", "enter", "exit"]
    w.sent()
    w.run_until(conn.rto_at)  # nothing more acknowledged: the retransmission timer, once
    assert key_events() == ["start", "ecn", "enter", "exit", "timeout"]
    recover = int((conn.recovery.recover - us) // mss)
    ack(recover - 1, A | ECE)  # an echo for the window the timeout already answered
    assert key_events() == ["start", "ecn", "enter", "exit", "timeout"]
    ack(recover)
    assert w.sent()  # new data again
    ack(recover + 1, A | ECE)  # beyond the timeout's window: a new reduction
    assert key_events() == ["start", "ecn", "enter", "exit", "timeout", "ecn"]
    assert w.counters["ECNReductions"] == 2
