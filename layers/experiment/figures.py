"""The experiment's figures (``pip install 'layers[plot]'``).

Per run, time series go through :func:`layers.plotting.plot_traces` (the same figures as
``layers plot``): ``plots/flows.png`` (congestion window and in flight, RTT, goodput of every
flow) and ``plots/bottleneck.png`` (the queue's backlog and the delay it means, the link's
throughput). A sweep's ``plots/sweep-<metric>.png`` puts one metric against the swept value,
a line per flow; :func:`model_plot` draws measurements against a model (the validation
figures). Those two are scatter/line plots ``layers.plotting`` does not draw; they use
matplotlib's object API the same way (no pyplot, headless).
"""

from __future__ import annotations

import importlib
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["model_plot", "run_plots", "sweep_plot", "sweep_timeseries_plot"]

NO_PLOTTING = "no plots: this installation lacks matplotlib (pip install 'layers[plot]')"


def _plotting() -> Any | None:
    try:
        return importlib.import_module("layers.plotting")
    except ImportError:
        return None


def run_plots(out: Path, traces: Mapping[str, Sequence[Mapping[str, Any]]],
              link_trace: Sequence[Mapping[str, Any]]) -> tuple[list[Path], str | None]:
    """``out/plots/flows.png`` and ``out/plots/bottleneck.png``; (files, why none)."""
    plotting = _plotting()
    if plotting is None:
        return [], NO_PLOTTING
    from layers.tracing import Trace

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    flows = Trace(path=None, format="jsonl")
    for rows in traces.values():
        for row in rows:
            flows.add(dict(row))
    if len(flows):
        path = plots / "flows.png"
        plotting.plot_traces([flows], path, metrics=["cwnd", "rtt", "throughput"])
        files.append(path)
    if link_trace and "queue_bytes" in link_trace[0]:
        link = Trace(path=None, format="jsonl")
        for row in link_trace:
            link.add({"flow": "bottleneck", "time": row["time"],
                      "queue delay (ms)": row.get("queue_delay_s", 0.0) * 1e3,
                      "queue (packets)": row.get("queue_packets"),
                      # cumulative bytes: plotted as throughput over a sliding window
                      "delivered": row.get("bytes")})
        path = plots / "bottleneck.png"
        plotting.plot_traces([link], path, metrics=[
            "queue delay (ms)", "queue (packets)", "throughput"])
        files.append(path)
    return files, None


def _figure(width: float = 6.0, height: float = 3.6) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=150, layout="constrained")
    ax = fig.subplots()
    ax.grid(True, alpha=0.3)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    return fig, ax


_SCALES: dict[str, tuple[float, str]] = {
    "goodput_bps": (1e-6, "goodput (Mbit/s)"),
    "rtt_mean_s": (1e3, "mean RTT (ms)"),
    "rtt_p95_s": (1e3, "95th percentile RTT (ms)"),
    "queue_delay_mean_s": (1e3, "mean queueing delay (ms)"),
    "queue_delay_p95_s": (1e3, "95th percentile queueing delay (ms)"),
    "utilization": (100.0, "utilization (%)"),
    "completion_time_s": (1.0, "completion time (s)"),
}


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def sweep_plot(out: Path, points: Sequence[dict[str, Any]], keys: Sequence[str], x: str,
               metric: str) -> Path | None:
    """``out/plots/sweep-<metric>.png``: ``metric`` against the swept ``x``, one line per
    flow and combination of the other swept keys (link metrics: one line). None without
    matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    scale, ylabel = _SCALES.get(metric, (1.0, metric))
    per_link = metric not in ("goodput_bps", "bytes", "retransmits", "rtt_mean_s",
                              "rtt_p95_s", "completion_time_s")
    lines: dict[str, list[tuple[Any, float]]] = {}
    for res in points:
        ov = res["overrides"]
        others = ", ".join(f"{k}={ov[k]}" for k in keys if k != x)
        if per_link:
            value = res["fairness"]["jain"] if metric == "jain" else res["link"].get(metric)
            entries = [("link", value)]
        else:
            entries = [(f["label"], f.get(metric)) for f in res["flows"]]
        for label, value in entries:
            v = _number(value)
            if v is None:
                continue
            name = f"{label} ({others})" if others else label
            lines.setdefault(name, []).append((ov[x], v * scale))
    if not lines:
        return None
    xs_all = [xv for pts in lines.values() for xv, _ in pts]
    numeric = all(_number(xv) is not None for xv in xs_all)
    categories = list(dict.fromkeys(str(xv) for xv in xs_all))
    fig, ax = _figure()
    width = 0.8 / len(lines)
    for n, (name, pts) in enumerate(lines.items()):
        if numeric:
            pts = sorted(pts, key=lambda p: float(p[0]))
            ax.plot([float(p[0]) for p in pts], [p[1] for p in pts], "o-", label=name,
                    markersize=4)
        else:  # categories (queue disciplines, algorithms): grouped bars
            ax.bar([categories.index(str(p[0])) - 0.4 + width * (n + 0.5) for p in pts],
                   [p[1] for p in pts], width * 0.9, label=name)
    if not numeric:
        ax.set_xticks(range(len(categories)), categories)
        ax.grid(False, axis="x")
    elif len(xs_all) > 2 and min(float(v) for v in xs_all) > 0 and (
            max(float(v) for v in xs_all) / min(float(v) for v in xs_all) >= 20):
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False, fontsize=8)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    path = out / "plots" / f"sweep-{metric}.png"
    fig.savefig(path, metadata={"Software": "layers experiment"})
    return path


def sweep_timeseries_plot(out: Path, link_traces: Mapping[str, Sequence[Mapping[str, Any]]]
                          ) -> Path | None:
    """``out/plots/sweep-bottleneck.png``: every point's queueing delay and link throughput
    over time, overlaid (one color per point). None without layers.plotting."""
    plotting = _plotting()
    if plotting is None or not link_traces:
        return None
    from layers.tracing import Trace

    traces = []
    for rows in link_traces.values():
        t = Trace(path=None, format="jsonl")
        for row in rows:
            t.add({"flow": "bottleneck", "time": row["time"],
                   "queue delay (ms)": row.get("queue_delay_s", 0.0) * 1e3,
                   "delivered": row.get("bytes")})
        traces.append(t)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    path = out / "plots" / "sweep-bottleneck.png"
    plotting.plot_traces(traces, path, metrics=["queue delay (ms)", "throughput"],
                         labels=list(link_traces))
    return path


def model_plot(path: Path, xs: Sequence[float], measured: Mapping[str, Sequence[float]],
               models: Mapping[str, Callable[[float], float]], *, xlabel: str, ylabel: str,
               title: str, loglog: bool = True) -> Path:
    """Measured points (one marker series per name) and model curves (lines) on one axis."""
    fig, ax = _figure()
    lo, hi = min(xs), max(xs)
    grid = [lo * (hi / lo) ** (i / 99) for i in range(100)] if loglog else [
        lo + (hi - lo) * i / 99 for i in range(100)]
    for name, fn in models.items():
        ax.plot(grid, [fn(x) for x in grid], "-", label=name, linewidth=1.2)
    for name, ys in measured.items():
        ax.plot(xs, ys, "o", label=name, markersize=5)
    if loglog:
        from matplotlib.ticker import FuncFormatter

        def sparse(v: float, _: object) -> str:
            # label 1, 2 and 5 times a power of ten: enough to read, never crowded
            mantissa = round(v / 10 ** math.floor(math.log10(v)), 6) if v > 0 else 0
            return f"{v:g}" if mantissa in (1, 2, 5) else ""

        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FuncFormatter(sparse))
            axis.set_minor_formatter(FuncFormatter(sparse))

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title, 70), fontsize=9.5)
    ax.legend(frameon=False, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": "layers experiment"})
    return path
