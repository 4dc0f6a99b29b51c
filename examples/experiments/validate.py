"""Run the validation sweeps and draw measurement against model, one figure each.

    python examples/experiments/validate.py [--out results/validate] [--jobs 2]

* ``mathis.toml``: NewReno under random loss p against the square-root law (Mathis et al.
  1997) with Ott, Kemperman and Mathis's constant for independent losses (C = 1.31), and the
  periodic-loss constant sqrt(3/2) for reference;
* ``cubic-response.toml``: CUBIC against RFC 9438's response function, with Reno's for
  reference.

Prints the measured goodput, the model's and their ratio per point, and writes
``OUT/<name>.png`` (needs ``pip install 'layers[plot]'``) next to each sweep's results;
``--replot`` redraws them from the results already there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from layers.experiment import load_scenario, run_sweep
from layers.experiment.figures import model_plot
from layers.experiment.models import (
    cubic_throughput,
    mathis_constant,
    mathis_throughput,
)

HERE = Path(__file__).parent
MSS = 1448  # 1500 - IP - TCP - timestamps


def _load(out: Path) -> list[dict[str, Any]]:
    """The finished points of an earlier sweep in ``out``."""
    points = []
    for results in sorted((out / "points").glob("*/results.json")):
        data = json.loads(results.read_text())
        data["overrides"] = data["manifest"]["overrides"]
        points.append(data)
    return points


def validate(name: str, out: Path, jobs: int,
             models: dict[str, Callable[[float, float], float]], primary: str,
             replot: bool = False) -> None:
    scenario = load_scenario(HERE / f"{name}.toml")
    assert scenario.sweep is not None
    grid = list(scenario.sweep.grid.items())
    if replot:
        found = _load(out / name)
    else:
        found = list(run_sweep(scenario, grid, out / name, jobs=jobs,
                               plots=False).points.values())
    points = sorted(found, key=lambda r: float(r["overrides"]["link.loss"]))
    ps = [float(r["overrides"]["link.loss"]) for r in points]
    goodput = [r["flows"][0]["goodput_bps"] / 1e6 for r in points]
    rtts = [r["flows"][0]["rtt_mean_s"] for r in points]
    rtt = sum(rtts) / len(rtts)
    print(f"{name}: mean RTT {rtt * 1e3:.1f} ms")
    print(f"  {'p':>7} {'measured':>9} {primary:>12} {'ratio':>6}")
    for p, g, r in zip(ps, goodput, rtts, strict=True):
        m = models[primary](p, r) / 1e6
        print(f"  {p:7.4f} {g:8.2f}M {m:11.2f}M {g / m:6.2f}")
    figure = model_plot(
        out / f"{name}.png", ps, {f"measured ({scenario.flow[0].cc})": goodput},
        {label: (lambda p, fn=fn: fn(p, rtt) / 1e6) for label, fn in models.items()},
        xlabel="random loss probability p", ylabel="goodput (Mbit/s)",
        title=f"{scenario.experiment.description}")
    print(f"  figure: {figure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/validate", help="where to write")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--only", choices=("mathis", "cubic-response"))
    parser.add_argument("--replot", action="store_true",
                        help="draw the figures from the results already in --out")
    args = parser.parse_args()
    out = Path(args.out)
    c_random = mathis_constant()
    if args.only in (None, "mathis"):
        validate("mathis", out, args.jobs, {
            f"Mathis et al., C = {c_random:.2f} (random loss)":
                lambda p, rtt: mathis_throughput(MSS, rtt, p, c_random),
            f"Mathis et al., C = {math.sqrt(1.5):.2f} (periodic loss)":
                lambda p, rtt: mathis_throughput(MSS, rtt, p, math.sqrt(1.5)),
        }, f"Mathis et al., C = {c_random:.2f} (random loss)", args.replot)
    if args.only in (None, "cubic-response"):
        validate("cubic-response", out, args.jobs, {
            "RFC 9438 response function": lambda p, rtt: cubic_throughput(MSS, rtt, p),
            f"Reno (Mathis, C = {c_random:.2f})":
                lambda p, rtt: mathis_throughput(MSS, rtt, p, c_random),
        }, "RFC 9438 response function", args.replot)


if __name__ == "__main__":
    main()
