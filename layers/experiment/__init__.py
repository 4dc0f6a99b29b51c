"""Experiments: scenario files, reproducible runs, sweeps and reports.

::

    from layers.experiment import load_scenario, run_scenario

    scenario = load_scenario("examples/experiments/bufferbloat.toml")
    output = run_scenario(scenario)            # a pure function on the virtual medium
    output.results["flows"][0]["goodput_bps"]

The command line is ``layers experiment run|sweep`` (:mod:`layers.cli.experiment`); the file
format and the results are described in ``docs/experiments.md``.
"""

from __future__ import annotations

from layers.experiment.runner import run_point, run_scenario, run_to_dir
from layers.experiment.scenario import (
    Scenario,
    ScenarioError,
    apply_overrides,
    load_scenario,
    parse_scenario,
)
from layers.experiment.sweep import run_sweep
from layers.experiment.virtual import RunOutput

__all__ = [
    "RunOutput",
    "Scenario",
    "ScenarioError",
    "apply_overrides",
    "load_scenario",
    "parse_scenario",
    "run_point",
    "run_scenario",
    "run_sweep",
    "run_to_dir",
]
