"""Connection traces: telemetry samples written to a file, and read back as per-flow series.

A writer subscribes to a stack's :attr:`~layers.stack.Stack.telemetry` and writes every
:class:`~layers.telemetry.ConnectionSample` it is given, one per line::

    from layers.tracing import open_trace, read_trace

    with open_trace("run.jsonl") as trace:        # or "run.csv", "run.jsonl.gz"
        trace.attach(stack_a)                      # every ACK; interval=0.01: one per 10 ms
        trace.attach_connection(writer.transport)  # or one connection (a StreamWriter's)
        net.run_for(10.0)
    flows = read_trace("run.jsonl").flows          # {"10.0.0.1:40000->10.0.0.2:80": FlowSeries}

Formats (chosen from the file name, ``.gz`` compresses either):

* **JSON lines** (``.jsonl``, ``.ndjson``): one JSON object per sample, the fields of
  :data:`~layers.telemetry.SAMPLE_FIELDS` then the congestion control's own fields as
  ``"cc.NAME"``. Any field may appear at any time. Non-finite floats are written as ``null``.
* **CSV** (``.csv``): a header line, then one row per sample; empty cells are absent values.
  The header is :data:`~layers.telemetry.SAMPLE_FIELDS` plus every ``cc.*`` field seen before
  the first flush (one second of stack time or ``flush_samples`` samples), so an algorithm's
  fields, present from a connection's first sample, are normally in it. A ``cc.*`` field that
  first appears later (say a second connection with another algorithm) gets the next column:
  rows written after that point are longer than the header until :meth:`TraceWriter.close`
  rewrites the header line with every column (rows are padded, nothing else changes). A CSV
  written to a stream (not a path) cannot be rewritten; its late columns stay unnamed, so
  trace to a path, or to JSON lines, when the algorithm's fields matter.

Flush policy: lines are buffered and reach the file when ``flush_samples`` are pending, when
a sample comes ``flush_interval`` seconds of stack time after the last flush, at the latest
``flush_interval`` seconds after the first pending sample (a one-shot stack timer, so an
idle connection's last samples are not held back), and at :meth:`TraceWriter.close`, which
also ends the subscriptions and closes the file (``layers up --trace`` closes it on stop).
A trace cut short (the process killed) loses at most its last second; :func:`read_trace`
skips a torn last line.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

import attrs

from layers.errors import ConfigurationError
from layers.telemetry import SAMPLE_FIELDS, ConnectionSample, Subscription

if TYPE_CHECKING:
    from layers.stack import Stack
    from layers.timers import Timer

__all__ = [
    "FORMATS",
    "CsvWriter",
    "FlowSeries",
    "JsonLinesWriter",
    "Trace",
    "TraceWriter",
    "format_from_path",
    "open_trace",
    "read_trace",
]

#: the trace formats, by the name ``--trace-format`` takes
FORMATS = ("jsonl", "csv")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
#: fixed fields that hold text (every other field is a number or absent)
_TEXT_FIELDS = frozenset({"flow", "state", "cc"})


def format_from_path(path: str | os.PathLike[str], given: str | None = None) -> str:
    """The trace format for ``path``: ``given`` if set, else from the extension (``.gz``
    ignored). Raises :class:`ConfigurationError` naming the fix when neither says."""
    if given is not None:
        if given not in FORMATS:
            raise ConfigurationError(
                f"trace format {given!r} is unknown; use one of {', '.join(FORMATS)}")
        return given
    p = Path(path)
    suffix = Path(p.stem).suffix if p.suffix == ".gz" else p.suffix
    try:
        return _SUFFIXES[suffix.lower()]
    except KeyError:
        raise ConfigurationError(
            f"cannot tell the trace format of {str(path)!r} from its name; end it in .jsonl or "
            f".csv (optionally .gz), or say --trace-format jsonl|csv") from None


def _open_text(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8", newline="")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8", newline="")


# --- writers ------------------------------------------------------------------------------


class TraceWriter:
    """The common part of the writers: subscriptions, buffering, flushing, closing.

    ``target`` is a path (the writer opens, truncates and closes it) or an open text stream
    (left open). Use :func:`open_trace` to pick the writer from the file name."""

    format: ClassVar[str] = ""

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[str],
        *,
        flush_interval: float = 1.0,
        flush_samples: int = 1024,
    ) -> None:
        if flush_interval <= 0:
            raise ConfigurationError(f"flush_interval={flush_interval!r} must be positive seconds")
        if flush_samples < 1:
            raise ConfigurationError(f"flush_samples={flush_samples!r} must be at least 1")
        self.flush_interval = float(flush_interval)
        self.flush_samples = int(flush_samples)
        self.path: Path | None
        if isinstance(target, str | os.PathLike):
            self.path = Path(target)
            try:
                self._file = _open_text(self.path, "w")
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot write the trace {str(self.path)!r}: {exc.strerror or exc}; pick a "
                    f"writable path") from None
            self._owns_file = True
        else:
            self.path = None
            self._file = target
            self._owns_file = False
        #: samples written (or held for the first flush) so far
        self.samples = 0
        self.closed = False
        self._pending: list[Any] = []
        self._last_flush: float | None = None
        self._timer: Timer | None = None
        self._subscriptions: list[Subscription] = []

    # --- subscribing ---
    def attach(self, stack: Stack, *, interval: float = 0.0) -> Subscription:
        """Write ``stack``'s samples: every ACK that changes a connection (``interval=0``) or
        at most one per flow every ``interval`` seconds. Several stacks may share a writer."""
        if self.closed:
            raise ConfigurationError("this trace writer is closed; open a new one")

        def observe(sample: ConnectionSample) -> None:
            self.write(sample, stack)

        sub = stack.telemetry.subscribe(observe, interval=interval)
        self._subscriptions.append(sub)
        return sub

    def attach_connection(self, connection: Any, *, interval: float = 0.0,
                          stack: Stack | None = None) -> Subscription:
        """Write one connection's samples: ``connection`` is anything with the transport's
        ``subscribe(callback, interval=)``, such as a TCP connection or, from asyncio,
        ``writer.transport``. ``stack`` (optional) lets idle tails be flushed by a timer."""
        if self.closed:
            raise ConfigurationError("this trace writer is closed; open a new one")
        subscribe = getattr(connection, "subscribe", None)
        if subscribe is None:
            raise ConfigurationError(
                f"{connection!r} has no subscribe(): give a connection of a transport that "
                f"emits telemetry (TCP), or attach the whole stack")

        def observe(sample: ConnectionSample) -> None:
            self.write(sample, stack)

        sub: Subscription = subscribe(observe, interval=interval)
        self._subscriptions.append(sub)
        return sub

    # --- writing ---
    def write(self, sample: ConnectionSample, stack: Stack | None = None) -> None:
        """Write one sample (the subscription calls this; tests and tools may too). ``stack``,
        if given, arms the flush timer on its clock."""
        if self.closed:
            return
        self._add(sample.as_dict())
        self.samples += 1
        now = sample.time
        if self._last_flush is None:
            self._last_flush = now
        if (len(self._pending) >= self.flush_samples
                or now - self._last_flush >= self.flush_interval):
            self.flush(now)
        elif self._timer is None and stack is not None and self._pending:
            self._timer = stack.call_later(self.flush_interval, self._on_timer, stack)

    def _on_timer(self, stack: Stack) -> None:
        self._timer = None
        if not self.closed:
            self.flush(stack.now)

    def _add(self, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def _write_pending(self) -> None:
        self._file.write("".join(self._pending))

    def flush(self, now: float | None = None) -> None:
        """Write pending lines to the file and flush it."""
        if self._pending:
            self._write_pending()
            self._pending.clear()
        self._file.flush()
        if now is not None:
            self._last_flush = now
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """End every subscription, write what is pending and close the file (idempotent)."""
        if self.closed:
            return
        for sub in self._subscriptions:
            sub.close()
        self._subscriptions.clear()
        try:
            self._finish()
        finally:
            self.closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._owns_file:
                self._file.close()

    def _finish(self) -> None:
        self.flush()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "<stream>"
        state = "closed" if self.closed else f"{len(self._subscriptions)} subscriptions"
        return f"<{type(self).__name__} {where} {self.samples} samples, {state}>"


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


#: one encoder for every line (json.dumps with options makes a new one per call)
_JSON = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False)


class JsonLinesWriter(TraceWriter):
    """One JSON object per line and sample; ``cc.*`` keys are the algorithm's fields."""

    format = "jsonl"

    def _add(self, row: dict[str, Any]) -> None:
        try:
            line = _JSON.encode(row)
        except ValueError:  # a non-finite float: null instead of JSON's missing Infinity
            line = _JSON.encode({k: _json_value(v) for k, v in row.items()})
        self._pending.append(line + "\n")


class CsvWriter(TraceWriter):
    """A header from :data:`SAMPLE_FIELDS` plus the ``cc.*`` fields seen before the first
    flush; later ``cc.*`` fields get new columns and the header is rewritten on close (see
    the module's documentation). Absent values are empty cells; an algorithm's field holding
    a mapping or a list is written as JSON."""

    format = "csv"

    def __init__(self, target: str | os.PathLike[str] | IO[str], **options: Any) -> None:
        super().__init__(target, **options)
        self.columns: list[str] = list(SAMPLE_FIELDS)
        self._known = set(self.columns)
        #: columns in the header line written so far (0 until the first flush)
        self._header_len = 0
        self._csv = csv.writer(self._file, lineterminator="\n")

    def _add(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key not in self._known:
                self._known.add(key)
                self.columns.append(key)
            if isinstance(value, Mapping | list | tuple):
                row[key] = json.dumps(value, separators=(",", ":"), default=str)
        self._pending.append(row)

    def _write_pending(self) -> None:
        if not self._header_len:
            self._header_len = len(self.columns)
            self._csv.writerow(self.columns)
        columns = self.columns
        self._csv.writerows([[r.get(c) for c in columns] for r in self._pending])

    def flush(self, now: float | None = None) -> None:
        if not self._header_len and not self._pending:
            self._header_len = len(self.columns)  # an empty trace still has its header
            self._csv.writerow(self.columns)
        super().flush(now)

    def _finish(self) -> None:
        self.flush()
        if len(self.columns) > self._header_len and self.path is not None:
            self._file.close()
            self._rewrite_header(self.path)

    def _rewrite_header(self, path: Path) -> None:
        """Rewrite the file with the full header, padding the rows written before a column
        appeared (streamed through a temporary file next to it, then renamed over it)."""
        width = len(self.columns)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix,
                                        dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with _open_text(path, "r") as src, _open_text(tmp, "w") as dst:
                rows = csv.reader(src)
                next(rows, None)
                out = csv.writer(dst, lineterminator="\n")
                out.writerow(self.columns)
                for row in rows:
                    out.writerow(row + [""] * (width - len(row)))
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._header_len = width


_WRITERS: dict[str, type[TraceWriter]] = {"jsonl": JsonLinesWriter, "csv": CsvWriter}


def open_trace(
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    stack: Stack | None = None,
    interval: float = 0.0,
    **options: Any,
) -> TraceWriter:
    """A writer for ``path`` in ``format`` (default: from the extension), attached to
    ``stack`` if given. ``options`` go to :class:`TraceWriter` (``flush_interval``,
    ``flush_samples``)."""
    if interval < 0:
        raise ConfigurationError(f"trace interval {interval!r} is negative; give seconds >= 0")
    writer = _WRITERS[format_from_path(path, format)](path, **options)
    if stack is not None:
        writer.attach(stack, interval=interval)
    return writer


# --- reading ------------------------------------------------------------------------------


@attrs.define
class FlowSeries:
    """One flow's samples as columns: ``series["cwnd"]`` is a list with one value per sample
    (``None`` where the sample had none), ``series.time`` the sample times."""

    flow: str
    columns: dict[str, list[Any]] = attrs.field(factory=dict)
    length: int = 0

    def append(self, row: Mapping[str, Any]) -> None:
        for key, value in row.items():
            col = self.columns.get(key)
            if col is None:
                col = self.columns[key] = [None] * self.length
            col.append(value)
        self.length += 1
        for col in self.columns.values():
            if len(col) < self.length:
                col.append(None)

    def __len__(self) -> int:
        return self.length

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __getitem__(self, name: str) -> list[Any]:
        col = self.columns.get(name)
        return list(col) if col is not None else [None] * self.length

    @property
    def time(self) -> list[float]:
        return [float(t) for t in self.columns.get("time", [])]

    @property
    def cc(self) -> str | None:
        """The congestion control's name (the last one the flow reported)."""
        names = [c for c in self.columns.get("cc", []) if c]
        return str(names[-1]) if names else None

    def numbers(self, name: str) -> list[float | None]:
        """The column as floats (``None`` for absent or non-numeric values)."""
        out: list[float | None] = []
        for v in self.columns.get(name, [None] * self.length):
            out.append(float(v) if isinstance(v, int | float) and not isinstance(v, bool)
                       and math.isfinite(v) else None)
        return out


@attrs.define
class Trace:
    """A trace file read back: its flows in order of first appearance."""

    path: Path | None
    format: str
    flows: dict[str, FlowSeries] = attrs.field(factory=dict)
    #: every field seen, in order of first appearance
    fields: list[str] = attrs.field(factory=list)
    #: a torn last line (the writer was killed mid-write) that was skipped
    skipped: int = 0
    _seen: set[str] = attrs.field(factory=set, repr=False)

    def __len__(self) -> int:
        return sum(len(f) for f in self.flows.values())

    @property
    def start(self) -> float | None:
        """The earliest sample time (the zero of relative time axes)."""
        starts = [f.time[0] for f in self.flows.values() if f.length]
        return min(starts) if starts else None

    def add(self, row: dict[str, Any]) -> None:
        for key in row:
            if key not in self._seen:
                self._seen.add(key)
                self.fields.append(key)
        flow = str(row["flow"])
        series = self.flows.get(flow)
        if series is None:
            series = self.flows[flow] = FlowSeries(flow)
        series.append(row)


def _csv_value(field: str, text: str) -> Any:
    if text == "":
        return None
    if field in _TEXT_FIELDS:
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        x = float(text)
    except ValueError:
        pass
    else:
        return x if math.isfinite(x) else None
    if text in ("True", "False"):
        return text == "True"
    if text[:1] in "[{":
        with contextlib.suppress(ValueError):
            return json.loads(text)
    return text


def _lines(f: IO[str]) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, complete) for each line; the last one may lack its newline."""
    for n, line in enumerate(f, 1):
        yield n, line, line.endswith("\n")


def _bad(where: str, n: int, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"{where}:{n}: not a layers trace line ({why}); traces come from layers up --trace or "
        f"layers.tracing writers")


def _check_row(row: Mapping[str, Any], where: str, n: int) -> None:
    if not isinstance(row.get("flow"), str) or not row["flow"]:
        raise _bad(where, n, "no 'flow'")
    t = row.get("time")
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
        raise _bad(where, n, "no numeric 'time'")


def _read_jsonl(f: IO[str], trace: Trace, where: str) -> None:
    for n, line, complete in _lines(f):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            if not complete:
                trace.skipped += 1
                continue
            raise _bad(where, n, f"invalid JSON: {exc}") from None
        if not isinstance(row, dict):
            raise _bad(where, n, "not a JSON object")
        _check_row(row, where, n)
        trace.add(row)


def _read_csv(f: IO[str], trace: Trace, where: str) -> None:
    header: list[str] | None = None
    pending: tuple[int, list[str], bool] | None = None

    def rows() -> Iterator[tuple[int, list[str], bool]]:
        lines = _lines(f)
        state: dict[str, Any] = {"n": 0, "complete": True}

        def text() -> Iterator[str]:
            for n, line, complete in lines:
                state["n"], state["complete"] = n, complete
                yield line

        for row in csv.reader(text()):
            yield state["n"], row, state["complete"]

    for n, row, complete in rows():
        if header is None:
            header = row
            if "flow" not in header or "time" not in header:
                raise _bad(where, n, "the header lacks 'time' and 'flow'")
            continue
        if pending is not None:
            _csv_row(trace, header, *pending, where)
        pending = (n, row, complete)
    if pending is not None:
        n, row, complete = pending
        if complete:
            _csv_row(trace, header or [], n, row, complete, where)
        else:
            trace.skipped += 1


def _csv_row(trace: Trace, header: Sequence[str], n: int, row: list[str], _complete: bool,
             where: str) -> None:
    if not row:
        return
    if len(row) > len(header):
        raise _bad(where, n, f"{len(row)} cells under a header of {len(header)}; the writer "
                             f"was stopped before it could name its late columns")
    values = {k: _csv_value(k, v) for k, v in zip(header, row, strict=False)}
    parsed = {k: v for k, v in values.items() if v is not None or k in SAMPLE_FIELDS}
    _check_row(parsed, where, n)
    trace.add(parsed)


def read_trace(path: str | os.PathLike[str], format: str | None = None) -> Trace:
    """Load a JSON-lines or CSV trace (by extension, else by its first character) into
    per-flow series. Raises :class:`ConfigurationError` naming the file and line when it is
    not a trace."""
    p = Path(path)
    if format is None:
        try:
            format = format_from_path(p)
        except ConfigurationError:
            format = None
    try:
        f = _open_text(p, "r")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the trace {str(p)!r}: {exc.strerror or exc}") from None
    with f:
        try:
            if format is None:
                head = f.read(1)
                f.seek(0)
                format = "jsonl" if head == "{" else "csv"
            trace = Trace(p, format_from_path(p, format))
            (_read_jsonl if format == "jsonl" else _read_csv)(f, trace, str(p))
        except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, csv.Error) as exc:
            raise ConfigurationError(f"{p}: not a layers trace ({exc})") from None
    return trace


def read_traces(paths: Iterable[str | os.PathLike[str]]) -> list[Trace]:
    return [read_trace(p) for p in paths]


# --- `layers up --trace` ------------------------------------------------------------------


def add_up_options(parser: argparse.ArgumentParser) -> None:
    """``--trace FILE [--trace-format jsonl|csv] [--trace-interval SECONDS]`` for ``up``."""
    g = parser.add_argument_group("telemetry")
    g.add_argument("--trace", metavar="FILE",
                   help="write every TCP connection's samples (cwnd, RTT, rates, ...) to FILE: "
                        "JSON lines (.jsonl) or CSV (.csv), .gz compresses; read it with "
                        "layers plot")
    g.add_argument("--trace-format", choices=FORMATS, default=None,
                   help="the trace's format (default: from FILE's extension)")
    g.add_argument("--trace-interval", type=float, default=0.0, metavar="SECONDS",
                   help="at most one sample per connection every SECONDS (default 0: every "
                        "ACK that changes the connection)")


@attrs.frozen
class TraceRequest:
    """What ``--trace`` asked for, checked before any device is touched."""

    path: Path
    format: str
    interval: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TraceRequest | None:
        path = getattr(args, "trace", None)
        if not path:
            if getattr(args, "trace_format", None) or getattr(args, "trace_interval", 0.0):
                raise ConfigurationError("--trace-format and --trace-interval need --trace FILE")
            return None
        interval = float(args.trace_interval)
        if not math.isfinite(interval) or interval < 0:
            raise ConfigurationError(
                f"--trace-interval {args.trace_interval}: give seconds >= 0, e.g. 0.01")
        fmt = format_from_path(path, args.trace_format)
        parent = Path(path).parent
        if not parent.is_dir():
            raise ConfigurationError(
                f"--trace {path}: directory {parent} does not exist; create it or pick another "
                f"path")
        return cls(Path(path), fmt, interval)

    def start(self, stack: Stack) -> TraceWriter:
        return open_trace(self.path, self.format, stack=stack, interval=self.interval)

    def __str__(self) -> str:
        every = f" every {self.interval:g}s" if self.interval else ""
        return f"trace {self.path} ({self.format}{every})"
