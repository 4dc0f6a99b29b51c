"""CUBIC (layers-cubic) driven in isolation on a virtual timeline, checked against RFC 9438's
equations computed here, independently of the plugin."""

from __future__ import annotations

import bisect
import math
from typing import Any

import pytest
from cc_sim import PathSim
from layers_cubic import Cubic

from layers.congestion import CongestionContext, RateSample, collect_congestion_controls
from layers.errors import ConfigurationError
from layers.stack import Stack

MSS = 1448
C = 0.4
BETA = 0.7
ALPHA = 3 * (1 - BETA) / (1 + BETA)


def w_cubic(t: float, w_max: float, cwnd_epoch: float) -> float:
    """RFC 9438 Figures 1 and 2, in segments."""
    k = ((w_max - cwnd_epoch) / C) ** (1 / 3)
    return C * (t - k) ** 3 + w_max


def make(**settings: Any) -> Cubic:
    return Cubic(CongestionContext(mss=MSS, settings={"hystart": False, **settings}))


def loss_at(sim: PathSim, segments: int) -> dict[str, float]:
    """Make the sender see one loss (enter and leave recovery at once) the first time its
    window reaches ``segments``; returns what the test needs to know about it."""
    seen: dict[str, float] = {}
    cc = sim.cc

    def hook(s: PathSim, rs: RateSample) -> None:
        if "loss" not in seen and cc.cwnd >= segments * MSS:
            seen["loss"] = s.now
            seen["w_before"] = cc.cwnd / MSS
            cc.on_enter_recovery(s.in_flight, s.now)
            cc.on_exit_recovery(s.in_flight, s.now)
        elif "loss" in seen and "epoch" not in seen:
            seen["epoch"] = s.now  # the first ACK of congestion avoidance: t = 0
    sim.on_ack_hook = hook
    return seen


def cwnd_at(sim: PathSim, t: float) -> float:
    times = [p.time for p in sim.trace]
    i = bisect.bisect_right(times, t) - 1
    return sim.trace[i].cwnd / MSS


def test_window_after_loss_follows_rfc9438_curve() -> None:
    # a fast link and 100 ms RTT: the window is the only limit, no queue
    cc = make()
    sim = PathSim(cc, rate=1e9, rtt=0.1, queue=1 << 30, record_state=True)
    seen = loss_at(sim, 200)
    sim.run_until(12.0)
    w_max = seen["w_before"]
    assert 200 <= w_max < 210
    epoch = seen["epoch"]
    k = ((w_max * (1 - BETA)) / C) ** (1 / 3)  # RFC 9438 Figure 2 with cwnd_epoch = beta W_max
    assert cc.k == pytest.approx(k, rel=1e-9)
    errors = []
    for t in (0.5, 1.0, 2.0, 3.0, 4.0, k, 6.0, 7.0, 8.0):
        expected = w_cubic(t, w_max, BETA * w_max)
        got = cwnd_at(sim, epoch + t)
        errors.append(abs(got - expected) / expected)
        assert got == pytest.approx(expected, rel=0.01, abs=1.0), (t, got, expected)
    print(f"CUBIC vs RFC 9438 W_cubic(t): max relative error {max(errors):.4%}")
    # concave before K, convex after, never Reno-friendly at this RTT
    regions = {p.state["region"] for p in sim.trace if epoch + 0.1 <= p.time <= epoch + 8}
    assert regions == {"concave", "convex"}
    # and the plateau is where it should be: the window passes W_max at K, not before
    assert cwnd_at(sim, epoch + k - 0.5) < w_max <= cwnd_at(sim, epoch + k + 0.5) + 0.5


def test_reno_friendly_region_takes_over_at_short_rtt() -> None:
    # 10 ms RTT, W_max = 20 segments: K = 2.47 s while Reno grows a segment every 10 ms
    runs = {}
    for friendly in (True, False):
        cc = make(reno_friendly=friendly)
        sim = PathSim(cc, rate=1e9, rtt=0.01, queue=1 << 30)
        seen = loss_at(sim, 20)
        sim.run_until(2.0)
        runs[friendly] = (cc, sim, seen)
    cc, sim, seen = runs[True]
    w_max = seen["w_before"]
    epoch = seen["epoch"]
    rtt = 0.01 + MSS / 1e9
    for t in (0.2, 0.5, 1.0):
        # Reno's window per RFC 9438 4.3: alpha_cubic per RTT up to cwnd_prior, then 1
        w_est = BETA * w_max
        for _ in range(round(t / rtt)):
            w_est += ALPHA if w_est < w_max else 1.0
        cubic_only = w_cubic(t, w_max, BETA * w_max)
        got = cwnd_at(sim, epoch + t)
        assert got > cubic_only + 5
        assert got == pytest.approx(w_est, abs=2.5), (t, got, w_est)
    assert cc.state()["region"] == "reno"
    # without the Reno-friendly region the window stays on the (slow) cubic curve
    _, sim2, seen2 = runs[False]
    got = cwnd_at(sim2, seen2["epoch"] + 0.5)
    assert got == pytest.approx(w_cubic(0.5, seen2["w_before"], BETA * seen2["w_before"]),
                                abs=1.0)


def test_fast_convergence_lowers_w_max() -> None:
    for fast, expected in ((True, 80 * (1 + BETA) / 2), (False, 80.0)):
        cc = make(fast_convergence=fast)
        cc.on_start(MSS, 0.0)
        cc.cwnd = 100 * MSS  # as if it had grown there
        cc.on_enter_recovery(100 * MSS, 1.0)
        assert cc.w_max == pytest.approx(100)
        assert cc.cwnd == 70 * MSS and cc.ssthresh == 70 * MSS
        cc.on_exit_recovery(70 * MSS, 1.1)
        cc.cwnd = 80 * MSS  # a second loss before the window got back to W_max
        cc.on_enter_recovery(80 * MSS, 2.0)
        assert cc.w_max == pytest.approx(expected)
        assert cc.cwnd == 56 * MSS
        # K uses the lowered plateau: cbrt((W_max - cwnd_epoch) / C)
        cc.on_exit_recovery(56 * MSS, 2.1)
        cc.on_ack(_rs(2.2, prior_in_flight=56 * MSS))
        assert cc.k == pytest.approx(((expected - 56) / C) ** (1 / 3), rel=1e-6)


def _rs(now: float, *, delivered: int = MSS, prior_in_flight: int = 100 * MSS,
        in_recovery: bool = False, srtt: float = 0.1, rtt: float | None = 0.1,
        prior_delivered: int = 0, delivered_total: int = 0) -> RateSample:
    return RateSample(
        now=now, delivered=delivered, newly_acked=delivered, newly_lost=0,
        prior_delivered=prior_delivered, delivered_total=delivered_total, interval=0.1,
        delivery_rate=1e6, is_app_limited=False, rtt=rtt, min_rtt=rtt, srtt=srtt,
        prior_in_flight=prior_in_flight, in_flight=prior_in_flight - delivered, ece=False,
        in_recovery=in_recovery, mss=MSS,
    )


def test_timeout_ecn_and_undo() -> None:
    cc = make()
    cc.on_start(MSS, 0.0)
    cc.cwnd = 100 * MSS
    cc.on_timeout(100 * MSS, 1.0)
    assert cc.cwnd == MSS and cc.ssthresh == 70 * MSS
    # slow start back to ssthresh, then the first stage after a timeout: K = 0, W_max = here
    now = 1.0
    while cc.cwnd < cc.ssthresh:
        now += 0.001
        cc.on_ack(_rs(now, prior_in_flight=cc.cwnd))
    now += 0.001
    cc.on_ack(_rs(now, prior_in_flight=cc.cwnd))
    assert cc.k == 0.0 and cc.w_max == pytest.approx(70, abs=0.1)
    assert cc.state()["cwnd_epoch"] == cc.state()["w_max"]
    # a second expiry before anything was delivered keeps ssthresh and W_max (RFC 5681 3.1)
    cc.on_timeout(cc.cwnd, now + 1.0)
    held = (cc.ssthresh, cc.w_max)
    cc.on_timeout(MSS, now + 3.0)
    assert cc.cwnd == MSS and (cc.ssthresh, cc.w_max) == held and cc.timeouts == 3
    # so does a timeout during a recovery that already cut the window
    cc4 = make()
    cc4.on_start(MSS, 0.0)
    cc4.cwnd = 100 * MSS
    cc4.on_enter_recovery(100 * MSS, 1.0)
    cc4.on_timeout(70 * MSS, 1.5)
    assert cc4.cwnd == MSS and cc4.ssthresh == 70 * MSS and cc4.w_max == 100
    # an ECN echo: the same cut, at least one segment
    cc2 = make()
    cc2.on_start(MSS, 0.0)
    cc2.cwnd = 10 * MSS
    cc2.on_ecn(10 * MSS, 1.0)
    assert cc2.cwnd == 7 * MSS and cc2.state()["ecn_events"] == 1
    # undo puts back every variable the event changed
    cc3 = make()
    cc3.on_start(MSS, 0.0)
    cc3.cwnd = 100 * MSS
    cc3.on_enter_recovery(100 * MSS, 1.0)
    cc3.on_exit_recovery(70 * MSS, 1.1)
    cc3.on_ack(_rs(1.2, prior_in_flight=70 * MSS))
    before = dict(cc3.state())
    cc3.cwnd = 90 * MSS
    cc3.on_enter_recovery(90 * MSS, 2.0)
    assert cc3.cwnd == 63 * MSS
    cc3.on_undo(2.05)
    assert cc3.cwnd == 90 * MSS and cc3.ssthresh == 70 * MSS
    after = dict(cc3.state())
    for key in ("w_max", "k", "epoch_start", "cwnd_epoch", "cwnd_prior"):
        assert after[key] == before[key], key
    assert after["undos"] == 1


def test_no_growth_when_not_cwnd_limited_and_none_in_recovery() -> None:
    cc = make()
    cc.on_start(MSS, 0.0)
    cc.on_ack(_rs(0.1, prior_in_flight=2 * MSS))  # 2 of 10 segments in flight: app-limited
    assert cc.cwnd == 10 * MSS
    cc.on_ack(_rs(0.2, prior_in_flight=10 * MSS))
    assert cc.cwnd == 11 * MSS
    cc.on_enter_recovery(10 * MSS, 0.3)
    w = cc.cwnd
    cc.on_ack(_rs(0.35, prior_in_flight=10 * MSS, in_recovery=True))
    assert cc.cwnd == w


def test_hystart_plus_plus_leaves_slow_start_on_rtt_rise() -> None:
    # RTT 50 ms for 0.3 s, then 62 ms (a queue): above 50 + max(4, min(50/8, 16)) ms
    cc = Cubic(CongestionContext(mss=MSS, settings={"hystart": True}))
    sim = PathSim(cc, rate=1e9, rtt=lambda t: 0.05 if t < 0.3 else 0.062, queue=1 << 30)
    phases: list[tuple[float, str]] = []

    def hook(s: PathSim, rs: RateSample) -> None:
        phase = cc.state()["hystart"]
        if not phases or phases[-1][1] != phase:
            phases.append((s.now, str(phase), ))
    sim.on_ack_hook = hook
    sim.run_until(0.8)
    names = [p for _, p in phases]
    assert names[:3] == ["ss", "css", "done"]
    css_start, css_end = phases[1][0], phases[2][0]
    # CSS lasts CSS_ROUNDS = 5 rounds of ~62 ms
    assert 4 * 0.062 <= css_end - css_start <= 6 * 0.062 + 0.01
    assert 0.3 < css_start < 0.3 + 3 * 0.062
    # CSS grows at a quarter of slow start's rate: about 1.25x per round, not 2x
    w_start, w_end = cwnd_at(sim, css_start), cwnd_at(sim, css_end)
    assert 1.25 ** 4 * 0.8 < w_end / w_start < 1.25 ** 5 * 1.2
    # then congestion avoidance from the window HyStart++ reached, with ssthresh there
    assert cc.ssthresh == pytest.approx(w_end * MSS, rel=0.02)
    assert cc.congestion_events == 0


def test_hystart_plus_plus_spurious_exit_resumes_slow_start() -> None:
    # a transient RTT bump: CSS, then the RTT falls back and slow start resumes
    cc = Cubic(CongestionContext(mss=MSS, settings={"hystart": True}))
    sim = PathSim(cc, rate=1e9, queue=1 << 30,
                  rtt=lambda t: 0.062 if 0.25 <= t < 0.32 else 0.05)
    sim.run_until(0.6)
    hs = cc.hystart
    assert hs is not None
    assert hs.css_entries >= 1 and hs.css_spurious >= 1
    assert hs.phase == "ss"


def test_settings_and_registration() -> None:
    with pytest.raises(ConfigurationError, match="beta"):
        make(beta=1.5)
    with pytest.raises(ConfigurationError, match="unknown cubic setting"):
        make(bogus=1)
    with pytest.raises(ConfigurationError, match="true or false"):
        make(hystart="yes")
    # the same checks when the stack is composed, with the values --set gives as text
    with pytest.raises(ConfigurationError, match=r"cubic\.beta=1\.5 is out of range"):
        Stack(["cubic"], settings={"cubic.beta": "1.5"})
    assert Stack(["cubic"], settings={"cubic.beta": "0.8", "cubic.hystart": "off"})
    # the installed distribution registers "cubic" through the hook, with its settings
    stack = Stack(["cubic"])
    found = collect_congestion_controls(stack.hook.layers_congestion_controls())
    info = found["cubic"]
    assert info.settings["beta"] == 0.7 and info.settings["c"] == 0.4
    cc = info.factory(CongestionContext(mss=MSS, initial_cwnd=4, settings=info.settings))
    cc.on_start(1000, 0.0)
    assert cc.name == "cubic" and cc.cwnd == 4000 and cc.pacing_rate is None
    assert math.isinf(Cubic(CongestionContext(mss=MSS))._ssthresh)
