"""Scenario files: the issue's example parses with its units, and each mistake is one line
naming the file, the key and the fix (exit status 2 from the command)."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from layers.cli import main
from layers.experiment.scenario import (
    ScenarioError,
    apply_overrides,
    load_scenario,
    parse_scenario,
)
from layers.experiment.units import (
    QueueLimit,
    UnitError,
    parse_duration,
    parse_queue_limit,
    parse_rate,
    parse_size,
)

EXAMPLE = """\
[experiment]
name = "reno-vs-cubic"
duration = 60            # seconds of (virtual) time
seed = 1
medium = "virtual"       # "virtual": memory links on the virtual clock; "tap": real time vs Linux

[link]                   # the bottleneck between the two sides
rate = "100mbit"
delay = "20ms"           # one way
loss = 0.0               # random loss, seeded
queue = "droptail"       # or "codel", "fq_codel", "red", or a plugin's name
queue_limit = "1bdp"     # packets ("100p"), bytes ("150kB") or BDP multiples

[[flow]]
cc = "newreno"           # any installed congestion control; with medium = "tap", "linux:cubic"
start = 0                # seconds   (a flow may also give size = "10MB" instead of running
                         #            to the end)
[[flow]]
cc = "cubic"
start = 5
size = "10MB"
"""


def test_the_issue_example_parses_with_its_units(tmp_path: Path) -> None:
    path = tmp_path / "reno.toml"
    path.write_text(EXAMPLE)
    s = load_scenario(path)
    assert s.experiment.name == "reno-vs-cubic"
    assert s.experiment.duration == 60.0 and s.experiment.seed == 1
    assert s.link.rate == 100e6 and s.link.delay == pytest.approx(0.020)
    assert s.link.queue == "droptail" and s.link.queue_limit == QueueLimit("bdp", 1.0)
    assert [f.cc for f in s.flow] == ["newreno", "cubic"]
    assert s.flow[1].start == 5.0 and s.flow[1].size == 10_000_000
    # 100 Mbit/s x 40 ms = 500 kB = 333 packets of 1500 bytes
    assert s.bdp_bytes() == pytest.approx(500_000)
    assert s.link.queue_limit.resolve(s.bdp_bytes(), 1500) == ("packets", 333)
    assert s.labels() == ["0-newreno", "1-cubic"]


@pytest.mark.parametrize(("text", "value"), [
    ("100mbit", 100e6), ("1gbit", 1e9), ("500kbit", 500e3), ("2.5Mbit", 2.5e6), (1e6, 1e6)])
def test_rates(text: Any, value: float) -> None:
    assert parse_rate(text) == pytest.approx(value)


@pytest.mark.parametrize(("text", "value"), [
    ("20ms", 0.02), ("1.5s", 1.5), ("500us", 5e-4), (60, 60.0), ("2min", 120.0)])
def test_times(text: Any, value: float) -> None:
    assert parse_duration(text) == pytest.approx(value)


@pytest.mark.parametrize(("text", "value"), [
    ("10MB", 10_000_000), ("150kB", 150_000), ("64KiB", 65_536), (1500, 1500)])
def test_sizes(text: Any, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize(("text", "limit"), [
    ("100p", QueueLimit("packets", 100)), ("150kB", QueueLimit("bytes", 150_000)),
    ("1bdp", QueueLimit("bdp", 1.0)), ("0.5bdp", QueueLimit("bdp", 0.5)),
    (50, QueueLimit("packets", 50))])
def test_queue_limits(text: Any, limit: QueueLimit) -> None:
    assert parse_queue_limit(text) == limit


@pytest.mark.parametrize("bad", ["100mbps", "fast", "-1mbit", True])
def test_bad_rates_name_the_fix(bad: Any) -> None:
    with pytest.raises(UnitError, match="mbit"):
        parse_rate(bad)


# (where in the document, the wrong value, the key the message must name, words of the fix)
MISTAKES = [
    (("link", "rate"), "100mbps", "link.rate", "'100mbit'"),
    (("link", "rte"), "1mbit", "link.rte", "did you mean 'rate'"),
    (("link", "delay"), 20, "link.delay", "'20ms'"),
    (("link", "loss"), 5, "link.loss", "'1%'"),
    (("link", "queue_limit"), "3q", "link.queue_limit", "'1bdp'"),
    (("experiment", "medium"), "tapp", "experiment.medium", "'virtual' or 'tap'"),
    (("experiment", "duration"), "soon", "experiment.duration", "'20ms'"),
    (("experiment", "seed"), "one", "experiment.seed", "whole number"),
    (("flow", 1, "size"), "10XB", "flow[1].size", "'10MB'"),
    (("flow", 0, "cc"), 3, "flow[0].cc", "string"),
    (("flow", 0, "cc"), "linux:cubic", "flow[0].cc", 'medium = "tap"'),
    (("flow", 1, "start"), 100, "flow[1].start", "start it earlier"),
]


@pytest.mark.parametrize(("where", "value", "key", "fix"), MISTAKES,
                         ids=[m[2] + "=" + str(m[1]) for m in MISTAKES])
def test_each_mistake_is_one_line_with_file_key_and_fix(
    where: tuple[Any, ...], value: Any, key: str, fix: str
) -> None:
    doc = copy.deepcopy(tomllib.loads(EXAMPLE))
    node: Any = doc
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    with pytest.raises(ScenarioError) as info:
        parse_scenario(doc, "x.toml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"x.toml: {key}: "), message
    assert fix in message, message


def test_missing_sections_and_keys() -> None:
    doc = tomllib.loads(EXAMPLE)
    del doc["experiment"]["duration"]
    with pytest.raises(ScenarioError, match=r"^x.toml: experiment.duration: is missing"):
        parse_scenario(doc, "x.toml")
    doc = tomllib.loads(EXAMPLE)
    del doc["link"]
    with pytest.raises(ScenarioError, match=r"^x.toml: link: section missing; add \[link\]"):
        parse_scenario(doc, "x.toml")
    doc = tomllib.loads(EXAMPLE)
    doc["flow"] = doc["flow"][0]
    with pytest.raises(ScenarioError, match=r"write \[\[flow\]\]"):
        parse_scenario(doc, "x.toml")


def test_overrides_reach_every_flow_or_one() -> None:
    s = parse_scenario(tomllib.loads(EXAMPLE))
    t = apply_overrides(s, [("link.loss", "0.02"), ("flow.cc", "newreno"),
                            ("flow[1].start", "2"), ("link.rate", "50mbit")])
    assert t.link.loss == 0.02 and t.link.rate == 50e6
    assert [f.cc for f in t.flow] == ["newreno", "newreno"]
    assert [f.start for f in t.flow] == [0.0, 2.0]
    assert t.digest() != s.digest()
    assert apply_overrides(s, []).digest() == s.digest()
    with pytest.raises(ScenarioError, match=r"link.rate: '1parsec'"):
        apply_overrides(s, [("link.rate", "1parsec")])
    with pytest.raises(ScenarioError, match=r"there are 2 \[\[flow\]\]"):
        apply_overrides(s, [("flow[5].cc", "newreno")])


def test_the_command_says_one_line_and_exits_2(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(EXAMPLE.replace('"100mbit"', '"100mbps"'))
    assert main(["experiment", "run", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{path}: link.rate:" in err and "'100mbit'" in err
    assert main(["experiment", "run", str(tmp_path / "absent.toml")]) == 2
    assert "no such file" in capsys.readouterr().err
    path.write_text("[experiment\n")
    assert main(["experiment", "run", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    path.write_text(EXAMPLE.replace('cc = "cubic"', 'cc = "nosuchcc"'))
    assert main(["experiment", "run", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "flow[1].cc: 'nosuchcc' is not installed; available:" in err
    # what the queue discipline refuses, named by the scenario's key
    path.write_text(EXAMPLE.replace('"droptail"', '"codel"'))
    assert main(["experiment", "run", str(path), "--set", "link.queue=fifoo"]) == 2
    assert f"{path}: link.queue: unknown queue discipline 'fifoo'" in capsys.readouterr().err
    assert main(["experiment", "run", str(path), "--set", 'link.queue_options={tagret="5ms"}']) == 2
    assert f"{path}: link.queue_options: queue codel has no setting 'tagret'" in (
        capsys.readouterr().err)
