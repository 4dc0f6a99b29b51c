"""One scenario on the virtual medium: the dumbbell carries every flow, results.json has the
promised fields, and the same scenario and seed give the same bytes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TypedDict

import pytest

from layers.cli import main
from layers.experiment.output import MANIFEST_TIME_KEYS
from layers.experiment.runner import run_scenario
from layers.experiment.scenario import apply_overrides, parse_scenario

#: a TOML value as these scenarios use them
Value = str | int | float


class ScenarioDoc(TypedDict):
    """A scenario document as ``tomllib`` would return it (the tables these tests write)."""

    experiment: dict[str, Value]
    link: dict[str, Value]
    flow: list[dict[str, Value]]


SMALL: ScenarioDoc = {
    "experiment": {"name": "small", "duration": 2, "seed": 7, "sample_interval": "20ms"},
    "link": {"rate": "20mbit", "delay": "10ms", "loss": 0.01, "queue": "droptail",
             "queue_limit": "1bdp"},
    "flow": [{"cc": "newreno"}, {"cc": "newreno", "start": 0.5, "delay": "5ms"},
             {"cc": "newreno", "start": 0.2, "size": "100kB"}],
}

#: the same, lighter: the determinism test runs it three times
REPEATED: ScenarioDoc = {"experiment": {**SMALL["experiment"], "duration": 1},
                         "link": {**SMALL["link"], "rate": "10mbit"}, "flow": SMALL["flow"]}

FLOW_KEYS = {"goodput_bps", "retransmits", "rtt_mean_s", "rtt_p95_s", "bytes"}
LINK_KEYS = {"utilization", "queue_delay_mean_s", "queue_delay_p95_s", "drops", "marks"}
MANIFEST_KEYS = {"layers_version", "plugins", "python", "scenario_sha256", "seed", "medium",
                 "started_at", "git_commit"}


def _without_times(path: Path) -> str:
    data = json.loads(path.read_text())
    for k in MANIFEST_TIME_KEYS:
        data["manifest"].pop(k)
    return json.dumps(data, sort_keys=True)


def test_a_run_measures_every_flow_and_the_link() -> None:
    scenario = parse_scenario(SMALL, "small.toml")
    results = run_scenario(scenario).results
    flows = results["flows"]
    assert [f["label"] for f in flows] == ["0-newreno", "1-newreno", "2-newreno"]
    for f in flows:
        assert FLOW_KEYS <= set(f)
        assert f["bytes"] > 0 and f["goodput_bps"] > 0
        assert f["rtt_mean_s"] >= f["base_rtt_s"] * 0.99
        assert f["rtt_p95_s"] >= f["rtt_mean_s"] * 0.99
    # the second flow's own access link adds 2 x 5 ms to its round trip
    assert flows[1]["base_rtt_s"] == pytest.approx(0.030)
    assert flows[1]["rtt_mean_s"] > flows[0]["rtt_mean_s"]
    # the sized flow finished and says when
    assert flows[2]["completed"] and flows[2]["bytes"] == 100_000
    assert 0 < flows[2]["completion_time_s"] < 1.8
    link = results["link"]
    assert LINK_KEYS <= set(link)
    assert link["random_losses"] > 0
    # the shaper's rate bounds what the flows deliver together, and its queue (1 BDP of a
    # 20 ms round trip at 20 Mbit/s: 33 packets) bounds the queueing delay
    assert link["shaped"] and link["queue_limit"] == "33p"
    assert sum(f["goodput_bps"] for f in flows[:2]) < 20e6
    assert 0.3 < link["utilization"] <= 1.0
    assert 0 < link["queue_delay_p95_s"] <= 33 * 1500 * 8 / 20e6 + 1e-3
    assert sum(f["retransmits"] for f in flows) >= link["random_losses"] * 0.5
    assert 0 < results["fairness"]["jain"] <= 1


def test_same_scenario_and_seed_give_identical_results(tmp_path: Path) -> None:
    scenario = tmp_path / "small.toml"
    scenario.write_text(_toml(REPEATED))
    runs = []
    for name in ("a", "b", "c"):
        seed = ["--seed", "8"] if name == "c" else []
        plots = [] if name == "a" else ["--no-plots"]
        args = ["experiment", "run", str(scenario), "--out", str(tmp_path / name), *plots,
                *seed]
        if name == "b":
            # another interpreter, with another string-hash seed: nothing may depend on the
            # order of a set or on anything else a process picks at random
            env = {**os.environ, "PYTHONHASHSEED": "12345"}
            done = subprocess.run([sys.executable, "-m", "layers", *args], env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
        else:
            assert main(args) == 0
        runs.append(tmp_path / name / "results.json")
    a, _, c = (json.loads(p.read_text()) for p in runs)
    assert MANIFEST_KEYS <= set(a["manifest"])
    assert a["manifest"]["seed"] == 7 and c["manifest"]["seed"] == 8
    assert _without_times(runs[0]) == _without_times(runs[1])
    assert a["flows"] != c["flows"], "another seed draws other losses"
    traces = sorted(p.name for p in (tmp_path / "a" / "traces").iterdir())
    assert traces == ["0-newreno.jsonl", "1-newreno.jsonl", "2-newreno.jsonl",
                      "bottleneck.jsonl"]
    rows = (tmp_path / "a" / "traces" / "0-newreno.jsonl").read_text().splitlines()
    assert len(rows) == 50  # 1 s / 20 ms
    assert (tmp_path / "a" / "traces" / "0-newreno.jsonl").read_text() == (
        tmp_path / "b" / "traces" / "0-newreno.jsonl").read_text()
    report = (tmp_path / "a" / "report.md").read_text()
    assert "| 0-newreno | newreno |" in report and "Jain's fairness index" in report
    if importlib.util.find_spec("matplotlib") is not None:
        for figure in ("flows.png", "bottleneck.png"):
            assert (tmp_path / "a" / "plots" / figure).stat().st_size > 10_000
            assert f"](plots/{figure})" in report


def test_overridden_scenarios_hash_differently() -> None:
    s = parse_scenario(SMALL)
    assert apply_overrides(s, [("experiment.seed", 8)]).digest() != s.digest()


def _toml(doc: ScenarioDoc) -> str:
    def value(v: Value) -> str:
        return json.dumps(v)  # a JSON string or number is also a TOML one
    lines = []
    for name, table in (("experiment", doc["experiment"]), ("link", doc["link"])):
        lines.append(f"[{name}]")
        lines += [f"{k} = {value(v)}" for k, v in table.items()]
    for flow in doc["flow"]:
        lines.append("[[flow]]")
        lines += [f"{k} = {value(v)}" for k, v in flow.items()]
    return "\n".join(lines) + "\n"
