"""Scenario files: TOML read with :mod:`tomllib`, structured into attrs classes by cattrs.

::

    [experiment]
    name = "reno-vs-cubic"
    duration = 60            # seconds of (virtual) time
    seed = 1
    medium = "virtual"       # or "tap": real time, against Linux

    [link]                   # the bottleneck
    rate = "100mbit"
    delay = "20ms"           # one way
    loss = 0.0               # random loss on the data direction, seeded
    queue = "droptail"       # "red", "codel", "fq_codel" or a plugin's discipline
    queue_limit = "1bdp"     # "100p", "150kB" or a BDP multiple

    [[flow]]
    cc = "newreno"
    start = 0                # seconds; size = "10MB" ends the flow after that many bytes

Every mistake becomes one :class:`ScenarioError` line naming the file, the key and the fix
(``reno.toml: link.rate: '100mbps' is ambiguous ...; write ... '100mbit'``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from layers.errors import ConfigurationError
from layers.experiment.units import (
    QueueLimit,
    UnitError,
    format_rate,
    parse_duration,
    parse_queue_limit,
    parse_rate,
    parse_size,
)

__all__ = [
    "MEDIA",
    "Experiment",
    "FlowSpec",
    "LinkSpec",
    "Scenario",
    "ScenarioError",
    "apply_overrides",
    "load_scenario",
    "parse_scenario",
]

MEDIA = ("virtual", "tap")


class ScenarioError(ConfigurationError):
    """A mistake in a scenario file: one line, naming the file, the key and the fix."""


# Distinct types so that cattrs picks the right unit parser per field.
class Rate(float):
    """Bits per second."""


class Seconds(float):
    """A time that may be written as a bare number of seconds (durations, start times)."""


class Delay(float):
    """A time that needs a unit ("20ms"), 0 aside."""


class Bytes(int):
    """A size in bytes ("10MB")."""


class Probability(float):
    """A fraction 0..1 or a percent string ("1%")."""


def _probability(value: object, _: type) -> Probability:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            p = float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise UnitError(f"{value!r} is not a percent; write e.g. '1%' or 0.01") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        p = float(value)
        if p > 1.0:
            raise UnitError(f"{value!r} is above 1: write a fraction such as 0.01 or a "
                            f"percent string such as '1%'")
    else:
        raise UnitError(f"{value!r} is not a probability; write a fraction (0.01) or '1%'")
    if not 0.0 <= p < 1.0:
        raise UnitError(f"{value!r} should be within 0 (no loss) and 1")
    return Probability(p)


_NO_DELAY = Delay(0.0)
_NO_LOSS = Probability(0.0)
_AT_ZERO = Seconds(0.0)
_TEN_MS = Delay(0.01)
_ONE_BDP = QueueLimit("bdp", 1.0)


@attrs.frozen
class Experiment:
    #: a short name for reports and file names
    name: str
    #: seconds of (virtual) time the experiment runs
    duration: Seconds
    #: the seed every random source of the run derives from
    seed: int = 1
    #: "virtual" (memory links on the virtual clock) or "tap" (real time against Linux)
    medium: str = "virtual"
    #: how often each flow's state is sampled into its trace
    sample_interval: Delay = _TEN_MS
    #: the MTU of every link (the bottleneck's packets are at most this large)
    mtu: int = 1500
    description: str = ""


@attrs.frozen
class LinkSpec:
    #: the bottleneck's rate in bits per second
    rate: Rate
    #: one-way propagation delay of the bottleneck
    delay: Delay = _NO_DELAY
    #: random loss on the data direction (senders to receivers)
    loss: Probability = _NO_LOSS
    #: the queue discipline's name
    queue: str = "droptail"
    queue_limit: QueueLimit = _ONE_BDP
    #: the discipline's own parameters (e.g. CoDel's target = "5ms"), passed through
    queue_options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class FlowSpec:
    #: congestion control: an installed algorithm, or "linux:NAME" on the tap medium
    cc: str = "newreno"
    #: when the flow starts, seconds from the experiment's start
    start: Seconds = _AT_ZERO
    #: bytes to send, then the flow ends; None: send until the experiment ends
    size: Bytes | None = None
    #: extra one-way delay on this flow's own access link (RTT unfairness)
    delay: Delay = _NO_DELAY
    #: run this many identical flows
    count: int = 1
    #: the name in tables and plots (default: "<index>-<cc>")
    label: str | None = None
    #: stack settings for this flow's sender and receiver (e.g. "tcp.sndbuf" = 4194304)
    settings: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class SweepSpec:
    """A scenario's own grid, for ``layers experiment sweep FILE`` without ``--grid``."""

    #: scenario key -> the values it takes (the grid is the product, first key slowest)
    grid: dict[str, list[Any]] = attrs.field(factory=dict)
    #: the sweep plot's y axis: a sweep.csv column
    metric: str = "goodput_bps"
    #: the sweep plot's x axis: a swept key (default the first)
    x: str | None = None


@attrs.frozen
class Scenario:
    experiment: Experiment
    link: LinkSpec
    flow: list[FlowSpec]
    sweep: SweepSpec | None = None
    #: where the scenario came from (for messages); not part of its hash
    source: str = attrs.field(default="<scenario>", eq=False)

    # --- derived ----------------------------------------------------------------------
    @property
    def flows(self) -> list[FlowSpec]:
        """The flows with ``count`` expanded, in order."""
        return [f for f in self.flow for _ in range(f.count)]

    def labels(self) -> list[str]:
        out: list[str] = []
        for i, f in enumerate(self.flows):
            base = f.label or f"{i}-{f.cc}"
            out.append(base if base not in out else f"{base}-{i}")
        return out

    def base_rtt(self, flow: FlowSpec | None = None) -> float:
        """The round-trip propagation delay (of ``flow``, or of the bottleneck alone)."""
        extra = flow.delay if flow is not None else 0.0
        return 2.0 * (self.link.delay + extra)

    def bdp_bytes(self) -> float:
        """Rate times the bottleneck's round-trip propagation delay, in bytes."""
        return self.link.rate * self.base_rtt() / 8.0

    def to_dict(self) -> dict[str, Any]:
        """The scenario in the file's own vocabulary (units spelt out), for results."""
        e, link = self.experiment, self.link
        return {
            "experiment": {
                "name": e.name, "duration": float(e.duration), "seed": e.seed,
                "medium": e.medium, "sample_interval": float(e.sample_interval),
                "mtu": e.mtu, "description": e.description,
            },
            "link": {
                "rate": format_rate(link.rate), "rate_bps": float(link.rate),
                "delay": float(link.delay), "loss": float(link.loss), "queue": link.queue,
                "queue_limit": str(link.queue_limit), "queue_options": dict(link.queue_options),
            },
            "flow": [
                {
                    "cc": f.cc, "start": float(f.start),
                    "size": None if f.size is None else int(f.size),
                    "delay": float(f.delay), "count": f.count, "label": f.label,
                    "settings": dict(f.settings),
                }
                for f in self.flow
            ],
        }

    def digest(self) -> str:
        """SHA-256 of the scenario's canonical form (seed included)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


# --- structuring --------------------------------------------------------------------------

def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(Rate, lambda v, _: Rate(parse_rate(v)))
    conv.register_structure_hook(Seconds, lambda v, _: Seconds(parse_duration(v)))
    conv.register_structure_hook(
        Delay, lambda v, _: Delay(parse_duration(v, bare_seconds=False)))
    conv.register_structure_hook(Bytes, lambda v, _: Bytes(parse_size(v)))
    conv.register_structure_hook(Probability, _probability)
    conv.register_structure_hook(QueueLimit, lambda v, _: parse_queue_limit(v))

    def strict_str(v: object, _: type) -> str:
        if not isinstance(v, str):
            raise UnitError(f"{v!r} should be a string in quotes")
        return v

    def strict_int(v: object, _: type) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise UnitError(f"{v!r} should be a whole number")
        return v

    def strict_dict(v: object, _: type) -> dict[str, Any]:
        if not isinstance(v, Mapping):
            raise UnitError(f"{v!r} should be a table, e.g. {{ key = value }}")
        return dict(v)

    def grid(v: object, _: type) -> dict[str, list[Any]]:
        if not isinstance(v, Mapping) or not all(
                isinstance(vals, list) and vals for vals in v.values()):
            raise UnitError('should be a table of non-empty lists, e.g. '
                            '{ "link.loss" = [0.01, 0.02] }')
        return {str(k): list(vals) for k, vals in v.items()}

    conv.register_structure_hook(str, strict_str)
    conv.register_structure_hook(int, strict_int)
    conv.register_structure_hook_func(lambda t: t == dict[str, Any], strict_dict)
    conv.register_structure_hook_func(lambda t: t == dict[str, list[Any]], grid)
    return conv


_CONVERTER = _converter()

_SECTIONS: dict[str, type] = {"experiment": Experiment, "link": LinkSpec, "flow": FlowSpec}
#: every top-level table a scenario file may have
_TABLES = (*_SECTIONS, "sweep")


def _fields(cls: type) -> list[str]:
    return [a.name for a in attrs.fields(cls)]


def _first_error(exc: BaseException, path: str) -> tuple[str, str]:
    """The dotted key and the message of the first leaf error in a cattrs error tree."""
    if isinstance(exc, ForbiddenExtraKeysError):
        cls = exc.cl
        extra = sorted(exc.extra_fields)[0]
        valid = _fields(cls) if attrs.has(cls) else []
        if cls is Scenario:
            valid = list(_TABLES)
        close = difflib.get_close_matches(extra, valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        where = f"{path}.{extra}" if path else extra
        return where, f"unknown key; {hint}valid keys here: {', '.join(valid)}"
    if isinstance(exc, ClassValidationError | IterableValidationError):
        if isinstance(exc, IterableValidationError):
            with_notes, _without = exc.group_exceptions()
        else:
            with_notes, _without = exc.group_exceptions()  # type: ignore[assignment]
        if with_notes:
            sub, note = with_notes[0]
            name = getattr(note, "name", None)
            index = getattr(note, "index", None)
            if name is not None:
                step = f"{path}.{name}" if path else str(name)
            else:
                step = f"{path}[{index}]"
            return _first_error(sub, step)
        return _first_error(exc.exceptions[0], path)
    if isinstance(exc, KeyError):
        return path, "is missing; add it"
    return path, str(exc)


def parse_scenario(
    data: Mapping[str, Any], source: str = "<scenario>"
) -> Scenario:
    """Structure ``tomllib`` output into a :class:`Scenario`, or raise :class:`ScenarioError`."""
    doc = dict(data)
    missing = [k for k in ("experiment", "link", "flow") if k not in doc]
    if missing:
        example = {"experiment": "[experiment] name = ..., duration = 10",
                   "link": "[link] rate = \"100mbit\"",
                   "flow": "[[flow]] cc = \"newreno\""}[missing[0]]
        raise ScenarioError(f"{source}: {missing[0]}: section missing; add {example}")
    if isinstance(doc["flow"], Mapping):
        raise ScenarioError(f"{source}: flow: write [[flow]] (an array of tables), not [flow]")
    try:
        scenario = _CONVERTER.structure({**doc, "source": source}, Scenario)
    except (ClassValidationError, ForbiddenExtraKeysError, IterableValidationError) as exc:
        key, message = _first_error(exc, "")
        raise ScenarioError(f"{source}: {key}: {message}") from None
    _check(scenario)
    return scenario


def _check(s: Scenario) -> None:
    """What a field's type cannot say: ranges and cross-field rules."""
    src = s.source
    e = s.experiment

    def bad(key: str, message: str) -> ScenarioError:
        return ScenarioError(f"{src}: {key}: {message}")

    if e.duration <= 0:
        raise bad("experiment.duration", "must be positive, e.g. 10 (seconds)")
    if e.medium not in MEDIA:
        raise bad("experiment.medium", f"{e.medium!r} is not a medium; use 'virtual' or 'tap'")
    if e.sample_interval <= 0 or e.sample_interval > e.duration:
        raise bad("experiment.sample_interval",
                  "must be positive and at most the duration, e.g. '10ms'")
    if not 576 <= e.mtu <= 9000:
        raise bad("experiment.mtu", f"{e.mtu} should be within 576..9000 (1500 for Ethernet)")
    if not e.name or any(c in e.name for c in "/\\\0"):
        raise bad("experiment.name", "give a short name without slashes, e.g. 'reno-vs-cubic'")
    if not s.flow:
        raise bad("flow", "no flows; add at least one [[flow]] with cc = \"newreno\"")
    for i, f in enumerate(s.flow):
        key = f"flow[{i}]"
        if f.start >= e.duration:
            raise bad(f"{key}.start", f"{float(f.start):g}s is not before the end of the "
                                      f"experiment ({float(e.duration):g}s); start it earlier")
        if f.count < 1 or f.count > 1000:
            raise bad(f"{key}.count", "should be within 1..1000")
        if f.cc.startswith("linux:"):
            if e.medium != "tap":
                raise bad(f"{key}.cc", f"{f.cc!r} (Linux's own TCP) needs experiment.medium "
                                       f"= \"tap\"; or use one of our algorithms")
            if not f.cc[6:]:
                raise bad(f"{key}.cc", "name the kernel's algorithm, e.g. 'linux:cubic'")
        for k in f.settings:
            if not isinstance(k, str) or "." not in k:
                raise bad(f"{key}.settings.{k}",
                          "settings are dotted stack settings, e.g. \"tcp.sndbuf\" = 4194304")


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such file; give the path of a scenario .toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML ({exc}); fix the syntax there") from None
    return parse_scenario(data, str(p))


# --- overrides (--seed, sweeps) -------------------------------------------------------------

def _parse_literal(text: str) -> Any:
    """A value given on the command line: TOML's reading of it, else the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(scenario: Scenario, overrides: Sequence[tuple[str, Any]]) -> Scenario:
    """A copy of ``scenario`` with ``KEY=VALUE`` overrides applied and validated again.

    Keys are dotted: ``link.rate``, ``experiment.seed``, ``flow.cc`` (every flow),
    ``flow[1].start`` (one flow). String values are read as TOML literals when they parse
    (``0.01``, ``true``), else taken as strings (``100mbit``)."""
    data = _raw(scenario)
    for key, value in overrides:
        if isinstance(value, str):
            value = _parse_literal(value)
        parts = key.split(".")
        if len(parts) < 2:
            raise ScenarioError(f"{scenario.source}: {key}: write SECTION.KEY, e.g. link.rate")
        section, rest = parts[0], parts[1:]
        index: int | None = None
        if section.startswith("flow[") and section.endswith("]"):
            try:
                index = int(section[5:-1])
            except ValueError:
                raise ScenarioError(f"{scenario.source}: {key}: write flow[N].KEY") from None
            section = "flow"
        if section not in _SECTIONS:
            raise ScenarioError(f"{scenario.source}: {key}: unknown section {section!r}; use "
                                f"experiment, link or flow")
        if section == "flow":
            flows = data["flow"]
            if index is not None and not 0 <= index < len(flows):
                raise ScenarioError(f"{scenario.source}: {key}: there are {len(flows)} "
                                    f"[[flow]] tables (index from 0)")
            targets = [flows[index]] if index is not None else flows
        else:
            targets = [data[section]]
        for t in targets:
            node = t
            for p in rest[:-1]:
                node = node.setdefault(p, {})
            node[rest[-1]] = value
    return parse_scenario(data, scenario.source)


def _raw(s: Scenario) -> dict[str, Any]:
    """The scenario as tomllib would have read it, for re-structuring after overrides."""
    d = s.to_dict()
    link = d["link"]
    link.pop("rate_bps")
    link["rate"] = f"{s.link.rate:g}bit"
    link["delay"] = f"{s.link.delay * 1e3:g}ms"
    exp = d["experiment"]
    exp["sample_interval"] = f"{s.experiment.sample_interval * 1e3:g}ms"
    if s.sweep is not None:
        d["sweep"] = {"grid": s.sweep.grid, "metric": s.sweep.metric}
        if s.sweep.x is not None:
            d["sweep"]["x"] = s.sweep.x
    for f, spec in zip(d["flow"], s.flow, strict=True):
        f["delay"] = f"{spec.delay * 1e3:g}ms"
        if f["size"] is None:
            del f["size"]
        if f["label"] is None:
            del f["label"]
    return d
