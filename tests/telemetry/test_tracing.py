"""Trace writers and the reader: JSON lines and CSV round-trip samples, late ``cc.*`` fields,
flush policy, closing, torn last lines and files that are not traces."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pytest
from telemetry_support import sample

from layers.errors import ConfigurationError
from layers.stack import Stack
from layers.telemetry import SAMPLE_FIELDS, ConnectionSample
from layers.timers import VirtualClock
from layers.tracing import (
    CsvWriter,
    JsonLinesWriter,
    format_from_path,
    open_trace,
    read_trace,
)

FLOW_A = "10.0.0.1:40000->10.0.0.2:5001"
FLOW_B = "10.0.0.1:40001->10.0.0.2:5001"


def _samples() -> list[ConnectionSample]:
    out = []
    for i in range(20):
        out.append(sample(time=0.01 * i, flow=FLOW_A, cwnd=14480 + 1448 * i, srtt=0.02 + i * 1e-4,
                          delivered=1448 * i, cc_state={"w_max": 20000.5, "k": 0.25 * i,
                                                        "phase": "cubic"}))
        if i >= 10:  # a second flow, with another algorithm, appears half-way
            out.append(sample(time=0.01 * i + 0.005, flow=FLOW_B, cc="bbr", cwnd=2896,
                              srtt=None, rtt=None, min_rtt=None, pacing_rate=1.25e6,
                              cc_state={"mode": "STARTUP", "btl_bw": 125000.0}))
    return out


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".jsonl.gz", ".csv.gz"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"run{suffix}"
    samples = _samples()
    with open_trace(path) as w:
        for s in samples:
            w.write(s)
    assert w.closed and w.samples == len(samples)
    trace = read_trace(path)
    assert trace.format == ("csv" if ".csv" in suffix else "jsonl")
    assert list(trace.flows) == [FLOW_A, FLOW_B]
    assert len(trace) == len(samples) and trace.skipped == 0
    a, b = trace.flows[FLOW_A], trace.flows[FLOW_B]
    assert len(a) == 20 and len(b) == 10
    # every fixed field comes back with its type
    want_a = [s.as_dict() for s in samples if s.flow == FLOW_A]
    for field in SAMPLE_FIELDS:
        assert a[field] == [d[field] for d in want_a], field
    assert a.time == pytest.approx([0.01 * i for i in range(20)])
    assert a["cc.k"] == [0.25 * i for i in range(20)]
    assert a["cc.phase"] == ["cubic"] * 20
    assert a.cc == "cubic" and b.cc == "bbr"
    # None stays None (not 0, not "")
    assert b["srtt"] == [None] * 10 and b["pacing_rate"] == [1.25e6] * 10
    assert b["cc.mode"] == ["STARTUP"] * 10
    # a field one flow never had is absent from it, not invented
    assert "cc.mode" not in a and "cc.k" not in b
    assert b["cc.k"] == [None] * 10
    assert a.numbers("cc.phase") == [None] * 20
    assert trace.fields[: len(SAMPLE_FIELDS)] == list(SAMPLE_FIELDS)


@pytest.mark.parametrize("name", ["run.csv", "run.csv.gz"])
def test_csv_header_names_cc_fields_and_late_ones_are_fixed_on_close(tmp_path: Path,
                                                                     name: str) -> None:
    path = tmp_path / name
    opener = gzip.open if name.endswith(".gz") else open
    w = CsvWriter(path, flush_samples=4)
    samples = _samples()
    for s in samples[:12]:  # flow A only, then flow B's first sample
        w.write(s)
    w.flush()
    with opener(path, "rt") as f:
        header = next(csv.reader(f))
    assert header == [*SAMPLE_FIELDS, "cc.w_max", "cc.k", "cc.phase"]
    for s in samples[12:]:
        w.write(s)
    w.close()
    with opener(path, "rt") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    assert header[-2:] == ["cc.mode", "cc.btl_bw"]
    assert all(len(r) == len(header) for r in rows), "every row padded to the final header"
    # no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert len(read_trace(path).flows) == 2


def test_csv_on_a_stream_keeps_late_cells_beyond_the_header() -> None:
    buf = io.StringIO()
    w = CsvWriter(buf, flush_samples=1)
    for s in _samples():
        w.write(s)
    w.close()
    assert not buf.closed, "a stream given to a writer is the caller's to close"
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    assert len(rows[-1]) == len(rows[0]) + 2


def test_jsonl_lines_are_plain_json_with_cc_prefix(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with open_trace(path) as w:
        w.write(sample(cc_state={"mode": "DRAIN"}, pacing_rate=float("inf")))
    (line,) = path.read_text().splitlines()
    row = json.loads(line)
    assert row["cc.mode"] == "DRAIN"
    assert row["pacing_rate"] is None, "non-finite floats are null, not the non-JSON Infinity"
    assert list(row)[: len(SAMPLE_FIELDS)] == list(SAMPLE_FIELDS)


def test_flush_policy_and_close_on_a_stack(tmp_path: Path) -> None:
    clock = VirtualClock(0.0)
    stack = Stack([], clock=clock, name="s")
    path = tmp_path / "t.jsonl"
    w = open_trace(path, stack=stack, flush_samples=100, flush_interval=1.0)
    assert stack.telemetry.active

    def emit(t: float) -> None:
        clock.advance_to(t)
        stack.poll()
        stack.telemetry.emit(sample(time=t))

    emit(0.0)
    emit(0.5)
    emit(0.9)
    assert path.read_text() == "", "buffered"
    # at the latest a second after the first pending sample, a one-shot timer flushes
    assert stack.timers.next_deadline() == pytest.approx(1.0)
    clock.advance_to(1.0)
    stack.poll()
    assert len(path.read_text().splitlines()) == 3
    assert stack.timers.next_deadline() is None, "no timer while nothing is pending"
    emit(1.5)
    assert stack.timers.next_deadline() == pytest.approx(2.5)
    # a sample a second after the last flush flushes at once, and the timer goes
    emit(2.1)
    assert len(path.read_text().splitlines()) == 5
    assert stack.timers.next_deadline() is None
    w.close()
    assert not stack.telemetry.active, "closing unsubscribes"
    stack.telemetry.emit(sample(time=3.0))
    assert len(path.read_text().splitlines()) == 5
    w.close()  # idempotent


def test_flush_by_count(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    w = open_trace(path, flush_samples=5, flush_interval=100.0)
    for i in range(4):
        w.write(sample(time=float(i) * 1e-3))
    assert path.read_text() == ""
    w.write(sample(time=0.004))
    assert len(path.read_text().splitlines()) == 6  # header + 5
    w.close()


def test_interval_subscription_thins_samples(tmp_path: Path) -> None:
    stack = Stack([], clock=VirtualClock(0.0), name="s")
    path = tmp_path / "t.jsonl"
    with open_trace(path, stack=stack, interval=0.1):
        for i in range(100):
            stack.telemetry.emit(sample(time=i * 0.01))
    assert len(read_trace(path)) == 10


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    for name in ("t.jsonl", "t.csv"):
        path = tmp_path / name
        with open_trace(path) as w:
            for s in _samples()[:5]:
                w.write(s)
        text = path.read_text()
        path.write_text(text[: len(text) - 7])  # killed mid-line
        trace = read_trace(path)
        assert len(trace) == 4 and trace.skipped == 1, name


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.jsonl", '{"time": 1}\n', "x.jsonl:1: not a layers trace line (no 'flow')"),
        ("x.jsonl", 'hello\n{"a":1}\n', "x.jsonl:1: not a layers trace line (invalid JSON"),
        ("x.jsonl", "[1, 2]\n", "not a JSON object"),
        ("x.jsonl", '{"flow": "f", "time": "soon"}\n', "no numeric 'time'"),
        ("x.csv", "a,b\n1,2\n", "the header lacks 'time' and 'flow'"),
        ("x.csv", "time,flow\n1,f,3\n", "3 cells under a header of 2"),
    ],
)
def test_not_a_trace_names_file_and_line(tmp_path: Path, name: str, content: str,
                                         message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_trace(path)


def test_missing_or_binary_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the trace"):
        read_trace(tmp_path / "nope.jsonl")
    bad = tmp_path / "x.csv.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(ConfigurationError, match="not a layers trace"):
        read_trace(bad)
    gz = tmp_path / "y.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write('{"flow": "f", "time": 0.5, "cwnd": 3}\n')
    assert read_trace(gz).flows["f"]["cwnd"] == [3]


def test_format_from_the_name_or_the_content(tmp_path: Path) -> None:
    assert format_from_path("a.csv") == "csv"
    assert format_from_path("a.ndjson.gz") == "jsonl"
    assert format_from_path("a.txt", "csv") == "csv"
    with pytest.raises(ConfigurationError, match=r"--trace-format jsonl\|csv"):
        format_from_path("a.txt")
    with pytest.raises(ConfigurationError, match="unknown"):
        format_from_path("a.csv", "xml")
    with pytest.raises(ConfigurationError, match="writable"):
        open_trace(tmp_path / "no" / "such" / "dir.csv")
    p = tmp_path / "trace.log"
    with JsonLinesWriter(p) as w:
        w.write(sample())
    assert read_trace(p).format == "jsonl"  # sniffed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--trace", "run.txt"], "--trace-format jsonl|csv"),
        (["--trace", "run.csv", "--trace-interval", "-1"], "--trace-interval -1.0: give seconds"),
        (["--trace-format", "csv"], "need --trace FILE"),
        (["--trace", "/nonexistent-dir/run.csv"], "directory /nonexistent-dir does not exist"),
    ],
)
def test_up_trace_options_fail_before_any_device(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from layers.cli import main

    # a device name no test makes: the error must come before anything is opened
    assert main(["up", "--link", "tap:ltnever0", "--address", "10.0.0.2/24", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
