"""The experiment's figures, drawn through :mod:`layers.plotting` (``pip install layers[plot]``).

This module only chooses what to draw; the drawing is :mod:`layers.plotting`'s."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from layers.experiment.output import plotting_module


def sweep_plot(out: Path, points: Sequence[dict[str, Any]], keys: Sequence[str], x: str,
               metric: str) -> Path | None:
    """``out/plots/sweep-<metric>.png``: ``metric`` against the swept ``x``, one line per
    flow (and per combination of the other swept keys); None without layers.plotting."""
    if plotting_module() is None:
        return None
    return None
