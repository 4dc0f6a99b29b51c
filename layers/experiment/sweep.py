"""Sweeps: a scenario run at every point of a grid, on local processes or a Dask cluster.

::

    layers experiment sweep mathis.toml --grid link.loss=0.005,0.01,0.02 --jobs 2
    layers experiment sweep mathis.toml --grid link.loss=0.01,0.02 --executor tcp://host:8786

Each point's run happens where the executor puts it; its results and traces come back to
this process, which writes ``DIR/points/<point>/`` (results.json, traces/, report.md), then
``DIR/sweep.csv`` (one row per point and flow) and ``DIR/sweep.json``. Ctrl-C stops the
sweep: running points are abandoned, finished ones stay written, the CSV covers them.
"""

from __future__ import annotations

import csv
import itertools
import multiprocessing
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from layers.errors import ConfigurationError
from layers.experiment.output import MANIFEST_TIME_KEYS, write_json, write_run
from layers.experiment.runner import run_point
from layers.experiment.scenario import Scenario, apply_overrides
from layers.experiment.virtual import RunOutput

__all__ = ["CSV_FLOW_COLUMNS", "SweepResult", "grid_points", "parse_grid", "run_sweep",
           "strip_times", "sweep_report", "write_csv"]

#: per-flow columns of sweep.csv, after the point's own columns
CSV_FLOW_COLUMNS = ("flow", "cc", "goodput_bps", "bytes", "retransmits", "rtt_mean_s",
                    "rtt_p95_s", "completion_time_s")
#: link and summary columns of sweep.csv
CSV_LINK_COLUMNS = ("utilization", "queue_delay_mean_s", "queue_delay_p95_s", "drops", "marks",
                    "random_losses")


def parse_grid(items: Sequence[str], source: str = "--grid") -> list[tuple[str, list[str]]]:
    """``["link.loss=0.01,0.02", "flow.cc=newreno,cubic"]`` -> [(key, values), ...]."""
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not vals:
            raise ConfigurationError(
                f"{source} {item!r}: write KEY=V1,V2,..., e.g. --grid link.loss=0.01,0.02")
        if any(k == key for k, _ in grid):
            raise ConfigurationError(f"{source}: {key} given twice; list all its values once")
        grid.append((key, vals))
    if not grid:
        raise ConfigurationError("a sweep needs at least one --grid KEY=V1,V2")
    return grid


def grid_points(grid: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[str, Any]]]:
    """The cartesian product, first key slowest."""
    keys = [k for k, _ in grid]
    return [list(zip(keys, combo, strict=True))
            for combo in itertools.product(*(v for _, v in grid))]


def point_name(overrides: Sequence[tuple[str, Any]]) -> str:
    text = ",".join(f"{k}={v}" for k, v in overrides)
    return "".join(c if c.isalnum() or c in "-_.=," else "_" for c in text)


@attrs.define
class SweepResult:
    out: Path
    #: point name -> its results (manifest included), finished points only
    points: dict[str, dict[str, Any]]
    total: int
    interrupted: bool = False
    csv: Path | None = None
    plot: Path | None = None
    failed: dict[str, str] = attrs.field(factory=dict)


# --- executors ------------------------------------------------------------------------------

Job = tuple[int, list[tuple[str, Any]]]
Done = tuple[int, RunOutput | None, dict[str, Any] | None, str | None]


def _ignore_sigint() -> None:
    # The parent decides what Ctrl-C means; a worker must not die halfway through a write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_WORKER_SCENARIO: Scenario | None = None


def _init_worker(scenario: Scenario) -> None:
    global _WORKER_SCENARIO
    _ignore_sigint()
    _WORKER_SCENARIO = scenario


def _work(job: Job) -> Done:
    assert _WORKER_SCENARIO is not None
    return _run_job(_WORKER_SCENARIO, job)


def _run_job(scenario: Scenario, job: Job) -> Done:
    index, overrides = job
    try:
        output, man = run_point(scenario, overrides)
    except ConfigurationError as exc:
        return index, None, None, str(exc)
    return index, output, man, None


def _local(scenario: Scenario, jobs: list[Job], workers: int) -> Iterator[Done]:
    if workers <= 1:
        for job in jobs:
            yield _run_job(scenario, job)
        return
    ctx = multiprocessing.get_context("forkserver")
    pool = ctx.Pool(workers, initializer=_init_worker, initargs=(scenario,))
    try:
        yield from pool.imap_unordered(_work, jobs)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _dask(scenario: Scenario, jobs: list[Job], address: str, timeout: float
          ) -> Iterator[Done]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ConfigurationError(
            "--executor needs Dask distributed: pip install 'layers[dask]'") from None
    try:
        client = Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as exc:
        raise ConfigurationError(
            f"--executor {address}: cannot reach the Dask scheduler ({exc}); start one with "
            f"'dask scheduler' and give its tcp://HOST:PORT") from None
    futures = []
    try:
        remote = client.scatter(scenario, broadcast=True)
        futures = [client.submit(_run_job, remote, job, pure=False) for job in jobs]
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.cancel(futures)
        client.close()


# --- the sweep --------------------------------------------------------------------------------

def run_sweep(
    scenario: Scenario,
    grid: Sequence[tuple[str, Sequence[Any]]],
    out: Path,
    *,
    jobs: int = 1,
    executor: str | None = None,
    metric: str = "goodput_bps",
    x: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    plots: bool = True,
    point_plots: bool = False,
    connect_timeout: float = 10.0,
) -> SweepResult:
    """Run every grid point; write each point and the combined CSV under ``out``, and the
    sweep plot (``plots``); ``point_plots`` also draws each point's own figures."""
    points = grid_points(grid)
    for ov in points:  # every point must be a valid scenario before anything runs
        apply_overrides(scenario, ov)
    if metric not in (*CSV_FLOW_COLUMNS[2:], *CSV_LINK_COLUMNS, "jain"):
        raise ConfigurationError(
            f"--metric {metric!r} is not a results column; use one of "
            f"{', '.join((*CSV_FLOW_COLUMNS[2:], *CSV_LINK_COLUMNS, 'jain'))}")
    keys = [k for k, _ in grid]
    x = x or keys[0]
    if x not in keys:
        raise ConfigurationError(f"--x {x!r} is not a swept key; use one of {', '.join(keys)}")
    out.mkdir(parents=True, exist_ok=True)
    names = [point_name(ov) for ov in points]
    job_list: list[Job] = list(enumerate(points))
    result = SweepResult(out, {}, len(points))
    link_traces: dict[str, list[dict[str, Any]]] = {}
    source = _dask(scenario, job_list, executor, connect_timeout) if executor else _local(
        scenario, job_list, jobs)
    try:
        for index, output, man, error in source:
            name = names[index]
            if output is None or man is None:
                result.failed[name] = error or "failed"
            else:
                write_run(out / "points" / name, output, man, plots=plots and point_plots)
                result.points[name] = {**output.results, "manifest": man,
                                       "overrides": dict(points[index])}
                link_traces[name] = output.link_trace
            if progress is not None:
                progress(len(result.points) + len(result.failed), len(points))
    except KeyboardInterrupt:
        result.interrupted = True
        close = getattr(source, "close", None)
        if close is not None:
            close()
    ordered = [n for n in names if n in result.points]
    result.csv = write_csv(out / "sweep.csv", [result.points[n] for n in ordered], keys)
    write_json(out / "sweep.json", {
        "scenario": scenario.to_dict(),
        "grid": {k: list(v) for k, v in grid},
        "points": ordered,
        "failed": result.failed,
        "interrupted": result.interrupted,
        "metric": metric,
        "x": x,
    })
    figures: list[Path] = []
    if plots and ordered:
        from layers.experiment.figures import sweep_plot, sweep_timeseries_plot

        result.plot = sweep_plot(out, [result.points[n] for n in ordered], keys, x, metric)
        if result.plot is not None:
            figures.append(result.plot)
        if len(ordered) <= 8:  # more lines than that overlay into noise
            over_time = sweep_timeseries_plot(out, {n: link_traces[n] for n in ordered})
            if over_time is not None:
                figures.append(over_time)
    (out / "report.md").write_text(sweep_report(scenario, result, ordered, keys, figures))
    return result


def _cell(v: Any, scale: float = 1.0, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, int | float) and not isinstance(v, bool):
        return f"{v * scale:.{digits}f}"
    return str(v)


def sweep_report(scenario: Scenario, result: SweepResult, ordered: Sequence[str],
                 keys: Sequence[str], figures: Sequence[Path]) -> str:
    """One page: a row per point and flow, the link's figures, the sweep's plots."""
    exp = scenario.experiment
    lines = [
        f"# {exp.name}: sweep over {', '.join(keys)}",
        "",
        exp.description,
        "",
        f"{len(ordered)} of {result.total} points"
        + (" (interrupted)" if result.interrupted else "")
        + (f", {len(result.failed)} failed" if result.failed else "")
        + "; each point's results, traces and report are in `points/<point>/`; every figure "
          "below is in `sweep.csv`.",
        "",
        "| " + " | ".join(keys) + " | flow | goodput (Mbit/s) | RTT mean (ms) | retransmits "
        "| link util. | queue delay mean / p95 (ms) | drops | Jain |",
        "|" + "---|" * len(keys) + "---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name in ordered:
        res = result.points[name]
        ov = res["overrides"]
        link = res["link"]
        for f in res["flows"]:
            lines.append(
                "| " + " | ".join(str(ov.get(k)) for k in keys)
                + f" | {f['label']} | {_cell(f['goodput_bps'], 1e-6)} "
                f"| {_cell(f['rtt_mean_s'], 1e3, 1)} | {f['retransmits']} "
                f"| {_cell(link['utilization'], 100, 1)}% "
                f"| {_cell(link['queue_delay_mean_s'], 1e3, 1)} / "
                f"{_cell(link['queue_delay_p95_s'], 1e3, 1)} | {link['drops']} "
                f"| {_cell(res['fairness']['jain'], 1, 3)} |")
    for name, why in result.failed.items():
        lines.append(f"\nPoint {name} failed: {why}")
    if figures:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.relative_to(result.out).as_posix()})\n" for p in figures]
    return "\n".join(lines) + "\n"


def csv_rows(points: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per point and flow: the swept values, the flow's figures, the link's."""
    rows = []
    for res in points:
        ov = res["overrides"]
        link = res["link"]
        for f in res["flows"]:
            row: dict[str, Any] = {k: ov.get(k) for k in keys}
            row["seed"] = res["scenario"]["experiment"]["seed"]
            row["flow"] = f["label"]
            for col in CSV_FLOW_COLUMNS[1:]:
                row[col] = f.get(col)
            for col in CSV_LINK_COLUMNS:
                row[f"link_{col}"] = link.get(col)
            row["jain"] = res["fairness"]["jain"]
            rows.append(row)
    return rows


def write_csv(path: Path, points: Sequence[dict[str, Any]], keys: Sequence[str]) -> Path:
    rows = csv_rows(points, keys)
    cols = [*keys, "seed", *CSV_FLOW_COLUMNS, *(f"link_{c}" for c in CSV_LINK_COLUMNS), "jain"]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for row in rows:
            w.writerow(row)
    return path


def strip_times(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` without the manifest's wall-clock facts (for comparisons)."""
    out = dict(results)
    man = dict(out.get("manifest", {}))
    for k in MANIFEST_TIME_KEYS:
        man.pop(k, None)
    out["manifest"] = man
    return out

