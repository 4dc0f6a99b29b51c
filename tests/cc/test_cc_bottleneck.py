"""CUBIC and BBR inside the real TCP engine: two stacks on the virtual clock joined through the
shaper's bottleneck (``VirtualNetwork.bottleneck``), each algorithm picked per connection,
watched through ``stack.telemetry``. Short runs (a few virtual seconds)."""

from __future__ import annotations

import hashlib
import statistics
from typing import Any

import pytest

from layers.telemetry import ConnectionSample
from layers.virtual import VirtualNetwork
from layers.wire import ip4

PLUGINS = ["arp", "ipv4", "tcp", "cubic", "bbr"]
WIRE = 1514  # bytes on the wire per full segment (Ethernet + IPv4 + TCP with timestamps)
PAYLOAD = 1448


class Sink:
    """Counts and hashes what arrives."""

    def __init__(self) -> None:
        self.n = 0
        self.sha = hashlib.sha256()
        self.eof = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.n += len(data)
        self.sha.update(data)

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


def transfer(cc: str | None, spec: str, *, seconds: float, total: int | None = None,
             settings: dict[str, Any] | None = None,
             plugins: list[Any] | None = None) -> dict[str, Any]:
    """A bulk flow a -> b with congestion control ``cc`` (None: the stack's setting) through
    ``spec``: ``total`` bytes (then FIN), or as much as fits in ``seconds``. Returns the
    samples and figures."""
    net = VirtualNetwork()
    st = {"tcp.secret": "cd" * 16, **(settings or {})}
    a = net.new_stack(plugins or PLUGINS, settings=st, name="a")
    b = net.new_stack(plugins or PLUGINS, settings=st, name="b")
    path = net.bottleneck(a, b, spec, addresses=("10.0.0.1/24", "10.0.0.2/24"))
    a.start()
    b.start()
    samples: list[ConnectionSample] = []
    a.telemetry.subscribe(samples.append)
    server = Sink()
    b.protocol("tcp").listen(lambda: server, 0, 9)
    client = Sink()
    options = {"congestion_control": cc} if cc else {}
    conn = a.protocol("tcp").connect(client, ip4("10.0.0.2"), 9, **options)
    assert net.run_until_true(lambda: client.transport is not None, timeout=5)
    start = net.now
    sent = hashlib.sha256()
    written = 0
    block = bytes(range(256)) * 256  # 64 KiB, not all zeros
    while net.now < start + seconds:
        while conn.get_write_buffer_size() < 1 << 20 and (total is None or written < total):
            n = len(block) if total is None else min(len(block), total - written)
            conn.write(block[:n])
            sent.update(block[:n])
            written += n
            if total is not None and written >= total:
                conn.write_eof()
        net.run_for(0.05)
        if total is not None and server.eof:
            break
    return {"net": net, "path": path, "samples": samples, "server": server, "sent": sent,
            "written": written, "start": start, "end": net.now}


# --- BBR ----------------------------------------------------------------------------------

RATE = 20e6  # bits/s
SPEC = "rate=20mbit,delay=10ms,queue=droptail,limit=200p"  # RTT 20 ms, a 5.8-BDP queue


def test_bbr_estimates_the_bottleneck_and_keeps_its_queue_small() -> None:
    r = transfer("bbr", SPEC, seconds=4.0)
    samples = [s for s in r["samples"] if s.cc == "bbr"]
    assert samples, "telemetry carries BBR's samples"
    modes = [s.cc_state["mode"] for s in samples]
    assert modes[0] == "STARTUP" and "DRAIN" in modes and modes[-1] in ("PROBE_BW", "PROBE_RTT")
    # BBR counts payload bytes; the bottleneck's rate includes the headers
    capacity = RATE / 8 * PAYLOAD / WIRE
    late = [s for s in samples if s.time > r["start"] + 2.0]
    est = statistics.median(s.cc_state["btl_bw"] for s in late)
    min_rtt = statistics.median(s.cc_state["min_rtt"] for s in late)
    bdp_bytes = RATE / 8 * min_rtt
    # the queue the bottleneck held in the second half, from its own series
    series = r["path"].forward.series
    backlog = series.percentile(50, field="backlog", since=r["start"] + 2.0)
    backlog_p90 = series.percentile(90, field="backlog", since=r["start"] + 2.0)
    print(f"\nBBR through {SPEC}: btl_bw {est * 8 / 1e6:.2f} Mbit/s of payload capacity "
          f"{capacity * 8 / 1e6:.2f} ({est / capacity - 1:+.1%}); min_rtt {min_rtt * 1e3:.2f} "
          f"ms; queue median {backlog / 1e3:.1f} kB, p90 {backlog_p90 / 1e3:.1f} kB, "
          f"BDP {bdp_bytes / 1e3:.1f} kB; pacing {late[-1].pacing_rate}")
    assert est == pytest.approx(capacity, rel=0.10)
    assert min_rtt == pytest.approx(0.020, rel=0.25)
    assert backlog <= bdp_bytes and backlog_p90 <= 1.5 * bdp_bytes
    # paced at gain x estimate
    assert all(s.pacing_rate for s in late)
    goodput = (r["server"].n) / (r["end"] - r["start"])
    assert goodput > 0.8 * capacity


def test_bbr_through_a_shallow_queue() -> None:
    # 20 packets of queue: STARTUP overflows it, timeouts and recovery follow, and the
    # estimate must still be the bottleneck's rate, not the bursts an RTO's ACKs deliver
    spec = "rate=20mbit,delay=10ms,queue=droptail,limit=20p"
    r = transfer("bbr", spec, seconds=3.0)
    capacity = RATE / 8 * PAYLOAD / WIRE
    late = [s for s in r["samples"] if s.cc == "bbr" and s.time > r["start"] + 1.5]
    est = statistics.median(s.cc_state["btl_bw"] for s in late)
    goodput = r["server"].n / (r["end"] - r["start"])
    print(f"\nBBR through {spec}: btl_bw {est / capacity - 1:+.1%} of capacity, goodput "
          f"{goodput / capacity:.0%} of it, {late[-1].retransmits} retransmissions")
    assert est == pytest.approx(capacity, rel=0.10)
    assert max(s.cc_state["btl_bw"] for s in late) < 1.2 * capacity
    assert goodput > 0.7 * capacity


# --- CUBIC --------------------------------------------------------------------------------

C = 0.4
BETA = 0.7


def test_cubic_transfer_completes_and_its_window_is_cubic() -> None:
    # 10 Mbit/s and 100 ms: a BDP of ~86 segments, large enough that CUBIC's curve, not the
    # Reno-friendly region, drives the window after a loss (RFC 9438 4.3)
    spec = "rate=10mbit,delay=50ms,queue=droptail,limit=60p"
    total = 8 << 20
    r = transfer("cubic", spec, seconds=12.0, total=total,
                 settings={"cubic.hystart": False})
    server = r["server"]
    assert server.eof and server.n == total == r["written"]
    assert server.sha.digest() == r["sent"].digest()
    samples = [s for s in r["samples"] if s.cc == "cubic"]
    # find a congestion-avoidance epoch that lasted at least two seconds
    epochs: dict[float, list[ConnectionSample]] = {}
    for s in samples:
        e = s.cc_state.get("epoch_start")
        if e is not None and s.cc_state["region"] in ("concave", "convex", "reno"):
            epochs.setdefault(e, []).append(s)
    start, points = max(epochs.items(), key=lambda kv: kv[1][-1].time - kv[0])
    assert points[-1].time - start > 2.0
    # W_max: the window just before the reduction that began this epoch (from the trace),
    # less RFC 9438 4.7's fast convergence when that reduction came below the previous W_max
    before = [s for s in samples if s.time < start and s.cc_state["region"] != "recovery"]
    w_max = max(s.cwnd for s in before[-50:]) / PAYLOAD
    if points[0].cc_state["w_max"] / PAYLOAD < w_max:
        w_max *= (1 + 0.7) / 2  # fast convergence: W_max = cwnd * (1 + beta) / 2
    cwnd_epoch = points[0].cwnd / PAYLOAD
    k = ((w_max - cwnd_epoch) / C) ** (1 / 3)
    errs = []
    for s in points:
        t = s.time - start
        if t < 0.3:
            continue
        w = C * (t - k) ** 3 + w_max
        errs.append(abs(s.cwnd / PAYLOAD - w) / w)
    worst = max(errs)
    print(f"\nCUBIC through {spec}: W_max {w_max:.1f} seg, cwnd_epoch {cwnd_epoch:.1f}, "
          f"K {k:.2f} s; window vs RFC 9438 W_cubic(t): median error "
          f"{statistics.median(errs):.2%}, max {worst:.2%} over {len(errs)} ACKs")
    assert statistics.median(errs) < 0.03 and worst < 0.08
    # the shape itself: growth slows towards W_max (concave) and speeds up past it (convex)
    def slope(t0: float, t1: float) -> float:
        a = min(points, key=lambda s: abs(s.time - start - t0))
        b = min(points, key=lambda s: abs(s.time - start - t1))
        return (b.cwnd - a.cwnd) / (b.time - a.time)
    print(f"epoch of {points[-1].time - start:.2f} s; window growth (segments/s): start "
          f"{slope(0.2, 0.7) / PAYLOAD:.1f}, before K {slope(k - 0.5, k) / PAYLOAD:.1f}, after K "
          f"{slope(k + 0.5, k + 1.0) / PAYLOAD:.1f}")
    assert points[-1].time - start > k + 1.0 and k > 1.0
    assert slope(0.2, 0.7) > 2 * slope(k - 0.5, k) < slope(k + 0.5, k + 1.0)


def test_hystart_plus_plus_cuts_the_slow_start_overshoot() -> None:
    # 10 Mbit/s, 40 ms, 80 packets of queue: plain slow start doubles far past what the path
    # holds and loses hundreds of segments; HyStart++ sees the queue's delay and slows down
    spec = "rate=10mbit,delay=20ms,queue=droptail,limit=80p"
    runs = {hs: transfer("cubic", spec, seconds=1.2, settings={"cubic.hystart": hs})
            for hs in (True, False)}
    drops = {hs: sum(r["path"].forward.qdisc.stats.drops.values()) for hs, r in runs.items()}
    on = [s for s in runs[True]["samples"] if s.cc == "cubic"]
    css = next(s for s in on if s.cc_state["hystart"] == "css")
    capacity = 10e6 / 8 * 0.040 / WIRE + 80  # packets the path holds
    print(f"\nslow start through {spec}: drops {drops[True]} with HyStart++ (CSS from "
          f"{css.cwnd / PAYLOAD:.0f} segments, path holds {capacity:.0f}), {drops[False]} "
          f"without")
    assert css.cwnd / PAYLOAD < capacity
    assert drops[True] * 4 < drops[False]
    assert runs[True]["server"].n >= runs[False]["server"].n
