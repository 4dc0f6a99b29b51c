"""The bottleneck link wrapper (layers.links.shaper): exact serialisation and propagation
arithmetic, a saturating TCP flow delivering the configured rate, drop-tail's standing queue
against CoDel's 5 ms, FQ-CoDel's isolation of a sparse flow, ECN marks on the wire, the spec
parser, reports, and the same wrapper on a real clock under asyncio.

Figures are measured on the virtual clock, so every run gives the same numbers; print them
with ``pytest -s tests/links/test_link_shaper.py -k figures``."""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

import pytest

from layers.errors import ConfigurationError
from layers.links.base import LinkCapabilities, Medium
from layers.links.faults import FaultLink
from layers.links.memory import MemoryLink
from layers.links.shaper import (
    BottleneckPath,
    Shape,
    ShaperLink,
    parse_rate,
    parse_shape,
    wire_size,
)
from layers.ping import echo_service
from layers.protocols import EchoReply
from layers.qdisc import ECN_CE, ECN_ECT0, CoDel, Red
from layers.runtime import AsyncioRunner
from layers.stack import Stack
from layers.timers import VirtualClock
from layers.virtual import VirtualNetwork
from layers.wire import build_ipv4_header, ip4
from layers.wire.checksum import verify

PLUGINS = ["arp", "ipv4", "icmp", "tcp"]
ETH = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"


def frame(size: int, tos: int = 0) -> bytes:
    ip = bytes(build_ipv4_header(ip4("10.0.0.1"), ip4("10.0.0.2"), 17, size - 34, tos=tos))
    return ETH + ip + bytes(size - 34)


def wired(spec: str | Shape, **kw: Any) -> tuple[VirtualClock, ShaperLink, MemoryLink]:
    """A shaper on one end of a memory pair, on a virtual clock; returns the far end too."""
    clock = VirtualClock()
    near, far = MemoryLink.pair()
    link = ShaperLink(near, spec, **kw)
    link.attach(clock)
    far.attach(clock)
    return clock, link, far


def rtt_of(reply: EchoReply | OSError) -> float:
    """The round trip of an echo that was answered (a timeout or ICMP error fails the test)."""
    assert isinstance(reply, EchoReply), f"the echo was not answered: {reply!r}"
    return reply.rtt


def run_link(clock: VirtualClock, link: ShaperLink, far: MemoryLink,
             until: float) -> list[tuple[float, bytes]]:
    """Step the clock through the shaper's and the far end's deadlines; what ``far`` got."""
    got: list[tuple[float, bytes]] = []
    while True:
        nxt = [d for d in (link.next_deadline(), far.next_deadline()) if d is not None]
        if not nxt or min(nxt) > until:
            return got
        clock.advance_to(min(nxt))
        link.poll(clock.time)
        while (r := far.recv()) is not None:
            got.append((clock.time, r[0]))


# --- the arithmetic ---------------------------------------------------------------------------

def test_one_frame_takes_its_serialisation_then_the_delay() -> None:
    clock, link, far = wired("rate=1mbit,delay=20ms,dir=tx")
    link.send(frame(1000))
    got = run_link(clock, link, far, 1.0)
    assert len(got) == 1
    assert got[0][0] == pytest.approx(1000 * 8 / 1e6 + 0.020, abs=1e-12)


def test_back_to_back_frames_leave_one_serialisation_apart() -> None:
    clock, link, far = wired("rate=8mbit,delay=5ms,dir=tx,overhead=24")
    clock.advance_to(1.0)
    for size in (1000, 500, 1500):
        link.send(frame(size))
    clock.advance_to(1.0005)  # a late frame: it waits for the wire, not for its arrival
    link.send(frame(100))
    got = [t - 1.0 for t, _ in run_link(clock, link, far, 2.0)]
    ser = [(n + 24) * 8 / 8e6 for n in (1000, 500, 1500, 100)]
    ends = [sum(ser[:i + 1]) for i in range(4)]
    assert got == pytest.approx([e + 0.005 for e in ends], abs=1e-9)
    tx = link.tx
    assert tx is not None and tx.qdisc.stats.dequeued == 4
    assert tx.busy_time == pytest.approx(sum(ser))
    # the fourth frame waited from 1.0005 until the wire freed at 1.0 + ends[2]
    assert tx.series is not None and tx.series.sojourn[3] == pytest.approx(ends[2] - 0.0005)
    # an idle wire starts the next frame on arrival
    clock.advance_to(3.0)
    link.send(frame(1000))
    later = run_link(clock, link, far, 4.0)
    assert later[0][0] == pytest.approx(3.0 + 1024 * 8 / 8e6 + 0.005)


def test_the_rate_can_change_mid_run() -> None:
    clock, link, far = wired("rate=8mbit,dir=tx")
    for _ in range(3):
        link.send(frame(1000))  # 1 ms each at 8 Mbit/s
    got = [t for t, _ in run_link(clock, link, far, 0.0015)]
    clock.advance_to(0.0015)  # the second frame is on the wire
    link.set_rate(4e6)
    got += [t for t, _ in run_link(clock, link, far, 1.0)]
    assert got == pytest.approx([0.001, 0.002, 0.004])
    with pytest.raises(ConfigurationError, match="positive"):
        link.set_rate(0)


def test_receive_direction_is_shaped_before_the_stack_sees_frames() -> None:
    clock, link, far = wired("rate=2mbit,delay=1ms,dir=rx")
    far.send(frame(1000))
    far.send(frame(1000))
    arrivals = []
    while (d := link.next_deadline()) is not None:
        clock.advance_to(d)
        link.poll(clock.time)
        while link.recv() is not None:
            arrivals.append(clock.time)
    assert arrivals == pytest.approx([0.004 + 0.001, 0.008 + 0.001])
    assert link.tx is None and link.rx is not None and link.rx.delivered == 2


def test_gso_is_withdrawn_and_super_frames_count_their_wire_size() -> None:
    inner = MemoryLink()
    inner.capabilities = LinkCapabilities(mtu=1500, gso_max_size=65536, tx_checksum=True)
    link = ShaperLink(inner, "rate=1gbit")
    assert link.capabilities.gso_max_size == 0 and link.capabilities.tx_checksum
    # a 64 KiB TCP super-frame (20 + 32 byte headers): 1448-byte segments on the wire
    payload = 45 * 1448 + 100
    tcp = bytearray(32)
    tcp[12] = 8 << 4
    ip = bytes(build_ipv4_header(1, 2, 6, 32 + payload))
    sup = ETH + ip + bytes(tcp) + bytes(payload)
    assert wire_size(sup, 14, 1500) == len(sup) + 45 * (14 + 20 + 32)
    assert wire_size(frame(1514), 14, 1500) == 1514


# --- the spec -----------------------------------------------------------------------------------

def test_spec_parser_reads_units() -> None:
    s = parse_shape("rate=100mbit,delay=20ms,queue=codel,limit=1000p,ecn=1,dir=tx,target=2ms")
    assert (s.rate, s.delay, s.queue, s.direction) == (100e6, 0.020, "codel", "tx")
    assert dict(s.queue_settings) == {"limit": 1000, "ecn": True, "target": "2ms"}
    assert parse_shape("rate=1.5gbit,delay=250us,limit=64kB").queue_settings == {
        "limit_bytes": 64000}
    assert parse_shape("rate=512kbit,limit=2MiB,overhead=24,seed=3").overhead == 24
    assert parse_rate("10bit") == 10 and parse_rate("2Mbit") == 2e6


@pytest.mark.parametrize(("spec", "message"), [
    ("delay=10ms", "has no rate: add rate="),
    ("rate=100", "needs a unit: 100mbit"),
    ("rate=100mbps", "write 100mbit for bits per second"),
    ("rate=fast", "should be a rate such as 100mbit"),
    ("rate=0mbit", "more than zero"),
    ("rate=1mbit,delay=20", "needs a unit: 20ms"),
    ("rate=1mbit,limit=many", "packets \\(1000p\\) or bytes"),
    ("rate=1mbit,limit=0p", "more than zero"),
    ("rate=1mbit,dir=up", "use both, tx"),
    ("rate=1mbit,ecn=maybe", "1 or 0"),
    ("rate=1mbit,delay", "should be KEY=VALUE"),
    ("rate=1mbit,queue=a b", "discipline's name"),
])
def test_spec_errors_name_the_fix(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_shape(spec)


def test_queue_errors_come_when_the_shaper_is_made() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown queue discipline 'sfq'; known: .*codel"):
        ShaperLink(MemoryLink(), "rate=1mbit,queue=sfq")
    with pytest.raises(ConfigurationError, match="queue droptail has no setting 'target'"):
        ShaperLink(MemoryLink(), "rate=1mbit,target=5ms")
    with pytest.raises(ConfigurationError, match="needs a shape"):
        ShaperLink(MemoryLink())
    with pytest.raises(ConfigurationError, match="positive number of bits"):
        Shape(rate=-1)


# --- ECN on the wire --------------------------------------------------------------------------

def test_marks_reach_the_far_end_with_a_valid_checksum() -> None:
    clock, link, far = wired("rate=1mbit,queue=red,min_th=1,max_th=4,w_q=1,ecn=1,dir=tx")
    for i in range(30):
        link.send(frame(500, tos=ECN_ECT0 if i % 3 else 0))
    got = run_link(clock, link, far, 10.0)
    tx = link.tx
    assert tx is not None and isinstance(tx.qdisc, Red)
    st = tx.qdisc.stats
    ce = [f for _, f in got if f[15] & 3 == ECN_CE]
    assert st.marked == len(ce) > 0
    assert st.dropped > 0, "not-ECT packets are dropped where ECT ones are marked"
    assert len(got) + st.dropped == 30
    assert all(verify(f[14:34]) for _, f in got)


# --- two stacks through a bottleneck --------------------------------------------------------------

class Sink:
    def __init__(self) -> None:
        self.n = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.n += len(data)

    def eof_received(self) -> bool:
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


class Blast:
    """An unresponsive UDP sender: ``size``-byte datagrams at ``rate`` bits/s, a -> b:9999."""

    def __init__(self, stack: Stack, rate: float, size: int = 1400) -> None:
        self.stack = stack
        self.gap = (size + 42) * 8 / rate
        self.payload = bytes(size)
        self.ep = stack.protocol("udp").open_datagram_endpoint(
            self, remote=(ip4("10.0.0.2"), 9999))
        stack.call_soon(self.tick)

    def tick(self) -> None:
        self.ep.sendto(self.payload)
        self.stack.call_later(self.gap, self.tick)

    def on_datagram(self, data: bytes, src: int, sport: int) -> None:
        pass

    def on_error(self, exc: OSError) -> None:
        pass  # port unreachable from b: the blast goes on regardless

    def on_close(self, exc: OSError | None) -> None:
        pass


def bulk(spec: str, seconds: float = 3.0, *, pings: bool = False,
         faults: str | None = None, blast: float = 0.0) -> tuple[BottleneckPath, dict[str, Any]]:
    """A TCP bulk flow a -> b through ``spec`` for ``seconds`` (virtual); optionally a ping
    every 50 ms alongside, or an unresponsive UDP flow of ``blast`` bits/s. Returns the path
    and figures measured over the second half."""
    net = VirtualNetwork()
    settings = {"tcp.secret": "ab" * 16}
    plugins = [*PLUGINS, "udp"] if blast else PLUGINS
    a = net.new_stack(plugins, settings=settings, name="a")
    b = net.new_stack(plugins, settings=settings, name="b")
    path = net.bottleneck(a, b, spec, addresses=("10.0.0.1/24", "10.0.0.2/24"), faults=faults)
    a.start()
    b.start()
    server = Sink()
    b.protocol("tcp").listen(lambda: server, 0, 9)
    client = Sink()
    conn = a.protocol("tcp").connect(client, ip4("10.0.0.2"), 9)
    assert net.run_until_true(lambda: client.transport is not None, timeout=5)
    if blast:
        Blast(a, blast)
    chunk = bytes(1 << 16)
    rtts: list[float] = []
    echo = echo_service(a)
    start = net.now
    half = start + seconds / 2
    mark: tuple[float, int, int] | None = None
    seq = 0
    while net.now < start + seconds:
        while conn.get_write_buffer_size() < 1 << 20:
            conn.write(chunk)
        if pings and net.now >= half:
            seq += 1
            echo.echo(ip4("10.0.0.2"), ident=7, seq=seq, payload=b"p" * 56,
                      callback=lambda r: rtts.append(rtt_of(r)))
        net.run_for(0.05)
        if mark is None and net.now >= half:
            mark = (net.now, server.n, path.forward.delivered_bytes)
    assert mark is not None
    elapsed = net.now - mark[0]
    fwd = path.forward
    series = fwd.series
    assert series is not None
    figures = {
        "goodput": (server.n - mark[1]) * 8 / elapsed,
        "wire_rate": (fwd.delivered_bytes - mark[2]) * 8 / elapsed,
        "sojourn_p50": series.percentile(50, since=half),
        "sojourn_p90": series.percentile(90, since=half),
        "sojourn_max": max(series.sojourn),
        "drops": dict(fwd.qdisc.stats.drops),
        "ping_rtts": rtts,
        "path": path,
    }
    return path, figures


RATE = 10e6
BASE = "rate=10mbit,delay=10ms,seed=1"


def test_a_saturating_flow_gets_the_configured_rate() -> None:
    path, f = bulk(f"{BASE},queue=droptail,limit=100p")
    # frames on the wire: within 2% of 10 Mbit/s; TCP payload: 1448 of every 1514 bytes
    assert f["wire_rate"] == pytest.approx(RATE, rel=0.02)
    assert f["goodput"] == pytest.approx(RATE * 1448 / 1514, rel=0.03)
    assert path.forward.utilisation(path.a.stack.now) > 0.9  # slow start included


def test_droptail_stands_at_its_limit_while_codel_holds_its_target() -> None:
    _, tail = bulk(f"{BASE},queue=droptail,limit=100p")
    _, codel = bulk(f"{BASE},queue=codel")
    full = 100 * 1514 * 8 / RATE  # 121 ms to drain a full drop-tail queue
    assert tail["sojourn_p50"] > 0.5 * full
    assert 0.95 * full <= tail["sojourn_max"] <= full + 0.002, "it reaches its limit"
    assert "overlimit" in tail["drops"]
    assert codel["sojourn_p50"] < 0.010 and codel["sojourn_p90"] < 0.015
    assert set(codel["drops"]) == {"codel"}
    drop_times = codel["path"].forward.series.drops
    assert drop_times.total == codel["drops"]["codel"] and list(drop_times.time) == sorted(
        drop_times.time)
    assert codel["wire_rate"] > 0.9 * RATE, "CoDel keeps the link busy"


def test_fq_codel_keeps_a_sparse_flow_fast_beside_a_bulk_one() -> None:
    base_rtt = 2 * 0.010 + 2 * (98 * 8 / RATE)
    _, tail = bulk(f"{BASE},queue=droptail,limit=100p", pings=True)
    _, fq = bulk(f"{BASE},queue=fq_codel", pings=True)
    assert len(fq["ping_rtts"]) > 20 and len(tail["ping_rtts"]) > 20
    fq_median = statistics.median(fq["ping_rtts"])
    assert fq_median < base_rtt + 0.003, "the pings jump the bulk flow's queue"
    assert statistics.median(tail["ping_rtts"]) > base_rtt + 0.050
    assert fq["wire_rate"] > 0.9 * RATE


def test_fq_codel_shares_the_link_with_an_unresponsive_flow() -> None:
    # a UDP flow at 1.5 times the link's rate: one queue lets it crowd TCP out, flow queues
    # give TCP its half
    # 5 s: the figures come from the second half, and TCP needs the first to reach its share
    # (3 s gave 3.95 Mbit/s from slow start's losses; 12 s gives 4.67 of the 4.78 possible)
    _, one_queue = bulk(f"{BASE},queue=codel", seconds=5.0, blast=1.5 * RATE)
    _, fq = bulk(f"{BASE},queue=fq_codel", seconds=5.0, blast=1.5 * RATE)
    assert one_queue["goodput"] < 0.2 * RATE
    assert fq["goodput"] > 0.4 * RATE
    assert fq["wire_rate"] == pytest.approx(RATE, rel=0.02)


def test_faults_and_shaping_stack_up() -> None:
    path, f = bulk(f"{BASE},queue=codel", seconds=2.0, faults="loss=1%,seed=5")
    end_b = path.b.link
    assert isinstance(end_b, FaultLink) and end_b.count("loss") > 0
    assert f["goodput"] > 0.5 * RATE


def test_figures(capsys: pytest.CaptureFixture[str]) -> None:
    """The figures the issue asks for, printed (``pytest -s -k figures``); the assertions are
    in the tests above."""
    rows = []
    for queue in ("droptail,limit=100p", "codel", "fq_codel", "red,min_th=20,max_th=60"):
        _, f = bulk(f"{BASE},queue={queue}")
        rows.append(f"{queue:24} wire {f['wire_rate'] / 1e6:6.3f} Mbit/s of 10  goodput "
                    f"{f['goodput'] / 1e6:6.3f}  sojourn p50 {f['sojourn_p50'] * 1e3:7.2f} ms "
                    f"p90 {f['sojourn_p90'] * 1e3:7.2f} ms  drops {f['drops']}")
    with capsys.disabled():
        print("\n" + "\n".join(rows))


# --- reports ----------------------------------------------------------------------------------

def test_report_and_netstat_statistics_show_the_queue() -> None:
    from layers.cli.report import format_statistics

    net = VirtualNetwork()
    a, b = net.new_stack(["arp", "ipv4", "icmp"]), net.new_stack(["arp", "ipv4", "icmp"])
    path = net.bottleneck(a, b, "rate=1mbit,delay=5ms,queue=codel,limit=3p",
                          addresses=("10.0.0.1/24", "10.0.0.2/24"), reverse="none")
    a.start()
    b.start()
    echo = echo_service(a)
    net.run_for(0.1)
    replies: list[Any] = []
    for seq in range(10):  # a burst: 3 fit in the queue
        echo.echo(ip4("10.0.0.2"), ident=1, seq=seq, payload=bytes(1000), callback=replies.append)
    net.run_for(1.0)
    assert len(replies) == 10 and sum(1 for r in replies if isinstance(r, OSError)) == 6
    assert path.reverse is None
    report = a.report()
    group = report["counters"]["shaper mem0 tx (codel)"]
    assert group["drops"] == {"overlimit": 6}
    assert group["counters"]["frames_delivered"] == path.forward.delivered >= 4
    text = format_statistics(report)
    assert "shaper mem0 tx (codel):" in text and "6 overlimit" in text
    d = path.shaper.describe()
    assert d["wrappers"] == ["ShaperLink"]
    shaper = d["shaper"]
    assert isinstance(shaper, dict) and set(shaper) == {"tx"}
    assert shaper["tx"]["config"]["queue"] == "codel" and shaper["tx"]["queue"]["limit"] == 3
    assert shaper["tx"]["series"]["samples"] == path.forward.delivered
    series = path.forward.series
    assert series is not None and series.drops.total == 6 and len(series.drops) == 6
    assert all(0.1 <= t < 0.11 for t in series.drops.time), "the burst's tail, on arrival"
    figures = path.describe()
    assert set(figures) == {"forward"} and figures["forward"]["queue"]["stats"]["dropped"] == 6


def test_series_decimates_and_writes_csv(tmp_path: Any) -> None:
    clock, link, far = wired("rate=100mbit,dir=tx", max_samples=8)
    for _ in range(100):
        link.send(frame(100))
    run_link(clock, link, far, 1.0)
    tx = link.tx
    assert tx is not None and tx.series is not None
    assert len(tx.series) < 8 and tx.series.stride == 16
    assert list(tx.series.time) == sorted(tx.series.time)
    out = tmp_path / "q.csv"
    tx.series.write_csv(out)
    lines = out.read_text().splitlines()
    assert lines[0] == "time,sojourn,qlen,backlog" and len(lines) == len(tx.series) + 1


def test_bottleneck_wants_stacks_of_its_network() -> None:
    net = VirtualNetwork()
    a = net.new_stack(["ipv4"])
    with pytest.raises(ConfigurationError, match="new_stack"):
        net.bottleneck(a, Stack(["ipv4"]), "rate=1mbit")
    with pytest.raises(ConfigurationError, match="reverse="):
        net.bottleneck(a, net.new_stack(["ipv4"]), "rate=1mbit,dir=rx")


# --- on a real clock --------------------------------------------------------------------------

def test_delay_holds_in_real_time_under_asyncio() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        sa = Stack(["arp", "ipv4", "icmp"], clock=loop.time, name="a")
        sb = Stack(["arp", "ipv4", "icmp"], clock=loop.time, name="b")
        ma, mb = MemoryLink.pair(("sa", "sb"), medium=Medium.ETHERNET)
        sa.add_interface(ShaperLink(ma, "rate=10mbit,delay=15ms,queue=codel"),
                         address="10.0.0.1/24")
        sb.add_interface(mb, address="10.0.0.2/24")
        ra, rb = AsyncioRunner(sa, loop), AsyncioRunner(sb, loop)
        ra.start()
        rb.start()
        rtts: list[float] = []
        try:
            echo = echo_service(sa)
            for seq in range(3):
                done: asyncio.Future[float] = loop.create_future()

                def answered(r: EchoReply | OSError, done: asyncio.Future[float] = done) -> None:
                    done.set_result(rtt_of(r))

                echo.echo(ip4("10.0.0.2"), ident=1, seq=seq, payload=b"x" * 56,
                          callback=answered)
                rtts.append(await asyncio.wait_for(done, 2.0))
        finally:
            ra.stop()
            rb.stop()
        return rtts

    rtts = asyncio.run(main())
    # 15 ms each way plus 2 x 0.08 ms of serialisation; the loop adds a little
    assert all(0.030 <= r < 0.080 for r in rtts), rtts


def test_a_codel_queue_is_usable_directly() -> None:
    q = CoDel()
    assert q.describe()["target"] == 0.005
