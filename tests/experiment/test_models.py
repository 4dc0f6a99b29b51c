"""Runs against the literature: NewReno under random loss follows the square-root law of
Mathis et al. (1997), with the constant for independent losses (see layers.experiment.models).

Tolerance: each point runs 20 virtual seconds (about 80 to 180 loss events). Across seeds the
goodput of such a run scatters by up to +-20% around the model (measured: ratios 0.87 to 1.20
over three seeds at p = 0.004, 0.008 and 0.016), because the window's sawtooth is sampled over
few loss epochs; the mean of three points scatters by about a third less. The model also leaves
out retransmission timeouts, which at p = 0.02 (windows of about nine segments) take up to 10%
(Padhye et al. 1998). So a point may be 35% from the model, the mean of the three 20%, and the
slope of log goodput against log p must be -0.5 +- 0.2: the law's exponent, which no choice of
constant can fake.
"""

from __future__ import annotations

import math

import pytest

from layers.experiment.models import (
    cubic_governs,
    cubic_window,
    mathis_constant,
    mathis_throughput,
    reno_friendly_window,
)
from layers.experiment.runner import run_scenario
from layers.experiment.scenario import apply_overrides, parse_scenario

MSS = 1448  # 1500 - 20 (IP) - 20 (TCP) - 12 (timestamps)

#: a link fast enough never to limit the flow, a queue long enough never to drop: every
#: loss is the random one
MATHIS = {
    "experiment": {"name": "mathis", "duration": 20, "seed": 1, "sample_interval": "100ms"},
    "link": {"rate": "100mbit", "delay": "10ms", "queue": "droptail", "queue_limit": "2000p"},
    "flow": [{"cc": "newreno"}],
}


def test_constants() -> None:
    assert mathis_constant(random_loss=False) == pytest.approx(math.sqrt(1.5))
    assert mathis_constant(random_loss=False, acks_per_growth=2) == pytest.approx(
        math.sqrt(0.75))
    assert mathis_constant() == pytest.approx(1.31)
    # 1448-byte segments, 100 ms, p = 1%: 1.31 * 1448 * 8 / 0.1 / 0.1 bits/s
    assert mathis_throughput(MSS, 0.1, 0.01) == pytest.approx(1.31 * MSS * 80 * 10)
    # RFC 9438: 1.054 (RTT/p)^0.75, and the Reno-friendly region at short RTTs
    assert cubic_window(0.1, 1e-4) == pytest.approx(1.054 * 1000 ** 0.75, rel=1e-3)
    assert reno_friendly_window(0.01) == pytest.approx(math.sqrt(1.5 / 0.01))
    assert cubic_governs(0.2, 5e-4) and not cubic_governs(0.01, 0.01)


def test_newreno_follows_the_square_root_law() -> None:
    base = parse_scenario(MATHIS, "mathis")
    ps = [0.005, 0.01, 0.02]
    ratios, goodputs = [], []
    for p in ps:
        res = run_scenario(apply_overrides(base, [("link.loss", p)])).results
        flow = res["flows"][0]
        assert res["link"]["drops"] == 0, "the queue dropped: the loss is not all random"
        model = mathis_throughput(MSS, flow["rtt_mean_s"], p)
        ratios.append(flow["goodput_bps"] / model)
        goodputs.append(flow["goodput_bps"])
        print(f"p={p}: measured {flow['goodput_bps'] / 1e6:.2f} Mbit/s, model "
              f"{model / 1e6:.2f} (ratio {ratios[-1]:.2f}), {res['link']['random_losses']} "
              f"losses")
    assert all(0.65 < r < 1.35 for r in ratios), ratios
    assert 0.8 < sum(ratios) / len(ratios) < 1.2, ratios
    xs = [math.log(p) for p in ps]
    ys = [math.log(g) for g in goodputs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)
    assert -0.7 < slope < -0.3, slope
