"""BBR v1 (layers-bbr) driven in isolation through a modelled bottleneck on a virtual timeline."""

from __future__ import annotations

import statistics
from typing import Any

import pytest
from cc_sim import PathSim
from layers_bbr import BBR
from layers_bbr.bbr import DRAIN, PACING_GAIN_CYCLE, PROBE_BW, PROBE_RTT, STARTUP, WindowedMax

from layers.congestion import CongestionContext, RateSample, collect_congestion_controls
from layers.errors import ConfigurationError
from layers.stack import Stack

MSS = 1448
RATE = 20e6 / 8  # 20 Mbit/s in bytes/s
RTT = 0.020


def make(seed: int = 1, **settings: Any) -> BBR:
    return BBR(CongestionContext(mss=MSS, seed=seed, settings=settings))


def run(cc: BBR, until: float, **kw: Any) -> tuple[PathSim, list[tuple[float, str]]]:
    args: dict[str, Any] = {"rate": RATE, "rtt": RTT, "queue": 150_000, **kw}
    sim = PathSim(cc, **args)
    modes: list[tuple[float, str]] = []

    def hook(s: PathSim, rs: RateSample) -> None:
        if not modes or modes[-1][1] != cc.mode:
            modes.append((s.now, cc.mode))
    sim.on_ack_hook = hook
    sim.run_until(until)
    return sim, modes


def test_state_machine_and_bandwidth_estimate() -> None:
    cc = make()
    min_rtt_changes: list[tuple[float, float]] = []  # (time, new lower min_rtt)
    sim, modes = run(cc, 10.8)
    names = [m for _, m in modes]
    assert names == [STARTUP, DRAIN, PROBE_BW, PROBE_RTT, PROBE_BW]
    t_drain, t_probe_bw, t_probe_rtt, t_back = (t for t, _ in modes[1:])
    assert t_drain < 0.5 and t_probe_bw - t_drain < 0.2  # a few round trips each
    # PROBE_RTT comes min_rtt_window after the last time min_rtt went down (its first sample)
    for p in sim.trace:
        if p.state["min_rtt"] is not None and (
            not min_rtt_changes or p.state["min_rtt"] < min_rtt_changes[-1][1]
        ):
            min_rtt_changes.append((p.time, p.state["min_rtt"]))
    last_lower = min_rtt_changes[-1][0]
    assert 10.0 < t_probe_rtt - last_lower < 10.0 + 2 * RTT
    # it held 4 segments for 200 ms plus a round trip, then went back to probing bandwidth
    assert 0.2 < t_back - t_probe_rtt < 0.2 + 0.1
    held = [p.cwnd for p in sim.trace if t_probe_rtt < p.time < t_back]
    assert held and max(held) == 4 * MSS
    # the bandwidth estimate converges to the bottleneck's rate
    bw = [p.state["btl_bw"] for p in sim.trace if p.time > t_probe_bw]
    est = statistics.median(bw)
    print(f"BBR btl_bw {est * 8 / 1e6:.3f} Mbit/s for a {RATE * 8 / 1e6:.0f} Mbit/s bottleneck "
          f"({est / RATE - 1:+.2%})")
    assert est == pytest.approx(RATE, rel=0.02)
    assert max(bw) <= RATE * 1.001  # no sample above the bottleneck's rate
    # min_rtt is the base RTT plus one segment's serialisation
    assert cc.min_rtt is not None
    assert cc.min_rtt == pytest.approx(RTT + MSS / RATE, rel=0.01)
    # the queue: STARTUP builds one, DRAIN empties it, PROBE_BW keeps it small
    q = sim.queue_between(t_probe_bw + 1.0, t_probe_rtt)
    bdp = RATE * cc.min_rtt
    assert statistics.median(q) < 0.5 * bdp and max(q) < bdp
    # the link stays busy: the flow delivers the rate (within the PROBE_RTT dip)
    delivered = [p for p in sim.trace if p.time >= 1.0]
    rate = (delivered[-1].delivered - delivered[0].delivered) / (
        delivered[-1].time - delivered[0].time)
    assert rate == pytest.approx(RATE, rel=0.05)


def test_probe_bw_gain_cycle_and_seeded_start_phase() -> None:
    starts = set()
    for seed in range(8):
        cc = make(seed=seed)
        sim, modes = run(cc, 1.2, record_state=True)
        t_probe_bw = next(t for t, m in modes if m == PROBE_BW)
        phases = [p.state["cycle_index"] for p in sim.trace if p.time >= t_probe_bw]
        starts.add(phases[0])
        # never starts in the 0.75 phase; advances one phase at a time, in order
        assert phases[0] != 1
        distinct = [phases[0]]
        for ph in phases[1:]:
            if ph != distinct[-1]:
                assert ph == (distinct[-1] + 1) % len(PACING_GAIN_CYCLE)
                distinct.append(ph)
        assert len(distinct) >= 8
        gains = {p.state["pacing_gain"] for p in sim.trace if p.time >= t_probe_bw}
        assert gains == {1.25, 0.75, 1.0}
        if seed == 0:  # the same seed gives the same run
            again = make(seed=seed)
            sim2, _ = run(again, 1.2)
            assert [p.cwnd for p in sim2.trace] == [p.cwnd for p in sim.trace]
    assert len(starts) >= 3


def test_full_pipe_detection_needs_three_flat_rounds() -> None:
    cc = make()
    sim, modes = run(cc, 1.0)
    t_drain = modes[1][0]
    # during STARTUP the estimate more than doubles per round; the last three rounds of
    # STARTUP grew it by less than 25 % in total
    rounds: dict[int, float] = {}
    for p in sim.trace:
        if p.time <= t_drain:
            rounds[p.state["round_count"]] = p.state["btl_bw"]
    last = sorted(rounds)[-4:]
    assert rounds[last[-1]] < 1.25 * rounds[last[0]]
    # full_bw is the last estimate that had grown by 25 %: within 25 % of the plateau
    assert cc.full_bw_reached and RATE / 1.25 <= cc.full_bw <= RATE * 1.001
    assert rounds[last[-1]] == pytest.approx(RATE, rel=0.02)


def test_loss_recovery_conserves_then_restores() -> None:
    cc = make()
    lost = {3000, 3001}  # two segments lost in PROBE_BW
    sim, _ = run(cc, 3.0, drop=lambda tx, now: tx in lost)
    assert sim.drops == 2
    rec = [p for p in sim.trace if p.state["packet_conservation"]]
    assert rec, "packet conservation at the start of recovery"
    before = [p.cwnd for p in sim.trace if p.time < rec[0].time][-1]
    # the window during conservation is the data in flight plus what was delivered
    for p in rec:
        assert p.cwnd <= before + 2 * MSS
    # after recovery the window is back where it was (the saved one)
    after = [p for p in sim.trace if p.time > rec[-1].time + 2 * RTT]
    assert after[0].cwnd >= before - 2 * MSS
    assert cc.mode == PROBE_BW and cc.btl_bw == pytest.approx(RATE, rel=0.02)


def test_timeout_undo_and_ecn() -> None:
    cc = make()
    sim, _ = run(cc, 1.0)
    w = cc.cwnd
    cc.on_timeout(sim.in_flight, sim.now)
    assert cc.cwnd == MSS and cc.prior_cwnd == w
    cc.on_undo(sim.now)
    assert cc.cwnd == w and cc.full_bw == 0.0
    cc.on_ecn(sim.in_flight, sim.now)
    assert cc.cwnd == w and cc.state()["ecn_echoes"] == 1
    # BBR's window is its own: an engine's PRR write is overridden at the next ACK
    cc.cwnd = 3 * MSS
    sim.run_until(1.5)
    assert cc.cwnd >= w - 2 * MSS
    # after a timeout the window grows back from one segment, and the saved one returns
    # once everything outstanding at the timeout is delivered
    w = cc.cwnd
    cc.on_timeout(20 * MSS, sim.now)
    assert cc.cwnd == MSS and cc.in_loss
    d = sim.delivered
    for i in range(1, 21):
        cc.on_ack(RateSample(
            now=sim.now + i * 0.001, delivered=MSS, newly_acked=MSS, newly_lost=0,
            prior_delivered=d, delivered_total=d + i * MSS, interval=0.0, delivery_rate=0.0,
            is_app_limited=False, rtt=None, min_rtt=RTT, srtt=RTT, prior_in_flight=MSS,
            in_flight=0, ece=False, in_recovery=False, mss=MSS))
        if i < 20:
            assert cc.cwnd < w and cc.in_loss
    assert not cc.in_loss and cc.cwnd >= w


def test_windowed_max_filter_forgets_after_ten_rounds() -> None:
    f = WindowedMax(10)
    f.update(100.0, 1)
    for r in range(2, 12):
        f.update(50.0 + r, r)
    assert f.get() == 100.0  # round 11 - round 1 = 10: still in the window
    f.update(40.0, 12)
    assert f.get() == 61.0  # the 100 left; the best of rounds 2..12 remains
    f.update(70.0, 13)
    assert f.get() == 70.0


def test_app_limited_samples_do_not_lower_the_estimate() -> None:
    cc = make()
    cc.on_start(MSS, 0.0)

    def ack(now: float, rate: float, app_limited: bool, prior: int, total: int) -> None:
        cc.on_ack(RateSample(
            now=now, delivered=MSS, newly_acked=MSS, newly_lost=0, prior_delivered=prior,
            delivered_total=total, interval=RTT, delivery_rate=rate,
            is_app_limited=app_limited, rtt=RTT, min_rtt=RTT, srtt=RTT,
            prior_in_flight=10 * MSS, in_flight=9 * MSS, ece=False, in_recovery=False, mss=MSS))

    ack(0.02, 1e6, False, 0, MSS)
    for i in range(1, 30):  # 29 rounds of app-limited, lower samples
        ack(0.02 + i * RTT, 2e5, True, i * MSS, (i + 1) * MSS)
    assert cc.btl_bw == 1e6 and cc.round_count == 30
    ack(1.0, 2e6, True, 30 * MSS, 31 * MSS)  # app-limited but higher: taken
    assert cc.btl_bw == 2e6


def test_settings_and_registration() -> None:
    with pytest.raises(ConfigurationError, match=r"bbr\.cwnd_gain"):
        make(cwnd_gain=0.5)
    with pytest.raises(ConfigurationError, match="an integer"):
        make(bw_window_rounds=2.5)
    with pytest.raises(ConfigurationError, match="unknown bbr setting"):
        make(gain=2)
    with pytest.raises(ConfigurationError, match=r"bbr\.probe_rtt_duration=-1\.0"):
        Stack(["bbr"], settings={"bbr.probe_rtt_duration": "-1"})
    found = collect_congestion_controls(Stack(["bbr"]).hook.layers_congestion_controls())
    info = found["bbr"]
    assert info.settings["bw_window_rounds"] == 10
    cc = info.factory(CongestionContext(mss=MSS, settings={"probe_rtt_duration": 0.1}))
    assert isinstance(cc, BBR) and cc.probe_rtt_duration == 0.1
    assert cc.pacing_rate is not None and cc.state()["mode"] == STARTUP
    # a shorter min_rtt window probes RTT sooner
    short = make(min_rtt_window=2.0)
    _, modes = run(short, 2.5)
    assert [m for _, m in modes].count(PROBE_RTT) == 1
    assert DRAIN in [m for _, m in modes]


def test_samples_spanning_a_delivered_count_jump_are_ignored() -> None:
    cc = make()
    cc.on_start(MSS, 0.0)

    def ack(now: float, rate: float, delivered: int, prior: int, total: int,
            prior_in_flight: int) -> None:
        cc.on_ack(RateSample(
            now=now, delivered=delivered, newly_acked=0, newly_lost=0, prior_delivered=prior,
            delivered_total=total, interval=RTT, delivery_rate=rate, is_app_limited=False,
            rtt=RTT, min_rtt=RTT, srtt=RTT, prior_in_flight=prior_in_flight, in_flight=0,
            ece=False, in_recovery=False, mss=MSS))

    ack(0.02, 1e6, MSS, 0, MSS, 10 * MSS)
    # one ACK "delivers" 100 segments with 1 in flight: an accounting jump, not a rate
    ack(0.05, 9e6, 100 * MSS, MSS, 101 * MSS, MSS)
    ack(0.06, 8e6, MSS, 2 * MSS, 102 * MSS, 2 * MSS)  # its flight spans the jump too
    assert cc.btl_bw == 1e6 and cc.bogus_samples == 1
    ack(0.09, 1.1e6, MSS, 101 * MSS, 103 * MSS, 2 * MSS)  # sent after it: trusted again
    assert cc.btl_bw == 1.1e6


def test_probe_rtt_is_not_put_off_by_rtt_float_noise() -> None:
    # RTTs lower by a fraction of a microsecond are the same RTT (an engine computes them as
    # differences of float clock readings); PROBE_RTT still comes 10 s after the real minimum
    cc = make()
    cc.on_start(MSS, 0.0)
    entered = None
    for i in range(1, 1100):
        now = i * 0.01
        cc.on_ack(RateSample(
            now=now, delivered=MSS, newly_acked=MSS, newly_lost=0, prior_delivered=(i - 1) * MSS,
            delivered_total=i * MSS, interval=RTT, delivery_rate=1e6, is_app_limited=False,
            rtt=RTT - i * 1e-15, min_rtt=RTT, srtt=RTT, prior_in_flight=10 * MSS,
            in_flight=10 * MSS, ece=False, in_recovery=False, mss=MSS))
        if cc.mode == PROBE_RTT and entered is None:
            entered = now
    assert entered is not None and 10.0 < entered <= 10.02
