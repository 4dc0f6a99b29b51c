"""The tap medium: our NewReno and the Linux kernel's CUBIC share one shaped bottleneck in a
namespace made for the test, in real time. Root only."""

from __future__ import annotations

import os
import subprocess

import pytest

from layers.experiment.runner import run_scenario
from layers.experiment.scenario import parse_scenario
from layers.experiment.tap import linux_congestion_controls

pytestmark = pytest.mark.root

TAP = {
    "experiment": {"name": "tap", "duration": 3, "medium": "tap", "sample_interval": "100ms",
                   "seed": 2},
    "link": {"rate": "10mbit", "delay": "10ms", "queue": "droptail", "queue_limit": "1bdp"},
    "flow": [{"cc": "newreno"}, {"cc": "linux:cubic"}],
}


def _namespaces() -> set[str]:
    """This process's experiment namespaces (their names carry our pid), so another run of
    the suite on the same machine cannot make the check below fail."""
    mine = f"layers-exp-{os.getpid()}-"
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith(mine)}


def test_our_stack_and_linux_share_the_bottleneck() -> None:
    if "cubic" not in linux_congestion_controls():
        pytest.skip("the kernel has no cubic (modprobe tcp_cubic)")
    before = _namespaces()
    res = run_scenario(parse_scenario(TAP, "tap.toml")).results
    ours, kernel = res["flows"]
    assert ours["sender"] == "layers" and kernel["sender"] == "linux"
    assert kernel["kernel_cc"] == "cubic", "the kernel's socket did not use the asked algorithm"
    for f in (ours, kernel):
        assert f["bytes"] > 200_000, f
        assert 0.02 <= f["rtt_mean_s"] < 0.2, f
    total = ours["goodput_bps"] + kernel["goodput_bps"]
    # both through one 10 Mbit/s queue: together no more than the rate (1% for timing), and
    # most of it once both have left slow start
    assert 5e6 < total < 10.1e6, total
    link = res["link"]
    assert link["shaped"] and link["packets"] > 1000
    # a 1-BDP queue (20 ms at 10 Mbit/s: 17 frames) never holds more than its drain time
    assert link["queue_max_packets"] <= 17
    assert 0 < link["queue_delay_p95_s"] <= 17 * 1514 * 8 / 10e6 + 0.002
    assert _namespaces() == before, "the experiment left its namespace behind"
