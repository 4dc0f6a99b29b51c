"""CONTRIBUTING.md's congestion-control example works as printed: it registers through the hook,
takes its settings, halves on loss, undoes, and fills a modelled bottleneck."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
from cc_sim import PathSim
from test_cc_bottleneck import PAYLOAD, transfer

from layers.congestion import CongestionContext, collect_congestion_controls
from layers.errors import ConfigurationError
from layers.stack import Stack

MSS = 1448


def example_module() -> types.ModuleType:
    text = (Path(__file__).parents[2] / "CONTRIBUTING.md").read_text()
    section = text[text.index("### Writing a congestion control"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    module = types.ModuleType("layers_aimd")
    exec(compile(code.group(1), "CONTRIBUTING.md", "exec"), module.__dict__)
    return module


def test_contributing_aimd_example() -> None:
    mod = example_module()
    found = collect_congestion_controls(Stack([mod]).hook.layers_congestion_controls())
    info = found["aimd"]
    assert info.settings == {"increase": 1.0, "decrease": 0.5}
    with pytest.raises(ConfigurationError, match="decrease"):
        info.factory(CongestionContext(mss=MSS, settings={"decrease": 2.0}))
    cc = info.factory(CongestionContext(mss=MSS, settings=info.settings))
    sim = PathSim(cc, rate=20e6 / 8, rtt=0.02, queue=60_000)
    sim.run_until(5.0)
    # it fills the link (a queue of about one BDP lets AIMD(1, 0.5) keep it busy) ...
    assert sim.delivered / 5.0 == pytest.approx(20e6 / 8, rel=0.1)
    # ... and its window saw-tooths between about half and all of BDP + queue
    late = [p.cwnd for p in sim.trace if p.time > 2.0]
    top = 20e6 / 8 * 0.02 + 60_000
    assert max(late) <= top + 2 * MSS and min(late) >= 0.4 * top
    assert sim.drops > 0
    w = cc.cwnd
    cc.on_enter_recovery(w, 5.0)
    assert cc.cwnd == max(w // 2, 2 * MSS)
    cc.on_undo(5.1)
    assert cc.cwnd == w


def test_contributing_aimd_example_in_tcp() -> None:
    # selected and tuned exactly as the page says, in the real engine through a bottleneck
    mod = example_module()
    r = transfer(None, "rate=10mbit,delay=10ms,queue=droptail,limit=30p", seconds=2.0,
                 settings={"tcp.congestion_control": "aimd", "aimd.decrease": "0.7"},
                 plugins=["arp", "ipv4", "tcp", mod])
    samples = r["samples"]
    assert samples and {s.cc for s in samples} == {"aimd"}
    assert samples[-1].cc_state == {"increase": 1.0, "decrease": 0.7}
    assert r["server"].n > 0
    assert any(s.ssthresh < 1 << 30 for s in samples)  # it cut its window at least once
    # its own cut, not NewReno's: ssthresh is 0.7 of the window it had
    cut = next(i for i in range(1, len(samples)) if samples[i].ssthresh < 1 << 30)
    assert samples[cut].ssthresh == max(int(samples[cut - 1].cwnd * 0.7), 2 * PAYLOAD)
