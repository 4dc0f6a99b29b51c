"""FaultLink: determinism per seed, rates over many frames, delay and reorder in virtual time."""

from __future__ import annotations

import math
import struct

import pytest
from links_support import probe, probe_pair, send_probe
from scapy.all import IP, UDP, Ether, Raw  # type: ignore[attr-defined]

from layers.errors import ConfigurationError
from layers.links import FaultLink, Link, Medium, MemoryLink, parse_faults
from layers.timers import VirtualClock
from layers.virtual import VirtualNetwork
from layers.wire.checksum import pseudo_header_sum, verify

N = 10_000


def _frame(i: int) -> bytes:
    head = b"\x02" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5"
    return head + struct.pack("!I", i) + bytes(42)


def _run_links(n: int, **faults: object) -> tuple[FaultLink, list[bytes]]:
    """Send ``n`` frames through a FaultLink on the sender's side; what arrives, in order."""
    clock = VirtualClock()
    a, b = MemoryLink.pair()
    f = FaultLink(a, **faults)  # type: ignore[arg-type]
    f.attach(clock)
    b.attach(clock)
    got: list[bytes] = []
    for i in range(n):
        f.send(_frame(i))
        clock.advance_to(clock.time + 0.001)
        f.poll(clock.time)
        while (r := b.recv()) is not None:
            got.append(r[0])
    clock.advance_to(clock.time + 10.0)
    f.poll(clock.time)
    while (r := b.recv()) is not None:
        got.append(r[0])
    return f, got


def _index(frame: bytes) -> int:
    return int(struct.unpack_from("!I", frame, 14)[0])


def _within(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_same_seed_same_faults_other_seed_other_faults() -> None:
    cfg = dict(loss=0.1, duplicate=0.05, reorder=0.05, corrupt=0.05, jitter=0.002)
    f1, got1 = _run_links(2000, seed=7, **cfg)
    f2, got2 = _run_links(2000, seed=7, **cfg)
    _f3, got3 = _run_links(2000, seed=8, **cfg)
    assert got1 == got2
    assert f1.faults == f2.faults
    assert got1 != got3


def test_rates_match_the_configured_probabilities() -> None:
    f, got = _run_links(N, loss=0.1, duplicate=0.05, seed=1)
    lost, dup = f.count("loss"), f.count("duplicate")
    assert f.faults["tx_frames"] == N
    assert _within(lost, N, 0.1)
    assert _within(dup, N - lost, 0.05)  # drawn only for frames that were not lost
    assert len(got) == N - lost + dup
    indices = [_index(g) for g in got]
    assert len(set(indices)) == N - lost  # every survivor arrives, duplicates are copies
    assert indices == sorted(indices)  # no delay, no reorder: order kept
    assert f.count("loss", "rx") == 0  # a memory sender's rx direction saw nothing


def test_corruption_flips_one_bit_after_the_link_header_at_the_configured_rate() -> None:
    f, got = _run_links(N, corrupt=0.05, seed=3)
    assert len(got) == N  # corruption alone neither drops nor reorders
    flipped = 0
    for k, g in enumerate(got):
        diff = [x ^ y for x, y in zip(g, _frame(k), strict=True)]
        bits = sum(d.bit_count() for d in diff)
        assert bits in (0, 1)
        assert not any(diff[:14])  # the Ethernet header is left alone
        flipped += bits
    assert flipped == f.count("corrupt", "tx")
    assert _within(flipped, N, 0.05)


def test_corruption_is_caught_by_ip_or_udp_checksums() -> None:
    clock = VirtualClock()
    a, b = MemoryLink.pair()
    f = FaultLink(b, corrupt=1.0, seed=11, direction="rx")
    f.attach(clock)
    a.attach(clock)
    caught = 0
    for i in range(300):
        pkt = Ether(dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2", id=i) / UDP(
            sport=1000, dport=2000) / Raw(b"payload %d" % i)
        a.send(bytes(pkt))
        got = f.recv()
        assert got is not None
        frame = got[0]
        ip_ok = verify(frame[14:34])
        udp = frame[34:]
        src, dst = struct.unpack_from("!II", frame, 26)
        udp_ok = verify(udp, pseudo_header_sum(src, dst, 17, len(udp)))
        caught += not (ip_ok and udp_ok)
    assert f.count("corrupt") == 300
    assert caught == 300


def test_direction_restricts_faults() -> None:
    net = VirtualNetwork()

    def wrap(link: Link) -> Link:
        return FaultLink(link, loss=1.0, direction="tx", seed=1)

    _a, b, ia, ib = probe_pair(net, echo=True, wrap=wrap)
    send_probe(ia, ib, b"lost on a's tx")
    net.run_until_idle()
    assert probe(b).got == []
    fa = ia.link
    assert isinstance(fa, FaultLink)
    assert fa.count("loss", "tx") == 1 and fa.count("loss", "rx") == 0


def test_delay_and_jitter_in_virtual_time() -> None:
    net = VirtualNetwork()
    links: list[FaultLink] = []

    def wrap(link: Link) -> Link:
        f = FaultLink(link, delay=0.010, jitter=0.002, seed=5, direction="tx")
        links.append(f)
        return f

    _a, b, ia, ib = probe_pair(net, wrap=wrap, latency=0.001)
    sent = {}
    for i in range(200):
        net.run_until(i * 0.050)
        sent[b"%d" % i] = net.now
        send_probe(ia, ib, b"%d" % i)
    net.run_until_idle()
    got = probe(b).got
    assert len(got) == 200
    delays = [t - sent[p] for t, p, _ in got]
    assert all(0.009 - 1e-9 <= d <= 0.013 + 1e-9 for d in delays)  # 1 ms link + 10 ± 2 ms
    assert sum(delays) / len(delays) == pytest.approx(0.011, abs=0.0005)
    assert max(delays) - min(delays) > 0.003  # jitter really varies
    assert links[0].count("delay", "tx") == 200


def test_delay_without_jitter_keeps_order_and_echo_sees_both_directions() -> None:
    net = VirtualNetwork()
    a, b, ia, ib = probe_pair(
        net, echo=True, wrap=lambda link: FaultLink(link, delay=0.005, seed=1)
    )
    for i in range(5):
        send_probe(ia, ib, b"%d" % i)
    net.run_until_idle()
    # tx delay at a, rx delay at b; back: tx delay at b, rx delay at a
    assert [(t, p) for t, p, _ in probe(b).got] == [(0.010, b"%d" % i) for i in range(5)]
    assert [(t, p) for t, p, _ in probe(a).got] == [(0.020, b"re:%d" % i) for i in range(5)]


def test_reorder_holds_a_frame_until_a_later_one_passed() -> None:
    net = VirtualNetwork()
    links: list[FaultLink] = []

    def wrap(link: Link) -> Link:
        f = FaultLink(link, reorder=0.2, seed=9, direction="rx")
        links.append(f)
        return f

    _a, b, ia, ib = probe_pair(net, wrap=wrap)
    for i in range(500):
        net.run_until(i * 0.001)
        send_probe(ia, ib, b"%d" % i)
    net.run_until_idle()
    fb = links[1]
    got = probe(b).got
    order = [int(p) for _, p, _ in got]
    assert sorted(order) == list(range(500))
    overtaken = [n for k, n in enumerate(order) if any(m > n for m in order[:k])]
    reordered, expired = fb.count("reorder", "rx"), fb.count("reorder_expired", "rx")
    assert reordered > 50
    assert reordered - expired <= len(overtaken) <= reordered
    # a held frame leaves right behind the frame that overtook it, in the same instant
    times = {int(p): t for t, p, _ in got}
    for n in overtaken:
        if n + 1 in times and times[n + 1] == pytest.approx((n + 1) * 0.001):
            assert times[n] == times[n + 1]


def test_reordered_frame_is_released_by_timeout_when_nothing_follows() -> None:
    clock = VirtualClock()
    a, b = MemoryLink.pair()
    f = FaultLink(a, reorder=1.0, reorder_timeout=0.05, seed=1)
    f.attach(clock)
    b.attach(clock)
    f.send(_frame(1))
    assert b.recv() is None
    assert f.next_deadline() == pytest.approx(0.05)
    clock.advance_to(0.05)
    f.poll(clock.time)
    got = b.recv()
    assert got is not None and _index(got[0]) == 1
    assert f.count("reorder_expired") == 1


def test_ip_medium_corruption_starts_at_the_ip_header() -> None:
    clock = VirtualClock()
    a, b = MemoryLink.pair(medium=Medium.IP)
    f = FaultLink(a, corrupt=1.0, seed=2)
    f.attach(clock)
    b.attach(clock)
    pkt = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2))
    positions = set()
    for _ in range(200):
        f.send(pkt)
        got = b.recv()
        assert got is not None
        diff = [i for i, (x, y) in enumerate(zip(got[0], pkt, strict=True)) if x != y]
        assert len(diff) == 1
        positions.add(diff[0])
    assert min(positions) < 4  # the first bytes are fair game on an IP link


def test_no_faults_is_a_pass_through() -> None:
    clock = VirtualClock()
    a, b = MemoryLink.pair()
    f = FaultLink(a)
    f.attach(clock)
    b.attach(clock)
    f.send(_frame(1))
    assert f.next_deadline() is None
    got = b.recv()
    assert got is not None and got[0] == _frame(1)
    assert not f.faults


def test_parse_faults() -> None:
    assert parse_faults("loss=2%,reorder=5%,delay=10ms,jitter=2ms,seed=7,dir=tx") == {
        "loss": 0.02, "reorder": 0.05, "delay": 0.010, "jitter": 0.002, "seed": 7,
        "direction": "tx",
    }
    assert parse_faults("dup=0.5, corrupt=0.1%, delay=250us, gap=3") == {
        "duplicate": 0.5, "corrupt": 0.001, "delay": 0.00025, "reorder_gap": 3,
    }
    assert parse_faults("delay=1s,direction=rx") == {"delay": 1.0, "direction": "rx"}
    assert parse_faults("") == {}
    f = FaultLink(MemoryLink(), **parse_faults("loss=50%,seed=1"))
    assert f.loss == 0.5 and f.seed == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("drop=5%", "valid keys: loss, duplicate"),
        ("loss=2", "2% .* 0.02"),
        ("loss=150%", "outside"),
        ("delay=10", "needs a unit: 10ms"),
        ("delay=soon", "duration"),
        ("dir=up", "both, rx or tx"),
        ("seed=x", "integer"),
        ("loss", "KEY=VALUE"),
    ],
)
def test_parse_faults_errors_name_the_fix(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_faults(text)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ConfigurationError, match="probability"):
        FaultLink(MemoryLink(), loss=2.0)
    with pytest.raises(ConfigurationError, match="direction"):
        FaultLink(MemoryLink(), direction="in")
    with pytest.raises(ConfigurationError, match="negative"):
        FaultLink(MemoryLink(), delay=-1.0)
