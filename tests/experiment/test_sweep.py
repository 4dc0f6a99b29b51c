"""Sweeps: one results directory per point, the combined CSV, local processes and a Dask
LocalCluster (in-process, on loopback)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from layers.cli import main
from layers.errors import ConfigurationError
from layers.experiment.scenario import load_scenario, parse_scenario
from layers.experiment.sweep import parse_grid, run_sweep, strip_times

TINY = {
    "experiment": {"name": "tiny", "duration": 1, "seed": 3, "sample_interval": "50ms"},
    "link": {"rate": "10mbit", "delay": "5ms", "loss": 0.01},
    "flow": [{"cc": "newreno"}],
}


def test_grid_is_the_product_and_mistakes_name_the_fix() -> None:
    grid = parse_grid(["link.loss=0.01,0.02", "flow.cc=newreno"])
    assert grid == [("link.loss", ["0.01", "0.02"]), ("flow.cc", ["newreno"])]
    with pytest.raises(ConfigurationError, match="KEY=V1,V2"):
        parse_grid(["link.loss"])
    with pytest.raises(ConfigurationError, match="given twice"):
        parse_grid(["link.loss=0.1", "link.loss=0.2"])
    scenario = parse_scenario(TINY, "tiny.toml")
    with pytest.raises(ConfigurationError, match=r"tiny.toml: link.loss: 7 is above 1"):
        run_sweep(scenario, [("link.loss", ["0.01", "7"])], Path("/nonexistent"))


def test_local_sweep_writes_points_csv_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    rc = main(["experiment", "sweep", _write(tmp_path), "--grid", "link.loss=0.005,0.02",
               "--jobs", "2", "--out", str(out), "--no-plots"])
    assert rc == 0
    points = sorted(p.name for p in (out / "points").iterdir())
    assert points == ["link.loss=0.005", "link.loss=0.02"]
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["link.loss"] for r in rows] == ["0.005", "0.02"]
    assert all(float(r["goodput_bps"]) > 0 for r in rows)
    # more loss, less goodput (the square-root law's direction)
    assert float(rows[0]["goodput_bps"]) > float(rows[1]["goodput_bps"])
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["points"] == points and not summary["interrupted"]


def test_a_files_own_sweep_table_is_the_default_grid(tmp_path: Path) -> None:
    path = Path(_write(tmp_path))
    path.write_text(path.read_text() + '[sweep]\ngrid = { "link.loss" = [0.01, 0.03] }\n'
                    'metric = "retransmits"\n')
    out = tmp_path / "own"
    assert main(["experiment", "sweep", str(path), "--jobs", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["points"] == ["link.loss=0.01", "link.loss=0.03"]
    assert summary["metric"] == "retransmits"
    report = (out / "report.md").read_text()
    assert "| link.loss | flow |" in report and "| 0.03 | 0-newreno |" in report
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "plots" / "sweep-retransmits.png").stat().st_size > 10_000
        assert "](plots/sweep-retransmits.png)" in report
    path.write_text(path.read_text().replace("[0.01, 0.03]", "0.01"))
    with pytest.raises(ConfigurationError, match=r"sweep.grid: should be a table of non-empty"):
        load_scenario(path)


def test_dask_local_cluster_gives_the_same_results_as_local(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    scenario = parse_scenario(TINY, "tiny.toml")
    grid = [("link.loss", ["0.01", "0.03"])]
    local = run_sweep(scenario, grid, tmp_path / "local", jobs=1, plots=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        remote = run_sweep(scenario, grid, tmp_path / "dask", executor=cluster.scheduler_address,
                           plots=False)
    assert sorted(remote.points) == sorted(local.points) == ["link.loss=0.01", "link.loss=0.03"]
    for name in local.points:
        a, b = strip_times(local.points[name]), strip_times(remote.points[name])
        assert a["flows"] == b["flows"] and a["link"] == b["link"]
    assert (tmp_path / "dask" / "points" / "link.loss=0.03" / "results.json").exists()


def test_an_unreachable_scheduler_is_a_configuration_error(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    scenario = parse_scenario(TINY, "tiny.toml")
    with pytest.raises(ConfigurationError, match="cannot reach the Dask scheduler"):
        run_sweep(scenario, [("link.loss", ["0.01"])], tmp_path, executor="tcp://127.0.0.1:9",
                  connect_timeout=1.0)


def _write(tmp_path: Path) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(
        '[experiment]\nname = "tiny"\nduration = 1\nseed = 3\nsample_interval = "50ms"\n'
        '[link]\nrate = "10mbit"\ndelay = "5ms"\n[[flow]]\ncc = "newreno"\n')
    return str(path)


def test_interrupting_a_sweep_keeps_the_finished_points(tmp_path: Path) -> None:
    scenario = parse_scenario(TINY, "tiny.toml")

    def ctrl_c_after_the_first(done: int, total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    res = run_sweep(scenario, [("link.loss", ["0.01", "0.02", "0.03"])], tmp_path, jobs=1,
                    progress=ctrl_c_after_the_first, plots=False)
    assert res.interrupted and list(res.points) == ["link.loss=0.01"]
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert [r["link.loss"] for r in rows] == ["0.01"]
    assert json.loads((tmp_path / "sweep.json").read_text())["interrupted"] is True
    assert (tmp_path / "points" / "link.loss=0.01" / "results.json").exists()


def test_repeat_runs_consecutive_seeds(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    assert main(["experiment", "run", _write(tmp_path), "--repeat", "2", "--out", str(out),
                 "--no-plots"]) == 0
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["seed"] for r in rows] == ["3", "4"]
    assert sorted(p.name for p in (out / "points").iterdir()) == [
        "experiment.seed=3", "experiment.seed=4"]
