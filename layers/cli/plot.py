"""``layers plot TRACE... -o FILE.png|svg|pdf``: figures from ``layers up --trace`` files.

The drawing is :func:`layers.plotting.plot_traces`'s; it needs matplotlib, an optional extra.
Without it the command says which extra to install, in one line, and exits 2."""

from __future__ import annotations

import argparse
from typing import Any

from layers.cli.common import Commands
from layers.errors import ConfigurationError

EXTRA_HINT = "layers plot needs matplotlib: pip install 'layers[plot]'"


def _plotting() -> Any:
    try:
        from layers import plotting
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != "matplotlib":
            raise
        raise ConfigurationError(EXTRA_HINT) from None
    return plotting


def _list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    return items or None


def cmd_plot(args: argparse.Namespace) -> int:
    plotting = _plotting()
    if not 0.5 <= args.width <= 50:
        raise ConfigurationError(f"--width {args.width}: give inches in 0.5..50, e.g. 3.5 or 7")
    if not 30 <= args.dpi <= 1200:
        raise ConfigurationError(f"--dpi {args.dpi}: give 30..1200, e.g. 150 or 300")
    metrics = _list(args.metrics) or list(plotting.DEFAULT_METRICS)
    labels = _list(args.labels)
    fig = plotting.plot_traces(
        args.traces, args.output, metrics=metrics, flows=_list(args.flows), labels=labels,
        title=args.title, cwnd_unit=args.units, window=args.window,
        absolute_time=args.absolute_time, width=args.width, dpi=args.dpi)
    flows = len(fig.legends[0].get_texts())  # the figure's legend: one entry per flow
    print(f"layers plot: wrote {args.output} ({', '.join(metrics)}; {flows} flow"
          f"{'s' if flows != 1 else ''} from {len(args.traces)} trace"
          f"{'s' if len(args.traces) != 1 else ''})")
    return 0


def add_commands(commands: Commands) -> None:
    p = commands.add(
        "plot", cmd_plot, help="draw cwnd, RTT and throughput from traces (PNG, SVG, PDF)",
        description="Draw traces written by layers up --trace (or layers.tracing) as one "
                    "figure: a subplot per metric on a shared time axis, each flow one color, "
                    "several traces overlaid. Needs matplotlib: pip install 'layers[plot]'.",
        epilog="Metrics: cwnd (window and bytes in flight), ssthresh, rtt (srtt, min RTT, "
               "samples), throughput (goodput, delivery rate, pacing rate), rto, retransmits, "
               "or any numeric column such as cc.w_max.")
    p.add_argument("traces", nargs="+", metavar="TRACE", help="JSON-lines or CSV trace files")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the figure: FILE.png, FILE.svg or FILE.pdf")
    p.add_argument("--metrics", metavar="LIST", default=None,
                   help="comma list of subplots (default cwnd,rtt,throughput)")
    p.add_argument("--flows", metavar="LIST", default=None,
                   help="comma list of flows to draw: substrings or shell patterns of "
                        "'A:P->B:Q' (default: all)")
    p.add_argument("--labels", metavar="LIST", default=None,
                   help="comma list naming the traces in the legend (default: file names)")
    p.add_argument("--title", default=None, help="a title above the figure")
    p.add_argument("--units", choices=("KiB", "packets", "bytes"), default="KiB",
                   help="the unit of windows (default KiB)")
    p.add_argument("--window", type=float, default=None, metavar="SECONDS",
                   help="goodput averaging window (default: a fiftieth of the flow's duration)")
    p.add_argument("--absolute-time", action="store_true",
                   help="the stack's clock on the time axis instead of seconds from each "
                        "trace's start")
    p.add_argument("--width", type=float, default=7.0, metavar="INCHES",
                   help="figure width (default 7, a two-column paper's text width)")
    p.add_argument("--dpi", type=int, default=150, help="PNG resolution (default 150)")
