"""``layers experiment run|sweep``: scenario files, reproducible runs, sweeps.

::

    layers experiment run examples/experiments/bufferbloat.toml [--out DIR] [--seed N] [--repeat K]
    layers experiment sweep FILE.toml --grid link.loss=0.005,0.01,0.02 [--jobs J]
                                      [--executor tcp://HOST:8786] [--metric goodput_bps]

The work is in :mod:`layers.experiment`; this module parses arguments, shows progress and
prints the summary table.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from layers.cli.common import Commands
from layers.errors import ConfigurationError


def _progress_bar(total: float, unit: str, desc: str) -> Any:
    """A tqdm bar on stderr (silent when stderr is not a terminal), or None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit=unit, desc=desc, leave=False, disable=None,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} {unit} "
                           "[{elapsed}<{remaining}]" if unit == "s" else None)


def _print_table(results: dict[str, Any]) -> None:
    from layers.cli.report import table

    rows = []
    for f in results["flows"]:
        rtt = f["rtt_mean_s"]
        rows.append((f["label"], f["cc"], f"{f['goodput_bps'] / 1e6:.2f}", f["retransmits"],
                     "-" if rtt is None else f"{rtt * 1e3:.1f}"))
    print(table(("FLOW", "CC", "GOODPUT Mbit/s", "RETRANS", "RTT ms"), rows))
    link = results["link"]
    print(f"link: utilization {link['utilization'] * 100:.1f}%, queue delay mean "
          f"{link['queue_delay_mean_s'] * 1e3:.2f} ms (p95 {link['queue_delay_p95_s'] * 1e3:.2f}),"
          f" drops {link['drops']}, marks {link['marks']}; Jain's index "
          f"{results['fairness']['jain']:.3f}")
    virtual, wall = results.get("virtual"), results.get("manifest", {}).get("wall_seconds")
    if virtual and wall:
        n = virtual["bottleneck_packets"]
        print(f"virtual medium: {n} packets through the bottleneck in {wall:.1f} s of wall "
              f"time ({n / wall:.0f}/s), {virtual['events']} events")


def _default_out(name: str, what: str = "") -> Path:
    return Path("results") / (name + what)


def cmd_run(args: argparse.Namespace) -> int:
    from layers.experiment.runner import run_to_dir
    from layers.experiment.scenario import apply_overrides, load_scenario
    from layers.experiment.sweep import run_sweep

    scenario = load_scenario(args.file)
    if args.seed is not None:
        scenario = apply_overrides(scenario, [("experiment.seed", args.seed)])
    if args.set:
        scenario = apply_overrides(scenario, [_kv(s, "--set") for s in args.set])
    if args.repeat < 1:
        raise ConfigurationError(f"--repeat {args.repeat}: give 1 or more runs")
    out = Path(args.out) if args.out else _default_out(scenario.experiment.name)
    if args.repeat > 1:
        seed = scenario.experiment.seed
        bar = _progress_bar(args.repeat, "runs", scenario.experiment.name)
        res = run_sweep(scenario, [("experiment.seed", list(range(seed, seed + args.repeat)))],
                        out, jobs=args.jobs, progress=_bar_update(bar), plots=not args.no_plots,
                        point_plots=not args.no_plots)
        if bar is not None:
            bar.close()
        print(f"{len(res.points)} of {res.total} runs in {out}/points, table {res.csv}")
        return 130 if res.interrupted else (1 if res.failed else 0)
    bar = _progress_bar(float(scenario.experiment.duration), "s", scenario.experiment.name)

    def progress(now: float) -> None:
        if bar is not None:
            bar.update(now - bar.n)

    try:
        results = run_to_dir(scenario, out, progress=progress, plots=not args.no_plots)
    finally:
        if bar is not None:
            bar.close()
    _print_table(results)
    print(f"results in {out}/results.json, report {out}/report.md")
    return 0


def _bar_update(bar: Any) -> Any:
    def update(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)
    return update


def _kv(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigurationError(f"{option} {text!r}: write KEY=VALUE, e.g. link.rate=50mbit")
    return key.strip(), value.strip()


def cmd_sweep(args: argparse.Namespace) -> int:
    from layers.experiment.scenario import apply_overrides, load_scenario
    from layers.experiment.sweep import parse_grid, run_sweep

    scenario = load_scenario(args.file)
    if args.set:
        scenario = apply_overrides(scenario, [_kv(s, "--set") for s in args.set])
    grid: list[tuple[str, list[Any]]]
    own = scenario.sweep
    if args.grid:
        grid = [(k, list(v)) for k, v in parse_grid(args.grid)]
    elif own is not None and own.grid:
        grid = list(own.grid.items())
    else:
        raise ConfigurationError(f"{scenario.source}: no grid: give --grid KEY=V1,V2 or add a "
                                 f"[sweep] table with grid = {{ \"link.loss\" = [0.01, 0.02] }}")
    metric = args.metric or (own.metric if own is not None else "goodput_bps")
    x = args.x or (own.x if own is not None else None)
    jobs = args.jobs if args.jobs is not None else max(1, (os.cpu_count() or 2) - 1)
    if jobs < 1:
        raise ConfigurationError(f"--jobs {jobs}: give 1 or more")
    out = Path(args.out) if args.out else _default_out(scenario.experiment.name, "-sweep")
    n = 1
    for _, values in grid:
        n *= len(values)
    bar = _progress_bar(n, "points", scenario.experiment.name)
    try:
        res = run_sweep(scenario, grid, out, jobs=jobs, executor=args.executor,
                        metric=metric, x=x, progress=_bar_update(bar),
                        plots=not args.no_plots, point_plots=args.point_plots)
    finally:
        if bar is not None:
            bar.close()
    for name, why in res.failed.items():
        print(f"point {name} failed: {why}", file=sys.stderr)
    state = "interrupted: " if res.interrupted else ""
    print(f"{state}{len(res.points)} of {res.total} points in {out}/points; table {res.csv}"
          + (f"; plot {res.plot}" if res.plot else ""))
    if res.interrupted:
        return 130
    return 1 if res.failed else 0


def _usage(args: argparse.Namespace) -> int:
    print("usage: layers experiment run|sweep FILE.toml ...", file=sys.stderr)
    return 2


def add_commands(commands: Commands) -> None:
    p = commands.add(
        "experiment", _usage,
        help="run scenario files: dumbbell experiments on the virtual clock or against Linux",
        description="Run a scenario file (TOML: [experiment], [link], [[flow]]) and write "
                    "results.json, traces/, plots/ and report.md; or sweep it over a grid.",
        epilog="Exit status: 0 done, 1 a sweep point failed, 2 a mistake in the scenario or "
               "the arguments, 130 interrupted (finished points are kept).")
    sub = p.add_subparsers(dest="experiment_command", metavar="run|sweep", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("file", metavar="FILE.toml", help="the scenario file")
        q.add_argument("--out", metavar="DIR",
                       help="where to write (default results/NAME or results/NAME-sweep)")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a scenario value, e.g. --set link.rate=50mbit "
                            "(repeatable; flow.KEY sets every flow, flow[1].KEY one)")
        q.add_argument("--no-plots", action="store_true", help="skip the figures")

    run = sub.add_parser("run", help="run one scenario",
                         description="Run one scenario and write its results.")
    common(run)
    run.add_argument("--seed", type=int, metavar="N", help="override experiment.seed")
    run.add_argument("--repeat", type=int, default=1, metavar="K",
                     help="run K times with seeds N..N+K-1 (as a sweep over the seed)")
    run.add_argument("--jobs", type=int, default=1, metavar="J",
                     help="with --repeat: runs in parallel (default 1)")
    run.set_defaults(func=cmd_run)

    sw = sub.add_parser(
        "sweep", help="run a scenario over a grid of values",
        description="Run the scenario at every point of the grid (the product of the --grid "
                    "lists), in parallel; write one results directory per point, sweep.csv "
                    "and a plot of --metric against the swept value.")
    common(sw)
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="a scenario key and its values, e.g. link.loss=0.005,0.01,0.02 "
                         "(repeatable: the grid is the product; default: the file's [sweep] "
                         "grid)")
    sw.add_argument("--jobs", type=int, default=None, metavar="J",
                    help="local worker processes (default: CPUs - 1)")
    sw.add_argument("--executor", metavar="tcp://HOST:PORT",
                    help="run the points on a Dask distributed scheduler instead "
                         "(pip install 'layers[dask]')")
    sw.add_argument("--metric", default=None,
                    help="what the sweep plot shows (a sweep.csv column; default the file's "
                         "[sweep] metric, else goodput_bps)")
    sw.add_argument("--point-plots", action="store_true",
                    help="also draw each point's own figures (slower)")
    sw.add_argument("--x", metavar="KEY", help="the swept key on the plot's x axis "
                                               "(default: the first --grid)")
    sw.set_defaults(func=cmd_sweep)
