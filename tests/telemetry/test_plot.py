"""``layers plot`` and :func:`layers.plotting.plot_traces`: PNG, SVG and PDF files whose
content is checked (axis labels, one line per flow and series, values in the units the labels
say), the options, errors as one line with exit 2, and the message without matplotlib."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from telemetry_support import sample

from layers.cli import main
from layers.tracing import open_trace

if TYPE_CHECKING:
    from matplotlib.lines import Line2D

pytest.importorskip("matplotlib", reason="matplotlib is in the test extra: make venv")

FLOWS = ["10.0.0.1:40000->10.0.0.2:5001", "10.0.0.1:40001->10.0.0.2:5001"]
MSS = 1448
#: one segment delivered per millisecond: 11.584 Mbit/s
RATE_MBPS = MSS * 8 / 1e-3 / 1e6


def xs(line: Line2D) -> list[float]:
    """A plotted line's x values (matplotlib types them as any array-like)."""
    import numpy as np

    return [float(v) for v in np.asarray(line.get_xdata(), dtype=float)]


def ys(line: Line2D) -> list[float]:
    """A plotted line's y values."""
    import numpy as np

    return [float(v) for v in np.asarray(line.get_ydata(), dtype=float)]


def _trace(path: Path, flows: list[str], cc: str = "cubic", n: int = 300) -> Path:
    with open_trace(path) as w:
        for i in range(n):
            for k, flow in enumerate(flows):
                t = 1.0 + i * 1e-3 + k * 1e-4  # the stack's clock does not start at zero
                w.write(sample(time=t, flow=flow, cc=cc, cwnd=MSS * (10 + i % 50 + k),
                               in_flight=MSS * (8 + i % 50), srtt=0.02 + (i % 50) * 1e-4,
                               rtt=0.02 + (i % 7) * 1e-4, min_rtt=0.02, delivered=MSS * i,
                               delivery_rate=RATE_MBPS * 1e6 / 8, mss=MSS,
                               retransmits=i // 100, lost=i // 150,
                               cc_state={"w_max": 100.0 + i}))
    return path


@pytest.fixture
def traces(tmp_path: Path) -> list[Path]:
    return [_trace(tmp_path / "cubic.jsonl", FLOWS),
            _trace(tmp_path / "bbr.csv", FLOWS[:1], cc="bbr")]


def test_png_from_two_traces(traces: list[Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    from matplotlib.image import imread

    out = tmp_path / "fig.png"
    assert main(["plot", *map(str, traces), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.strip() == (f"layers plot: wrote {out} (cwnd, rtt, throughput; 3 flows from "
                            f"2 traces)")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 20_000 < len(data) < 400_000
    img = imread(out)
    height, width = img.shape[:2]
    assert 950 < width < 1150 and 850 < height < 1150  # 7 in at 150 dpi, three panels
    # the three flows' colors (tab10 blue, orange, green) are all drawn
    rgb = (img[..., :3] * 255).round().astype(int).reshape(-1, 3)
    colors = {tuple(c) for c in rgb[::7]}
    for want in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):
        assert want in colors, want


def test_svg_has_labels_and_one_line_per_flow(traces: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "fig.svg"
    assert main(["plot", *map(str, traces), "-o", str(out), "--labels", "CUBIC,BBR",
                 "--title", "two runs"]) == 0
    svg = out.read_text()
    for text in ("window (KiB)", "RTT (ms)", "throughput (Mbit/s)", "time (s)", "two runs",
                 "cwnd", "in flight", "srtt", "min RTT", "goodput", "delivery rate",
                 "CUBIC: 10.0.0.1:40000", "CUBIC: 10.0.0.1:40001", "BBR: 10.0.0.1:40000",
                 "(cubic)", "(bbr)"):
        assert text in svg, text
    ids = re.findall(r'id="(line-[^"]+)"', svg)
    for series in ("cwnd-cwnd", "cwnd-in_flight", "rtt-srtt", "rtt-min_RTT",
                   "throughput-goodput", "throughput-delivery_rate"):
        assert sorted(i for i in ids if i.startswith(f"line-{series}-")) == [
            f"line-{series}-f{n}" for n in range(3)], series
    assert not any("pacing" in i for i in ids), "no pacing line when no flow paces"


def test_values_are_in_the_labelled_units(tmp_path: Path) -> None:
    from layers.plotting import plot_traces

    path = _trace(tmp_path / "t.jsonl", FLOWS[:1])
    fig = plot_traces([path], metrics=["cwnd", "rtt", "throughput", "retransmits",
                                       "cc.w_max"], cwnd_unit="packets", window=0.05)
    cwnd_ax, rtt_ax, tput_ax, retr_ax, wmax_ax = fig.axes
    assert cwnd_ax.get_ylabel() == "window (packets)"
    cwnd = cwnd_ax.lines[0]
    assert xs(cwnd)[:3] == pytest.approx([0.0, 0.001, 0.002])  # from t0 = 1.0
    assert ys(cwnd)[:3] == pytest.approx([10, 11, 12])
    assert ys(rtt_ax.lines[0])[0] == pytest.approx(20.0)  # ms
    goodput = tput_ax.lines[0]
    assert len(ys(goodput)) == 5 + 1  # 0.299 s in bins of 50 ms, and the end point
    assert xs(goodput) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2, 0.25])
    # one segment per ms; a sample falling either side of a bin edge is worth 1/50 of it
    assert ys(goodput) == pytest.approx([RATE_MBPS] * 6, rel=0.021)
    assert ys(tput_ax.lines[1])[0] == pytest.approx(RATE_MBPS)
    assert ys(retr_ax.lines[0])[-1] == 2 and ys(retr_ax.lines[1])[-1] == 1
    assert wmax_ax.get_ylabel() == "cc.w_max"
    assert ys(wmax_ax.lines[0])[-1] == 399.0
    fig = plot_traces([path], metrics=["cwnd"], absolute_time=True)
    assert xs(fig.axes[0].lines[0])[0] == pytest.approx(1.0)
    assert fig.axes[0].get_ylabel() == "window (KiB)"
    assert ys(fig.axes[0].lines[0])[0] == pytest.approx(10 * MSS / 1024)


def test_flows_filter_and_pdf(traces: list[Path], tmp_path: Path) -> None:
    from layers.plotting import plot_traces

    out = tmp_path / "fig.pdf"
    fig = plot_traces(traces, out, flows=["*:40001->*"], metrics=["rtt"])
    assert out.read_bytes()[:5] == b"%PDF-"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "cubic: 10.0.0.1:40001 → 10.0.0.2:5001 (cubic)"]
    fig = plot_traces(traces, flows=["bbr"], metrics=["rtt"])
    assert len(fig.legends[0].get_texts()) == 1


def test_long_traces_are_decimated_keeping_extremes() -> None:
    from layers.plotting import _decimate

    ts = [i * 1e-3 for i in range(100_000)]
    ys = [float(i % 1000) for i in range(100_000)]  # a sawtooth
    dt, dy = _decimate(ts, ys, 4000)
    assert len(dt) <= 4000 and dt == sorted(dt)
    assert max(dy) == 999.0 and min(dy) == 0.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-o", "{tmp}/x.gif"], "end it in .png, .svg or .pdf"),
        (["-o", "{tmp}/x.png", "--metrics", "cwnd,nonsense"], "unknown metric 'nonsense'"),
        (["-o", "{tmp}/x.png", "--flows", "10.9.9.9"], "no flow matches 10.9.9.9"),
        (["-o", "{tmp}/x.png", "--labels", "a,b"], "2 labels for 1 traces"),
        (["-o", "{tmp}/x.png", "--window", "0"], "positive seconds"),
        (["-o", "{tmp}/x.png", "--dpi", "5"], "--dpi 5"),
        (["-o", "{tmp}/nodir/x.png"], "cannot write"),
    ],
)
def test_errors_are_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _trace(tmp_path / "t.jsonl", FLOWS[:1], n=5)
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["plot", str(path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_empty_trace_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.csv"
    open_trace(empty).close()
    assert main(["plot", str(empty), "-o", str(tmp_path / "x.png")]) == 2
    assert "the trace has no samples" in capsys.readouterr().err


def test_without_matplotlib_one_line_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _trace(tmp_path / "t.jsonl", FLOWS[:1], n=5)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.delitem(sys.modules, "layers.plotting", raising=False)
    monkeypatch.delattr("layers.plotting", raising=False)
    out = tmp_path / "x.png"
    assert main(["plot", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == "layers: error: layers plot needs matplotlib: pip install 'layers[plot]'\n"
    assert not out.exists()
