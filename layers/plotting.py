"""Figures from connection traces: congestion window, RTT and throughput over time.

Needs matplotlib (``pip install 'layers[plot]'``); importing this module without it raises
:class:`ImportError`. Drawing uses matplotlib's object API on its Agg/SVG/PDF canvases, never
``pyplot``, so it runs headless, changes no global backend and is safe in a process that plots
elsewhere too::

    from layers.plotting import plot_traces

    fig = plot_traces(["cubic.jsonl", "bbr.jsonl"], "compare.pdf",
                      metrics=["cwnd", "rtt", "throughput"])

Each metric is one subplot on a shared time axis (seconds from each trace's first sample).
Each flow keeps one color in every subplot; line styles tell the series of a subplot apart
(its small legend says which). Several traces overlay, labelled by file name unless
``labels`` says otherwise.

Metrics (:data:`METRICS`):

``cwnd``        congestion window (solid) and bytes in flight (dashed), in KiB or packets
``ssthresh``    slow-start threshold while finite
``rtt``         smoothed RTT (solid), minimum RTT (dashed), RTT samples (dots), in ms
``throughput``  goodput from the delivered bytes in time bins (solid), the engine's
                delivery-rate samples (dashed), the pacing rate when set (dotted), in Mbit/s
``rto``         retransmission timeout, in ms
``retransmits`` cumulative retransmitted segments (solid) and segments marked lost (dashed)
any other       a numeric column as it is, e.g. ``cc.w_max``, ``snd_wnd``, ``send_q``
"""

from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import attrs
import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from layers.errors import ConfigurationError
from layers.tracing import FlowSeries, Trace, read_trace

__all__ = ["DEFAULT_METRICS", "METRICS", "OUTPUT_FORMATS", "plot_traces"]

DEFAULT_METRICS = ("cwnd", "rtt", "throughput")
OUTPUT_FORMATS = ("png", "svg", "pdf")
CWND_UNITS = ("KiB", "packets", "bytes")
#: points per drawn line at most; longer series keep each bucket's minimum and maximum
MAX_POINTS = 4000
_INFINITE = float(1 << 30)

_STYLE: dict[str, Any] = {
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.labelsize": 9.5,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "legend.fontsize": 8.0,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.2,
    "svg.fonttype": "none",  # text stays text in SVG (searchable, editable)
    "pdf.fonttype": 42,  # TrueType in PDF: what publishers' checkers want
    "ps.fonttype": 42,
    "savefig.bbox": "tight",
}

Points = tuple[list[float], list[float]]


@attrs.frozen
class _Ctx:
    """What a series function needs beyond the flow: the time origin and the options."""

    t0: float
    cwnd_unit: str
    window: float | None


@attrs.frozen
class Series:
    label: str
    style: str  # "-", "--", ":", or "." for dots
    points: Callable[[FlowSeries, _Ctx], Points]
    #: a state variable: it holds its value until the next sample (drawn as steps, so a
    #: silence, say a retransmission timeout, is not drawn as a slope)
    steps: bool = True


@attrs.frozen
class Metric:
    title: str
    ylabel: Callable[[_Ctx], str]
    series: tuple[Series, ...]


# --- series --------------------------------------------------------------------------------


def _column(name: str, scale: float = 1.0, *, finite_below: float | None = None
            ) -> Callable[[FlowSeries, _Ctx], Points]:
    def points(flow: FlowSeries, ctx: _Ctx) -> Points:
        ts, ys = [], []
        for t, v in zip(flow.time, flow.numbers(name), strict=False):
            if v is None or (finite_below is not None and v >= finite_below):
                continue
            ts.append(t - ctx.t0)
            ys.append(v * scale)
        return ts, ys

    return points


def _window(name: str, *, finite_below: float | None = None
            ) -> Callable[[FlowSeries, _Ctx], Points]:
    """A window in bytes, shown in the unit the context asks for."""

    def points(flow: FlowSeries, ctx: _Ctx) -> Points:
        ts, ys = [], []
        mss = flow.numbers("mss")
        for t, v, m in zip(flow.time, flow.numbers(name), mss, strict=False):
            if v is None or (finite_below is not None and v >= finite_below):
                continue
            if ctx.cwnd_unit == "packets":
                if not m:
                    continue
                v /= m
            elif ctx.cwnd_unit == "KiB":
                v /= 1024.0
            ts.append(t - ctx.t0)
            ys.append(v)
        return ts, ys

    return points


def _goodput(flow: FlowSeries, ctx: _Ctx) -> Points:
    """Mbit/s of ``delivered`` in consecutive bins of ``ctx.window`` seconds (a hundredth of
    the flow's duration by default), the counter read as a step function between samples, so
    a silence counts as nothing delivered; or the trace's own ``goodput_bps`` column when it
    has no ``delivered``. The last point repeats the last bin's value at its end."""
    pairs = [(t, d) for t, d in zip(flow.time, flow.numbers("delivered"), strict=False)
             if d is not None]
    if len(pairs) < 2 or pairs[-1][0] <= pairs[0][0]:
        return _column("goodput_bps", 1e-6)(flow, ctx)
    first, last = pairs[0][0], pairs[-1][0]
    window = ctx.window or max((last - first) / 100.0, 1e-3)
    bins = max(int((last - first) / window), 1)
    if bins == 1:
        window = last - first
    ts: list[float] = []
    ys: list[float] = []
    j = 0
    prev = pairs[0][1]
    for k in range(1, bins + 1):
        edge = first + k * window
        while j + 1 < len(pairs) and pairs[j + 1][0] <= edge:
            j += 1
        cur = pairs[j][1]
        ts.append(first + (k - 1) * window - ctx.t0)
        ys.append((cur - prev) * 8.0 / window / 1e6)
        prev = cur
    ts.append(first + bins * window - ctx.t0)
    ys.append(ys[-1])
    return ts, ys


def _window_label(ctx: _Ctx) -> str:
    return {"KiB": "KiB", "packets": "packets", "bytes": "bytes"}[ctx.cwnd_unit]


METRICS: dict[str, Metric] = {
    "cwnd": Metric("congestion window", lambda c: f"window ({_window_label(c)})", (
        Series("cwnd", "-", _window("cwnd")),
        Series("in flight", "--", _window("in_flight")),
    )),
    "ssthresh": Metric("slow-start threshold", lambda c: f"ssthresh ({_window_label(c)})", (
        Series("ssthresh", "-", _window("ssthresh", finite_below=_INFINITE)),
    )),
    "rtt": Metric("round-trip time", lambda c: "RTT (ms)", (
        Series("srtt", "-", _column("srtt", 1e3)),
        Series("min RTT", "--", _column("min_rtt", 1e3)),
        Series("samples", ".", _column("rtt", 1e3), steps=False),
    )),
    "throughput": Metric("throughput", lambda c: "throughput (Mbit/s)", (
        Series("goodput", "-", _goodput),
        Series("delivery rate", "--", _column("delivery_rate", 8e-6)),
        Series("pacing rate", ":", _column("pacing_rate", 8e-6)),
    )),
    "rto": Metric("retransmission timeout", lambda c: "RTO (ms)", (
        Series("rto", "-", _column("rto", 1e3)),
    )),
    "retransmits": Metric("retransmissions", lambda c: "segments (cumulative)", (
        Series("retransmitted", "-", _column("retransmits")),
        Series("lost", "--", _column("lost")),
    )),
}
_ALIASES = {"inflight": "cwnd", "in_flight": "cwnd", "goodput": "throughput",
            "delivery_rate": "throughput", "srtt": "rtt", "retrans": "retransmits",
            "loss": "retransmits", "lost": "retransmits"}


def _metric(name: str, fields: set[str]) -> Metric:
    key = _ALIASES.get(name, name)
    if key in METRICS:
        return METRICS[key]
    if name in fields:
        return Metric(name, lambda c: name, (Series(name, "-", _column(name)),))
    known = ", ".join([*METRICS, "or a column such as cc.<field>"])
    raise ConfigurationError(f"unknown metric {name!r}: use {known}")


# --- helpers -------------------------------------------------------------------------------


def _decimate(ts: list[float], ys: list[float], limit: int = MAX_POINTS) -> Points:
    """At most ``limit`` points that keep each bucket's extremes (a sawtooth stays one)."""
    n = len(ts)
    if n <= limit:
        return ts, ys
    buckets = limit // 2
    out_t: list[float] = []
    out_y: list[float] = []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        if lo >= hi:
            continue
        seg = range(lo, hi)
        i_min = min(seg, key=ys.__getitem__)
        i_max = max(seg, key=ys.__getitem__)
        for i in sorted({i_min, i_max}):
            out_t.append(ts[i])
            out_y.append(ys[i])
    return out_t, out_y


def _matches(flow: str, label: str, patterns: Sequence[str]) -> bool:
    for p in patterns:
        if any(c in p for c in "*?["):
            if fnmatch.fnmatchcase(flow, p) or fnmatch.fnmatchcase(label, p):
                return True
        elif p in flow or p in label:
            return True
    return False


def _pretty(flow: str) -> str:
    return flow.replace("->", " → ")


def _palette(n: int) -> list[Any]:
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def output_format(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in OUTPUT_FORMATS:
        raise ConfigurationError(
            f"cannot tell the figure format of {str(path)!r}: end it in .png, .svg or .pdf")
    return suffix


# --- the figure ------------------------------------------------------------------------------


def plot_traces(
    traces: Sequence[str | os.PathLike[str] | Trace],
    output: str | os.PathLike[str] | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    flows: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    cwnd_unit: str = "KiB",
    window: float | None = None,
    absolute_time: bool = False,
    width: float = 7.0,
    dpi: int = 150,
) -> Figure:
    """Draw ``traces`` (paths or :class:`~layers.tracing.Trace` objects) and, if ``output``
    is given, save the figure there (PNG, SVG or PDF by extension). Returns the figure.

    ``flows`` keeps the flows whose name (or ``label: name``) contains one of the strings,
    or matches one of the shell patterns; ``labels`` names the traces (default: file stems);
    ``cwnd_unit`` is ``KiB``, ``packets`` or ``bytes``; ``window`` is the goodput averaging
    window in seconds; ``absolute_time`` keeps the stack's clock instead of starting each
    trace at zero. Raises :class:`ConfigurationError` for anything it cannot draw."""
    if not traces:
        raise ConfigurationError("give at least one trace to plot")
    if not metrics:
        raise ConfigurationError("give at least one metric, e.g. cwnd,rtt,throughput")
    if cwnd_unit not in CWND_UNITS:
        raise ConfigurationError(f"window unit {cwnd_unit!r}: use {', '.join(CWND_UNITS)}")
    if window is not None and not (math.isfinite(window) and window > 0):
        raise ConfigurationError(f"goodput window {window!r} must be positive seconds")
    if output is not None:
        output_format(output)
        if not Path(output).parent.is_dir():
            raise ConfigurationError(f"cannot write {str(output)!r}: its directory does not "
                                     f"exist; create it or pick another path")
    loaded = [t if isinstance(t, Trace) else read_trace(t) for t in traces]
    if labels is not None and len(labels) != len(loaded):
        raise ConfigurationError(
            f"{len(labels)} labels for {len(loaded)} traces: give one label per trace")
    names = list(labels) if labels is not None else [
        (t.path.name.split(".")[0] if t.path is not None else f"trace {i + 1}")
        for i, t in enumerate(loaded)]
    fields = {f for t in loaded for f in t.fields}
    panels = [(m, _metric(m, fields)) for m in metrics]

    # (trace index, its label, flow series) in drawing order
    chosen: list[tuple[int, str, FlowSeries]] = []
    for i, (trace, name) in enumerate(zip(loaded, names, strict=True)):
        if not len(trace):
            where = trace.path if trace.path is not None else name
            raise ConfigurationError(f"{where}: the trace has no samples (did any TCP "
                                     f"connection carry data while it was written?)")
        for flow in trace.flows.values():
            if flows and not _matches(flow.flow, f"{name}: {flow.flow}", flows):
                continue
            chosen.append((i, name, flow))
    if not chosen:
        available = ", ".join(f.flow for t in loaded for f in t.flows.values())
        raise ConfigurationError(f"no flow matches {', '.join(flows or [])}; the traces "
                                 f"hold: {available}")

    with matplotlib.rc_context(cast(Any, _STYLE)):
        fig = Figure(figsize=(width, 0.6 + 1.9 * len(panels)), dpi=dpi, layout="constrained")
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        colors = _palette(len(chosen))
        handles: list[Line2D] = []
        drawn: dict[str, set[str]] = {key: set() for key, _ in panels}
        for n, (i, name, flow) in enumerate(chosen):
            trace = loaded[i]
            t0 = 0.0 if absolute_time else (trace.start or 0.0)
            cc = f" ({flow.cc})" if flow.cc else ""
            label = f"{_pretty(flow.flow)}{cc}"
            if len(loaded) > 1:
                label = f"{name}: {label}"
            handles.append(Line2D([], [], color=colors[n], label=label))
            ctx = _Ctx(t0, cwnd_unit, window)
            for ax, (key, metric) in zip(axes, panels, strict=True):
                for series in metric.series:
                    ts, ys = series.points(flow, ctx)
                    if not ts:
                        continue
                    drawn[key].add(series.label)
                    gid = f"line-{key}-{series.label.replace(' ', '_')}-f{n}"
                    if series.style == ".":
                        ts, ys = _decimate(ts, ys)
                        ax.plot(ts, ys, ".", color=colors[n], markersize=1.5, alpha=0.35,
                                gid=gid, rasterized=len(ts) > 2000)
                    else:
                        ts, ys = _decimate(ts, ys)
                        ax.plot(ts, ys, series.style, color=colors[n], gid=gid,
                                drawstyle="steps-post" if series.steps else "default")
        for ax, (key, metric) in zip(axes, panels, strict=True):
            ctx = _Ctx(0.0, cwnd_unit, window)
            ax.set_ylabel(metric.ylabel(ctx))
            ax.set_ylim(bottom=0)
            if not ax.lines:
                ax.text(0.5, 0.5, "no data in these traces", transform=ax.transAxes,
                        ha="center", va="center", color="0.5")
            kinds = [s for s in metric.series if s.label in drawn[key]]
            if len(kinds) > 1:
                ax.legend(handles=[
                    Line2D([], [], color="0.3", marker="." if s.style == "." else None,
                           linestyle=cast(Any, "none" if s.style == "." else s.style),
                           label=s.label)
                    for s in kinds], loc="lower right", bbox_to_anchor=(1.0, 1.0),
                    ncol=len(kinds), handlelength=2.2, borderaxespad=0.1)
        axes[-1].set_xlabel("stack time (s)" if absolute_time else "time (s)")
        axes[-1].set_xlim(left=None if absolute_time else 0.0)
        longest = max(len(str(h.get_label())) for h in handles)
        # the title heads the flows' legend (a suptitle would overlap an outside legend)
        fig.legend(handles=handles, loc="outside upper center", title=title,
                   title_fontsize=_STYLE["axes.titlesize"],
                   ncol=1 if len(handles) == 1 or longest > 45 else 2)
        if output is not None:
            path = Path(output)
            try:
                fig.savefig(path, format=output_format(path), dpi=dpi,
                            metadata=_metadata(output_format(path)))
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    return fig


def _metadata(fmt: str) -> dict[str, Any]:
    """Reproducible files: no creation date in SVG/PDF; the producer named."""
    if fmt == "png":
        return {"Software": "layers plot"}
    if fmt == "svg":
        return {"Date": None, "Creator": "layers plot"}
    return {"CreationDate": None, "Creator": "layers plot"}
