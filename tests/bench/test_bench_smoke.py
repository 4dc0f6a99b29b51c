"""``make bench`` in a tiny configuration: the JSON it writes has the documented shape.

Timings are never asserted (they mean nothing on a shared host): only that the bench runs,
names every figure the way the issue's consumers read it, and gives sane summaries."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from layers.netns import have_root_and_tun

BENCH = Path(__file__).with_name("bench.py")
ROOT_OK = have_root_and_tun()[0]
KEYS = {"scenario", "system", "link", "unit", "median", "min", "max", "runs"}


def test_quick_bench_writes_results_json(tmp_path: Path) -> None:
    out = tmp_path / "bench-results.json"
    only = "tcp_rx,sim_rate" if ROOT_OK else "sim_rate"
    r = subprocess.run([sys.executable, str(BENCH), "--quick", "--only", only,
                        "--output", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    rows = doc["results"]
    assert rows, doc
    for row in rows:
        assert set(row) == KEYS, row
        assert row["runs"] >= 1
        assert 0 < row["min"] <= row["median"] <= row["max"], row
    have = {(row["scenario"], row["system"], row["link"]) for row in rows}
    assert ("sim_rate", "layers", "virtual") in have
    if ROOT_OK:
        for system in ("floor", "layers", "linux"):
            for link in ("offload", "plain"):
                assert ("tcp_rx", system, link) in have, have
        assert ("sim_rate", "layers", "plain") in have
        assert {row["unit"] for row in rows if row["scenario"] == "tcp_rx"} == {"Gbit/s"}
    assert "bench: wrote" in r.stdout


def test_unknown_scenario_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(BENCH), "--only", "tcp_fast",
                        "--output", str(tmp_path / "x.json")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "tcp_fast" in r.stderr and "conn_rate" in r.stderr
    assert not (tmp_path / "x.json").exists()


def _tcp_bench() -> Any:
    spec = importlib.util.spec_from_file_location("tcp_bench", BENCH.with_name("tcp_bench.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_pytcp(root: Path, version: str) -> Path:
    (root / "pytcp" / "lib").mkdir(parents=True)
    (root / "pytcp" / "lib" / "socket.py").write_text("")
    (root / "pyproject.toml").write_text(f'[project]\nname = "PyTCP"\nversion = "{version}"\n')
    return root


def test_pytcp_src_must_be_a_checkout_of_2_7_10_and_the_error_says_how(tmp_path: Path) -> None:
    tb = _tcp_bench()
    with pytest.raises(ValueError, match=r"not a checkout of PyTCP.*checkout 2\.7\.10"):
        tb.pytcp_checkout(str(tmp_path))
    older = _fake_pytcp(tmp_path / "old", "2.7.9")
    with pytest.raises(ValueError, match=r"is PyTCP 2\.7\.9, the bench compares with 2\.7\.10"):
        tb.pytcp_checkout(str(older))
    good = _fake_pytcp(tmp_path / "good", "2.7.10")
    assert tb.pytcp_checkout(str(good / ".." / "good")) == str(good.resolve())
