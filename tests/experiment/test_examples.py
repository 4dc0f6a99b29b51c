"""The shipped experiments parse, use installed algorithms, and their sweeps are valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from layers.experiment.scenario import apply_overrides, load_scenario
from layers.experiment.virtual import available_congestion_controls

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "experiments").glob("*.toml"))


def test_the_four_promised_experiments_ship() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"reno-cubic-bbr", "bufferbloat", "rtt-unfairness", "cubic-vs-linux"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_is_valid(path: Path) -> None:
    s = load_scenario(path)
    assert s.experiment.description
    known = available_congestion_controls()
    for f in s.flow:
        assert f.cc.startswith("linux:") or f.cc in known, f.cc
    if s.sweep is not None:
        for key, values in s.sweep.grid.items():
            for value in values:
                apply_overrides(s, [(key, value)])
