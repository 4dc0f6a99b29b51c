"""Queue disciplines on their own (layers.qdisc): the contract's bookkeeping, ECN marking with
an incremental checksum, RED's early-drop probability, CoDel's control law and count reset,
FQ-CoDel's flow queues, and the registry a third party plugs into."""

from __future__ import annotations

import itertools
import math
import random
import struct
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layers import hookimpl
from layers.errors import CompositionError, ConfigurationError
from layers.qdisc import (
    ECN_CE,
    ECN_ECT0,
    ECN_ECT1,
    CoDel,
    DropTail,
    FQCoDel,
    Packet,
    Qdisc,
    QdiscContext,
    QdiscInfo,
    Red,
    collect_queue_disciplines,
    make_qdisc,
    queue_disciplines,
)
from layers.stack import Stack
from layers.wire import build_ipv4_header, ip4
from layers.wire.checksum import verify

ETH = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"


def ipv4_frame(
    payload: int = 1000, *, tos: int = 0, proto: int = 17, sport: int = 1000, dport: int = 2000,
    src: str = "10.0.0.1", dst: str = "10.0.0.2", ethernet: bool = True, ident: int = 0,
) -> bytes:
    l4 = struct.pack("!HH", sport, dport) + bytes(max(0, payload - 4))
    ip = bytes(build_ipv4_header(ip4(src), ip4(dst), proto, len(l4), tos=tos, ident=ident))
    return (ETH if ethernet else b"") + ip + l4


def pkt(size: int = 1000, **kw: Any) -> Packet:
    return Packet.from_frame(ipv4_frame(size - 34, **kw), ethernet=True)


# --- packets and ECN ------------------------------------------------------------------------------

def test_packet_finds_the_ipv4_header_and_its_ecn_field() -> None:
    p = pkt(tos=0x10 | ECN_ECT0)
    assert p.l3 == 14 and p.ecn == ECN_ECT0 and p.ecn_capable
    assert Packet.from_frame(ipv4_frame(100, tos=ECN_ECT1, ethernet=False), ethernet=False).l3 == 0
    arp = ETH[:12] + b"\x08\x06" + bytes(28)
    assert Packet.from_frame(arp, ethernet=True).l3 == -1
    assert not Packet.from_frame(arp, ethernet=True).set_ce()
    bad_version = bytearray(ipv4_frame(100))
    bad_version[14] = 0x65
    assert Packet.from_frame(bytes(bad_version), ethernet=True).l3 == -1
    assert Packet.from_frame(b"\x45\x00", ethernet=False).l3 == -1  # truncated: not parsed


@pytest.mark.parametrize("ect", [ECN_ECT0, ECN_ECT1])
def test_set_ce_keeps_the_header_checksum_valid(ect: int) -> None:
    rng = random.Random(ect)
    for _ in range(300):
        tos = (rng.randrange(64) << 2) | ect
        frame = ipv4_frame(rng.randrange(0, 200), tos=tos, ident=rng.randrange(65536),
                           src=f"10.{rng.randrange(256)}.{rng.randrange(256)}.1")
        p = Packet.from_frame(frame, ethernet=True)
        assert p.set_ce()
        header = bytes(p.frame[14:34])
        assert header[1] == (tos | ECN_CE), "DSCP kept, ECN field CE"
        assert verify(header), "RFC 1624 incremental update gives a valid checksum"
        assert p.frame[34:] == frame[34:] and p.frame[:14] == frame[:14]
        assert p.set_ce() and bytes(p.frame) == bytes(p.frame)  # CE stays CE


def test_set_ce_refuses_not_ect() -> None:
    p = pkt(tos=0xB8)  # DSCP EF, Not-ECT
    before = bytes(p.frame)
    assert not p.set_ce() and bytes(p.frame) == before


# --- drop-tail ------------------------------------------------------------------------------------

def test_droptail_packet_limit_and_order() -> None:
    q = DropTail(limit=3)
    sent = [pkt(100 + i) for i in range(5)]
    accepted = [q.enqueue(p, 0.001 * i) for i, p in enumerate(sent)]
    assert accepted == [True, True, True, False, False]
    assert len(q) == 3 and q.backlog == 100 + 101 + 102
    assert q.peek() is sent[0]
    out = [q.dequeue(0.01), q.dequeue(0.02), q.dequeue(0.03), q.dequeue(0.04)]
    assert out[:3] == sent[:3] and out[3] is None
    assert out[1] is not None and out[1].sojourn == pytest.approx(0.02 - 0.001)
    st = q.stats
    assert (st.enqueued, st.dequeued, dict(st.drops)) == (3, 3, {"overlimit": 2})
    assert st.sojourn_max == pytest.approx(0.03 - 0.002) and st.max_qlen == 3
    assert len(q) == 0 and q.backlog == 0


def test_droptail_byte_limit() -> None:
    q = DropTail(limit=1000, limit_bytes=2500)
    assert [q.enqueue(pkt(1000), 0) for _ in range(3)] == [True, True, False]
    assert q.enqueue(pkt(500), 0), "a smaller packet still fits"
    assert q.backlog == 2500


def test_limits_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="at least 1"):
        DropTail(limit=0)
    with pytest.raises(ConfigurationError, match="min_th < max_th"):
        Red(min_th=10, max_th=5)
    with pytest.raises(ConfigurationError, match="target"):
        CoDel(target=0)


# --- RED ------------------------------------------------------------------------------------------

def _red_drop_fraction(level: int, n: int = 4000) -> tuple[float, dict[str, int]]:
    """Hold the queue at ``level`` packets (w_q = 1: the average is the queue) and offer ``n``
    arrivals; the fraction dropped."""
    q = Red(min_th=10, max_th=30, max_p=0.2, w_q=1.0, limit=1000, seed=level)
    now = 0.0
    while len(q) < level:
        p = pkt()
        q._enqueued(p, now)  # fill without the early-drop test
        q._q.append(p)
    while len(q) > level:
        q.dequeue(now)
    q.avg = float(level)
    drops = 0
    for _ in range(n):
        now += 0.0001
        if q.enqueue(pkt(), now):
            q.dequeue(now)
        else:
            drops += 1
    return drops / n, dict(q.stats.drops)


def test_red_drops_early_with_a_probability_rising_between_the_thresholds() -> None:
    below, drops = _red_drop_fraction(5)
    assert below == 0.0 and not drops
    fractions = []
    for level in (14, 20, 26):
        f, drops = _red_drop_fraction(level)
        assert set(drops) == {"red_early"}
        # count-corrected RED drops uniformly in 1..1/p_b arrivals: a fraction 2p_b/(1+p_b)
        pb = 0.2 * (level - 10) / 20
        expected = 2 * pb / (1 + pb)
        assert expected * 0.8 < f < expected * 1.2, (level, f, expected)
        fractions.append(f)
    assert fractions == sorted(fractions) and fractions[0] < fractions[-1] / 2
    above, drops = _red_drop_fraction(31)
    assert above == 1.0 and set(drops) == {"red_forced"}


def test_red_average_decays_while_the_queue_is_idle() -> None:
    q = Red(min_th=5, max_th=15, w_q=0.2, rate=8e6, avpkt=1000)  # a small packet per ms
    for _ in range(20):
        q.enqueue(pkt(), 0.0)
    high = q.avg
    while q.dequeue(0.01) is not None:
        pass
    q.enqueue(pkt(), 0.01 + 0.050)  # 50 idle "packet times"
    assert q.avg < high * (0.8 ** 49)


def test_red_marks_ect_packets_instead_of_dropping() -> None:
    q = Red(min_th=1, max_th=3, max_p=1.0, w_q=1.0, ecn=True)
    results = [q.enqueue(pkt(tos=ECN_ECT0), 0.0) for _ in range(10)]
    assert all(results)
    assert q.stats.marked > 0 and q.stats.dropped == 0
    ce = [p for p in (q.dequeue(0.0) for _ in range(10)) if p is not None and p.ecn == ECN_CE]
    assert len(ce) == q.stats.marked
    assert all(verify(bytes(p.frame[14:34])) for p in ce)


# --- CoDel ----------------------------------------------------------------------------------------

def _overload(q: Qdisc, until: float, now: float = 0.0, *, tos: int = 0,
              service: float = 0.001) -> tuple[float, list[float]]:
    """Two arrivals per ``service`` seconds, one departure: a standing queue that grows.
    Returns the time reached and the instants at which CoDel dropped or marked."""
    events = []
    while now < until:
        q.enqueue(pkt(tos=tos), now)
        q.enqueue(pkt(tos=tos), now)
        before = q.stats.dropped + q.stats.marked
        q.dequeue(now)
        if q.stats.dropped + q.stats.marked > before:
            events.append(now)
        now = round(now + service, 9)
    return now, events


def test_codel_waits_an_interval_then_drops_at_interval_over_sqrt_count() -> None:
    q = CoDel(limit=100_000)
    _, drops = _overload(q, 0.6)
    # the packet leaving at t came at t/2: the sojourn first exceeds 5 ms at t = 10 ms, and
    # the first drop comes an interval later
    assert drops[0] == pytest.approx(0.110, abs=0.0015)
    gaps = [b - a for a, b in itertools.pairwise(drops)]
    for count, gap in enumerate(gaps[:6], start=1):
        assert gap == pytest.approx(0.100 / math.sqrt(count), abs=0.0011), (count, gaps)
    assert dict(q.stats.drops) == {"codel": len(drops)}


def test_codel_leaves_a_queue_below_target_alone() -> None:
    q = CoDel()
    now = 0.0
    for _ in range(2000):  # one packet queued behind another at most: 1 ms < 5 ms target
        q.enqueue(pkt(), now)
        q.dequeue(now + 0.001)
        now += 0.001
    assert q.stats.dropped == 0


def test_codel_count_reset_rule_resumes_near_the_last_drop_rate() -> None:
    q = CoDel(limit=100_000)
    now, _ = _overload(q, 0.5)
    v = q.vars
    assert v.dropping and v.count >= 4
    while q.dequeue(now) is not None:  # drain: the dropping state ends
        now += 0.0001
    assert not v.dropping
    peak, last = v.count, v.lastcount
    now += 0.010  # ... and soon (well within 16 intervals) the queue stands again
    while not v.dropping:
        now, _ = _overload(q, now + 0.001, now)
    # RFC 8289: count restarts from count - lastcount, not from 1
    assert v.count == v.lastcount == peak - last > 1
    # long after (more than 16 intervals), it starts from 1 again
    while q.dequeue(now) is not None:
        now += 0.0001
    now += 2.0
    while not v.dropping:
        now, _ = _overload(q, now + 0.001, now)
    assert v.count == 1


def test_codel_marks_ect_packets_with_ecn() -> None:
    q = CoDel(limit=100_000, ecn=True)
    _, marks = _overload(q, 0.4, tos=ECN_ECT1)
    assert q.stats.dropped == 0 and q.stats.marked == len(marks) > 3
    assert dict(q.stats.marks) == {"codel": len(marks)}


# --- FQ-CoDel -------------------------------------------------------------------------------------

def test_fq_codel_serves_a_sparse_flow_first() -> None:
    q = FQCoDel(seed=1)
    for _ in range(50):
        q.enqueue(pkt(1500, sport=1), 0.0)
    for _ in range(3):  # the bulk flow has had its first quantum: it moves to the old list
        q.dequeue(0.0)
    sparse = pkt(100, sport=2)
    q.enqueue(sparse, 0.001)
    assert q.dequeue(0.002) is sparse, "a newly active flow goes before the old ones"


def test_fq_codel_deficit_round_robin_shares_bytes_not_packets() -> None:
    q = FQCoDel(seed=2, quantum=1514)
    for _ in range(400):
        q.enqueue(pkt(1500, sport=1), 0.0)
        q.enqueue(pkt(300, sport=2), 0.0)
        q.enqueue(pkt(300, sport=2), 0.0)
        q.enqueue(pkt(300, sport=2), 0.0)
    got = {1: 0, 2: 0}
    for _ in range(600):
        p = q.dequeue(0.0001)  # no standing delay: CoDel stays out of it
        assert p is not None
        got[1 if len(p.frame) == 1500 else 2] += p.size
    assert got[1] == pytest.approx(got[2], rel=0.1), got


def test_fq_codel_drops_from_the_fattest_flow_when_full() -> None:
    q = FQCoDel(limit=12, seed=3)
    fat = [pkt(1500, sport=1) for _ in range(10)]
    thin = [pkt(200, sport=2) for _ in range(3)]
    for p in fat:
        assert q.enqueue(p, 0.0)
    assert q.enqueue(thin[0], 0.0) and q.enqueue(thin[1], 0.0)
    assert q.enqueue(thin[2], 0.0), "the newcomer stays; the fat flow pays"
    assert dict(q.stats.drops) == {"overlimit": 1} and len(q) == 12
    assert fat[0] not in [p for f in q._flows.values() for p in f.q]
    assert sum(1 for f in q._flows.values() for p in f.q if p in thin) == 3


def test_fq_codel_hash_perturbation_comes_from_the_seed() -> None:
    a, b, c = FQCoDel(seed=1), FQCoDel(seed=1), FQCoDel(seed=2)
    flows = [pkt(sport=i) for i in range(64)]
    assert [a.classify(p) for p in flows] == [b.classify(p) for p in flows]
    assert [a.classify(p) for p in flows] != [c.classify(p) for p in flows]
    assert len({a.classify(p) for p in flows}) > 50


# --- the registry ---------------------------------------------------------------------------------

class _Strict(DropTail):
    name = "strict"


class _ThirdParty:
    """A plugin as a third party writes it (an object with hook implementations)."""

    @hookimpl
    def layers_queue_disciplines(self) -> Iterable[QdiscInfo]:
        return [QdiscInfo("strict", lambda ctx: _Strict(limit=ctx.settings["limit"]),
                          {"limit": 7}, "a tiny drop-tail")]


def test_builtins_come_through_the_hook() -> None:
    found = queue_disciplines(Stack(["ipv4"]).pm)
    assert {"droptail", "pfifo", "bfifo", "red", "codel", "fq_codel"} <= set(found)
    q = make_qdisc(found["codel"], {"target": "2ms", "interval": "50ms", "limit": "64"})
    assert isinstance(q, CoDel) and q.target == 0.002 and q.interval == 0.05 and q.limit == 64
    q = make_qdisc(found["red"], {"max_p": "5%", "ecn": "1"}, rate=1e6, seed=3)
    assert isinstance(q, Red) and q.max_p == 0.05 and q.ecn and q.s == pytest.approx(0.008)
    assert make_qdisc(found["fq_codel"], {}).ecn, "FQ-CoDel marks by default (RFC 8290)"


def test_a_third_party_discipline_registers_the_same_way() -> None:
    found = queue_disciplines(Stack(["ipv4", _ThirdParty()]).pm)
    q = make_qdisc(found["strict"], {"limit": "2"})
    assert isinstance(q, _Strict) and q.limit == 2
    with pytest.raises(ConfigurationError, match=r"queue strict has no setting 'target'.*limit"):
        make_qdisc(found["strict"], {"target": "5ms"})


def test_registry_errors_name_the_fix() -> None:
    info = QdiscInfo("x", lambda ctx: DropTail())
    with pytest.raises(CompositionError, match="LAYERS_DISABLE_PLUGINS"):
        collect_queue_disciplines([[info], [QdiscInfo("x", lambda ctx: DropTail())]])
    with pytest.raises(CompositionError, match="QdiscInfo"):
        collect_queue_disciplines([["codel"]])
    assert set(collect_queue_disciplines([{"y": lambda ctx: DropTail()}])) == {"y"}
    codel = queue_disciplines(Stack(["ipv4"]).pm)["codel"]
    with pytest.raises(ConfigurationError, match="needs a unit"):
        make_qdisc(codel, {"target": "5"})
    with pytest.raises(ConfigurationError, match="1 or 0"):
        make_qdisc(codel, {"ecn": "maybe"})
    with pytest.raises(ConfigurationError, match="size in bytes"):
        make_qdisc(codel, {"limit": "lots"})
    not_a_queue = QdiscInfo("z", lambda ctx: object())  # type: ignore[arg-type,return-value]
    with pytest.raises(CompositionError, match=r"not a layers\.qdisc\.Qdisc"):
        make_qdisc(not_a_queue)


def test_context_carries_mtu_rate_and_seed() -> None:
    seen: list[QdiscContext] = []

    def factory(ctx: QdiscContext) -> Qdisc:
        seen.append(ctx)
        return DropTail()

    make_qdisc(QdiscInfo("w", factory, {"limit": 5}), {"limit": 9}, mtu=1514, rate=1e7, seed=4)
    assert seen[0] == QdiscContext(settings={"limit": 9}, mtu=1514, rate=1e7, seed=4)


# --- every discipline keeps its books under any sequence of events --------------------------------

_QUEUES = {
    "droptail": lambda: DropTail(limit=20, limit_bytes=12_000),
    "red": lambda: Red(limit=30, min_th=3, max_th=9, w_q=0.2, ecn=True, seed=1),
    "codel": lambda: CoDel(limit=25, ecn=True),
    "fq_codel": lambda: FQCoDel(limit=25, flows=8, quantum=300, seed=1),
}

_frames = st.one_of(
    st.builds(lambda n, tos, sport: ipv4_frame(n, tos=tos, sport=sport),
              st.integers(4, 1400), st.integers(0, 255), st.integers(0, 5)),
    st.binary(min_size=0, max_size=80),  # anything a link might hand over
)
_events = st.lists(st.one_of(st.tuples(st.just("in"), _frames), st.just("out"),
                             st.floats(0.0, 0.3)), max_size=150)


@pytest.mark.parametrize("name", sorted(_QUEUES))
@settings(max_examples=60, deadline=None)
@given(events=_events)
def test_every_packet_is_sent_held_or_dropped_exactly_once(
    name: str, events: list[Any]
) -> None:
    q = _QUEUES[name]()
    now = 0.0
    arrived = 0
    for event in events:
        if isinstance(event, float):
            now += event
        elif event == "out":
            p = q.dequeue(now)
            if p is not None:
                assert 0 <= p.sojourn == now - p.enqueued_at
        else:
            arrived += 1
            q.enqueue(Packet.from_frame(event[1], ethernet=True), now)
        s = q.stats
        assert s.dequeued + len(q) + s.dropped == arrived
        assert q.backlog >= 0 and (len(q) > 0 or q.backlog == 0)
        assert s.dropped == sum(s.drops.values()) and s.marked == sum(s.marks.values())
        assert (q.peek() is None) == (len(q) == 0)
    while q.dequeue(now) is not None:
        pass
    assert len(q) == 0 and q.backlog == 0
    assert q.stats.dequeued + q.stats.dropped == arrived


def test_the_contributing_example_works() -> None:
    """CONTRIBUTING.md's queue discipline, run as written: registered through the hook and
    picked by a shaper spec, it sends the shortest waiting packet first."""
    from pathlib import Path

    from layers.links.shaper import ShaperLink

    text = (Path(__file__).parents[2] / "CONTRIBUTING.md").read_text()
    start = text.index("import heapq\nfrom layers.qdisc")
    code = text[start:text.index("```", start)]
    namespace: dict[str, Any] = {"Iterable": Iterable, "hookimpl": hookimpl}
    exec(compile(code, "CONTRIBUTING.md", "exec"), namespace)  # our own documentation

    class Plugin:
        layers_queue_disciplines = staticmethod(namespace["layers_queue_disciplines"])

    from layers.links.memory import MemoryLink
    from layers.timers import VirtualClock

    clock = VirtualClock()
    near, far = MemoryLink.pair()
    link = ShaperLink(near, "rate=1mbit,queue=spf,limit=20p,dir=tx",
                      pm=Stack(["ipv4", Plugin()]).pm)
    link.attach(clock)
    far.attach(clock)
    for size in (900, 700, 300, 500):
        link.send(ipv4_frame(size - 34))
    while (d := link.next_deadline()) is not None:
        clock.advance_to(d)
        link.poll(d)
    sizes = [len(f) for f, _ in iter(far.recv, None)]
    assert sizes == [900, 300, 500, 700], "the first went at once, then shortest first"
    assert link.tx is not None and link.tx.qdisc.name == "spf"
