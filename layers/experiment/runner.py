"""Running a scenario on its medium, and the one-point unit of work sweeps distribute."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from layers.errors import ConfigurationError
from layers.experiment.output import manifest, write_run
from layers.experiment.scenario import Scenario, apply_overrides
from layers.experiment.virtual import RunOutput, run_virtual

__all__ = ["run_point", "run_scenario", "run_to_dir"]

Progress = Callable[[float], None]


def run_scenario(scenario: Scenario, progress: Progress | None = None) -> RunOutput:
    """Run ``scenario`` on its medium. On the virtual medium this is a pure function of the
    scenario (seed included)."""
    medium = scenario.experiment.medium
    if medium == "virtual":
        return run_virtual(scenario, progress)
    if medium == "tap":
        from layers.experiment.tap import run_tap

        return run_tap(scenario, progress)
    raise ConfigurationError(f"{scenario.source}: experiment.medium: unknown {medium!r}")


def run_to_dir(scenario: Scenario, out: Path, *, progress: Progress | None = None,
               plots: bool = True) -> dict[str, Any]:
    """Run and write everything under ``out``; returns the results (manifest included)."""
    started = _dt.datetime.now(_dt.UTC)
    t0 = time.perf_counter()
    output = run_scenario(scenario, progress)
    man = manifest(scenario, started_at=started, wall_seconds=time.perf_counter() - t0)
    write_run(out, output, man, plots=plots)
    return {**output.results, "manifest": man}


def run_point(scenario: Scenario, overrides: Sequence[tuple[str, Any]]
              ) -> tuple[RunOutput, dict[str, Any]]:
    """One sweep point: the scenario with ``overrides``, run. Returns the output and the
    manifest, for the caller to write (a remote worker need not share our disk)."""
    point = apply_overrides(scenario, overrides)
    started = _dt.datetime.now(_dt.UTC)
    t0 = time.perf_counter()
    output = run_scenario(point)
    man = manifest(point, started_at=started, wall_seconds=time.perf_counter() - t0)
    man["overrides"] = {k: v for k, v in overrides}
    return output, man
