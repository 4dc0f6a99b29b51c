"""A bottleneck around any link: a rate, a propagation delay and a queue discipline.

::

    link = ShaperLink(TapLink.open("tap0"), "rate=100mbit,delay=20ms,queue=codel")
    link = ShaperLink(inner, Shape(rate=10e6, delay=0.010, queue="fq_codel"))
    link = ShaperLink(inner, tx=Shape(rate=10e6), rx=Shape(rate=1e6, queue="red"))

    # two stacks on a virtual clock, the shaper in the middle of their link
    path = net.bottleneck(a, b, "rate=10mbit,delay=10ms,queue=codel,limit=1000p")
    ...; path.forward.series.percentile(50)      # median sojourn a -> b

Per shaped direction (``dir=tx``: frames the stack sends, ``rx``: frames it receives, or
``both``, each direction with a queue of its own), a frame

1. arrives and is offered to the queue discipline (:mod:`layers.qdisc`), which may drop it;
2. leaves the queue when the wire is free: at ``max(arrival, previous departure end)``;
3. takes ``(wire size + overhead) * 8 / rate`` seconds to serialise, during which the wire is
   busy, then ``delay`` seconds of propagation before it is delivered (to the inner link for
   ``tx``, to the stack for ``rx``).

Times follow the schedule exactly, on the virtual clock and on a real one: the runner is told
to come back when the next frame is due (``next_deadline``/``poll``, as
:class:`~layers.links.faults.FaultLink` does), and a departure the runner handles late is still
stamped with the instant the wire became free.

**Offloads.** The shaper reports its inner link's capabilities without GSO
(``gso_max_size=0``), so TCP sends MTU-sized frames that the queue counts one by one, as on a
real wire. Frames larger than the MTU that arrive anyway (GRO super-frames from a TAP) are
charged their real wire size: one link, IP and TCP header per MSS-sized segment.

**What it records.** Per direction: the queue's statistics (enqueued, dequeued, drops and CE
marks by reason, sojourn), frames and bytes delivered, wire busy time, and a time series of
every departure (time, sojourn, queue length in packets and bytes after it) in compact arrays,
decimated by two whenever it reaches ``max_samples``. :meth:`ShaperLink.describe` and the
stack's report (``layers netstat -s``: ``shaper IFACE DIR (QUEUE)``) show them.

Random loss and the other faults stay in :class:`~layers.links.faults.FaultLink`; stack the two
(``FaultLink(ShaperLink(link, ...), loss=0.01)``), or use ``layers up --shape ... --faults ...``.
"""

from __future__ import annotations

import csv
import math
import os
import re
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, Literal

import attrs

from layers.counters import Counters
from layers.errors import ConfigurationError
from layers.links.base import Link, LinkWrapper, Medium, TxOffload
from layers.qdisc import (
    BUILTIN_QDISCS,
    Packet,
    Qdisc,
    QdiscInfo,
    QdiscStats,
    convert_setting,
    make_qdisc,
    parse_duration,
    parse_size,
    queue_disciplines,
)
from layers.wire.ethernet import ETH_HLEN

if TYPE_CHECKING:
    import pluggy

    from layers.interface import Interface
    from layers.stack import Stack
    from layers.virtual import VirtualNetwork

__all__ = [
    "BottleneckPath",
    "EventTimes",
    "QueueSeries",
    "Shape",
    "ShapedDirection",
    "ShaperLink",
    "bottleneck",
    "parse_rate",
    "parse_shape",
    "wire_size",
]

DIRECTIONS = ("both", "tx", "rx")


# --- configuration -----------------------------------------------------------------------------


def _check_shape(shape: Shape) -> None:
    if not (shape.rate > 0 and math.isfinite(shape.rate)):
        raise ConfigurationError(
            f"shaper rate={shape.rate} must be a positive number of bits per second, "
            f"e.g. rate=100mbit")
    if shape.delay < 0 or not math.isfinite(shape.delay):
        raise ConfigurationError(f"shaper delay={shape.delay} must be >= 0 seconds, e.g. 20ms")
    if shape.overhead < 0:
        raise ConfigurationError(f"shaper overhead={shape.overhead} must be >= 0 bytes")
    if shape.direction not in DIRECTIONS:
        raise ConfigurationError(
            f"shaper dir={shape.direction!r}: use both, tx (from the stack) or rx (toward it)")


@attrs.frozen
class Shape:
    """One bottleneck's configuration (the same for each direction it shapes)."""

    #: bits per second on the wire
    rate: float
    #: one-way propagation delay after serialisation, seconds
    delay: float = 0.0
    #: the queue discipline: a name registered through ``layers_queue_disciplines``, or a record
    queue: str | QdiscInfo = "droptail"
    #: the discipline's settings (text as in a spec, or values): ``limit``, ``target``, ...
    queue_settings: Mapping[str, Any] = attrs.field(factory=dict)
    #: bytes added to every frame's wire size for serialisation (e.g. 24 for Ethernet's
    #: preamble, FCS and inter-frame gap, which a TAP frame does not carry)
    overhead: int = 0
    #: which traffic to shape: ``both``, ``tx`` (what the stack sends) or ``rx``
    direction: str = "both"
    #: seed for the discipline's randomness (RED, FQ-CoDel's hash); None draws one
    seed: int | None = None

    def __attrs_post_init__(self) -> None:
        _check_shape(self)

    @property
    def queue_name(self) -> str:
        return self.queue if isinstance(self.queue, str) else self.queue.name

    def describe(self) -> dict[str, Any]:
        return {"rate": self.rate, "delay": self.delay, "queue": self.queue_name,
                "queue_settings": {k: v for k, v in self.queue_settings.items()},
                "overhead": self.overhead, "direction": self.direction, "seed": self.seed}


_RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}
_RATE_RE = re.compile(r"^([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*([a-z]+)$", re.I)


def parse_rate(text: str, key: str = "rate") -> float:
    """``"100mbit"`` -> 1e8 bits per second (units bit, kbit, mbit, gbit, tbit; decimal)."""
    t = text.strip()
    m = _RATE_RE.match(t)
    if m is None:
        if re.fullmatch(r"[0-9]*\.?[0-9]+", t):
            raise ConfigurationError(f"{key}={t} needs a unit: {t}mbit, {t}kbit or {t}bit")
        raise ConfigurationError(f"{key}={t!r} should be a rate such as 100mbit, 512kbit, 1gbit")
    unit = m.group(2).lower()
    if unit not in _RATE_UNITS:
        hint = ""
        if unit.endswith("bps") or unit.endswith("bit/s") or unit.endswith("b/s"):
            hint = (f"; write {m.group(1)}{unit[0] if unit[0] in 'kmgt' else ''}bit for bits "
                    f"per second (tc reads 'bps' as bytes per second, so it is not accepted)")
        raise ConfigurationError(
            f"{key}={t!r}: unknown rate unit {m.group(2)!r}; use bit, kbit, mbit or gbit{hint}")
    value = float(m.group(1)) * _RATE_UNITS[unit]
    if value <= 0:
        raise ConfigurationError(f"{key}={t} must be more than zero")
    return value


_SHAPE_KEYS = ("rate", "delay", "queue", "limit", "ecn", "dir", "overhead", "seed")
_LIMIT_RE = re.compile(r"^([0-9]+)\s*p(?:kts?|ackets?)?$", re.I)


def parse_shape(text: str) -> Shape:
    """Parse ``"rate=100mbit,delay=20ms,queue=codel,limit=1000p,ecn=1,dir=tx"``.

    Keys: ``rate`` (required; bit, kbit, mbit, gbit), ``delay`` (us, ms, s), ``queue`` (a
    discipline's name, default ``droptail``), ``limit`` (``1000p`` or ``1000`` packets, or
    bytes: ``150kB``, ``1MB``, ``64KiB``), ``ecn`` (1/0: mark instead of drop), ``dir`` (both,
    tx, rx), ``overhead`` (bytes per frame), ``seed``. Any other ``KEY=VALUE`` is a setting of
    the chosen discipline (``target=5ms``, ``max_p=10%``, ``quantum=1514``), checked when the
    shaper is made. Errors are :class:`~layers.errors.ConfigurationError` naming the fix."""
    values: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key or not value:
            raise ConfigurationError(
                f"shape {part!r} should be KEY=VALUE, e.g. rate=100mbit (keys: "
                f"{', '.join(_SHAPE_KEYS)}, or a setting of the queue)")
        if key == "rate":
            values["rate"] = parse_rate(value)
        elif key == "delay":
            values["delay"] = parse_duration("delay", value)
        elif key in ("queue", "qdisc"):
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
                raise ConfigurationError(f"queue={value!r} should be a discipline's name, "
                                         f"such as droptail, red, codel or fq_codel")
            values["queue"] = value
        elif key == "limit":
            m = _LIMIT_RE.match(value)
            if m is not None:
                settings["limit"] = int(m.group(1))
            else:
                try:
                    settings["limit_bytes"] = parse_size("limit", value)
                except ConfigurationError:
                    raise ConfigurationError(
                        f"limit={value!r} should be packets (1000p) or bytes (150kB, 1MB)"
                    ) from None
            if settings.get("limit", 1) < 1 or settings.get("limit_bytes", 1) < 1:
                raise ConfigurationError(f"limit={value} must be more than zero")
        elif key in ("dir", "direction"):
            if value not in DIRECTIONS:
                raise ConfigurationError(
                    f"dir={value!r}: use both, tx (from the stack) or rx (toward it)")
            values["direction"] = value
        elif key == "overhead":
            values["overhead"] = parse_size("overhead", value)
        elif key == "seed":
            try:
                values["seed"] = int(value, 0)
            except ValueError:
                raise ConfigurationError(f"seed={value!r} should be an integer") from None
        elif key == "ecn":
            settings["ecn"] = convert_setting("shape", "ecn", value, False)
        else:
            settings[key] = value
    if "rate" not in values:
        raise ConfigurationError(
            f"shape {text!r} has no rate: add rate=..., e.g. rate=100mbit,delay=20ms")
    return Shape(queue_settings=settings, **values)


def _as_shape(spec: Shape | str) -> Shape:
    return spec if isinstance(spec, Shape) else parse_shape(spec)


def resolve_queue(
    name: str | QdiscInfo, pm: pluggy.PluginManager | None = None
) -> QdiscInfo:
    """The :class:`~layers.qdisc.QdiscInfo` registered as ``name`` (in ``pm``'s plugins, or
    the built-ins and every installed plugin)."""
    if isinstance(name, QdiscInfo):
        return name
    if pm is None:
        for builtin in BUILTIN_QDISCS:
            if builtin.name == name:
                return builtin
    known = queue_disciplines(pm)
    info = known.get(name)
    if info is None:
        raise ConfigurationError(
            f"unknown queue discipline {name!r}; known: {', '.join(sorted(known))} (a plugin "
            f"adds others through layers_queue_disciplines)")
    return info


# --- accounting ----------------------------------------------------------------------------------


def wire_size(frame: bytes | bytearray | memoryview, l2len: int, mtu: int) -> int:
    """Bytes ``frame`` occupies on the wire. A TCP/IPv4 super-frame longer than the MTU counts
    as the MSS-sized segments it stands for, each with its own link, IP and TCP headers."""
    n = len(frame)
    if n - l2len <= mtu:
        return n
    l3 = l2len
    if n < l3 + 40 or frame[l3] >> 4 != 4:
        return n
    ihl = (frame[l3] & 0x0F) * 4
    if frame[l3 + 9] != 6 or n < l3 + ihl + 20:
        return n
    headers = ihl + ((frame[l3 + ihl + 12] >> 4) * 4)
    payload = n - l3 - headers
    mss = mtu - headers
    if mss <= 0 or payload <= 0:
        return n
    segments = -(-payload // mss)
    return n + (segments - 1) * (l2len + headers)


class EventTimes:
    """Instants of one kind of event (drops, CE marks) in an array, decimated by two when
    ``max_samples`` is reached; ``total`` counts every event, recorded or not."""

    __slots__ = ("_skip", "max_samples", "stride", "time", "total")

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self.time = array("d")
        self.stride = 1
        self.total = 0
        self._skip = 0

    def add(self, t: float, n: int = 1) -> None:
        for _ in range(n):
            self.total += 1
            if self._skip:
                self._skip -= 1
                continue
            self._skip = self.stride - 1
            self.time.append(t)
            if len(self.time) >= self.max_samples:
                self.time = array("d", self.time[::2])
                self.stride *= 2
                self._skip = self.stride - 1

    def __len__(self) -> int:
        return len(self.time)

    def count_between(self, t0: float, t1: float) -> float:
        """Events in ``[t0, t1)``, scaled by the stride (an estimate once decimated)."""
        return sum(1 for t in self.time if t0 <= t < t1) * self.stride


class QueueSeries:
    """Departures from one queue as parallel arrays: ``time``, ``sojourn`` (seconds),
    ``qlen`` and ``backlog`` (packets and bytes left behind); and the instants of drops and
    CE marks (``drops.time``, ``marks.time``). Cheap to record; decimated by two (every other
    sample kept, then every other departure recorded) when ``max_samples`` is reached, so a
    long run keeps an evenly spaced record."""

    __slots__ = ("_skip", "backlog", "drops", "marks", "max_samples", "qlen", "sojourn",
                 "stride", "time")

    def __init__(self, max_samples: int = 200_000) -> None:
        if max_samples < 2:
            raise ConfigurationError("max_samples must be at least 2")
        self.max_samples = max_samples
        self.time = array("d")
        self.sojourn = array("d")
        self.qlen = array("l")
        self.backlog = array("l")
        #: one departure in ``stride`` is recorded
        self.stride = 1
        self._skip = 0
        #: when packets were dropped, and when CE-marked (by the queue, any reason)
        self.drops = EventTimes(max_samples)
        self.marks = EventTimes(max_samples)

    def add(self, t: float, sojourn: float, qlen: int, backlog: int) -> None:
        if self._skip:
            self._skip -= 1
            return
        self._skip = self.stride - 1
        self.time.append(t)
        self.sojourn.append(sojourn)
        self.qlen.append(qlen)
        self.backlog.append(backlog)
        if len(self.time) >= self.max_samples:
            for name in ("time", "sojourn", "qlen", "backlog"):
                old = getattr(self, name)
                setattr(self, name, array(old.typecode, old[::2]))
            self.stride *= 2
            self._skip = self.stride - 1

    def __len__(self) -> int:
        return len(self.time)

    def percentile(self, q: float, field: str = "sojourn", since: float | None = None) -> float:
        """The ``q``-th percentile (0..100, nearest rank) of ``field`` over samples at or after
        ``since``; 0.0 when there are none."""
        return self.percentiles((q,), field, since)[0]

    def percentiles(
        self, qs: Iterable[float], field: str = "sojourn", since: float | None = None
    ) -> list[float]:
        """Several percentiles of ``field`` from one sort (see :meth:`percentile`)."""
        values: Any = getattr(self, field)
        if since is not None:
            values = [v for t, v in zip(self.time, values, strict=True) if t >= since]
        if not values:
            return [0.0 for _ in qs]
        ordered = sorted(values)
        n = len(ordered)
        return [float(ordered[max(0, min(n - 1, math.ceil(q / 100.0 * n) - 1))]) for q in qs]

    def rows(self) -> Iterator[tuple[float, float, int, int]]:
        return zip(self.time, self.sojourn, self.qlen, self.backlog, strict=True)

    def write_csv(self, out: str | os.PathLike[str] | IO[str]) -> None:
        """``time,sojourn,qlen,backlog`` rows, for a plot or a spreadsheet."""
        if isinstance(out, str | os.PathLike):
            with open(out, "w", newline="") as f:
                self.write_csv(f)
            return
        w = csv.writer(out)
        w.writerow(("time", "sojourn", "qlen", "backlog"))
        w.writerows(self.rows())

    def summary(self) -> dict[str, Any]:
        n = len(self.time)
        return {
            "samples": n, "stride": self.stride,
            **dict(zip(("sojourn_p50", "sojourn_p90", "sojourn_p99"),
                       self.percentiles((50, 90, 99)), strict=True)),
            "sojourn_max": max(self.sojourn) if n else 0.0,
            "qlen_max": max(self.qlen) if n else 0,
            "qlen_mean": sum(self.qlen) / n if n else 0.0,
            "drops": self.drops.total, "marks": self.marks.total,
        }


class ShapedDirection:
    """One shaped direction of a :class:`ShaperLink`: its queue, its wire and what it did."""

    def __init__(self, name: str, shape: Shape, qdisc: Qdisc, series: QueueSeries | None) -> None:
        #: "tx" or "rx"
        self.name = name
        self.shape = shape
        self.qdisc = qdisc
        #: departures over time (None when recording is off)
        self.series = series
        self.rate = shape.rate
        self.delay = shape.delay
        self.overhead = shape.overhead
        #: when the frame now on the wire has been serialised
        self.busy_until = 0.0
        #: (delivery time, frame, meta) of frames serialised and propagating, in order
        self.pipe: deque[tuple[float, bytes | bytearray, Any]] = deque()
        self.arrived = 0
        self.arrived_bytes = 0
        self.delivered = 0
        self.delivered_bytes = 0
        #: seconds the wire spent serialising
        self.busy_time = 0.0
        self.first_arrival: float | None = None

    @property
    def dropped(self) -> int:
        return self.qdisc.stats.dropped

    @property
    def marked(self) -> int:
        return self.qdisc.stats.marked

    def utilisation(self, now: float) -> float:
        """Fraction of the time since the first arrival that the wire was busy."""
        if self.first_arrival is None or now <= self.first_arrival:
            return 0.0
        return min(1.0, self.busy_time / (now - self.first_arrival))

    def describe(self, now: float | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "rate": self.rate, "delay": self.delay, "overhead": self.overhead,
            "queue": self.qdisc.describe(), "arrived": self.arrived,
            "arrived_bytes": self.arrived_bytes, "delivered": self.delivered,
            "delivered_bytes": self.delivered_bytes, "in_flight": len(self.pipe),
            "busy_time": self.busy_time,
        }
        if now is not None:
            d["utilisation"] = self.utilisation(now)
        if self.series is not None:
            d["series"] = self.series.summary()
        return d


class _DirectionCounters(Counters):
    """The shaper's figures as a ``netstat -s`` group, read when the report is made."""

    def __init__(self, name: str, path: ShapedDirection) -> None:
        super().__init__(name)
        self._path = path

    def snapshot(self) -> dict[str, object]:
        p = self._path
        st = p.qdisc.stats
        counters: dict[str, object] = {
            "frames_arrived": p.arrived, "bytes_arrived": p.arrived_bytes,
            "frames_enqueued": st.enqueued, "frames_dequeued": st.dequeued,
            "frames_delivered": p.delivered, "bytes_delivered": p.delivered_bytes,
            "frames_queued_now": len(p.qdisc), "bytes_queued_now": p.qdisc.backlog,
            "max_frames_queued": st.max_qlen,
            "sojourn_mean_us": round(st.sojourn_mean * 1e6),
            "sojourn_max_us": round(st.sojourn_max * 1e6),
        }
        if p.series is not None and len(p.series):
            p50, p90 = p.series.percentiles((50, 90))
            counters["sojourn_p50_us"] = round(p50 * 1e6)
            counters["sojourn_p90_us"] = round(p90 * 1e6)
        for reason, n in st.marks.items():
            counters[f"ce_marked_{reason}"] = n
        return {"counters": counters, "drops": dict(st.drops)}


# --- the link ----------------------------------------------------------------------------------


class ShaperLink(LinkWrapper):
    """Shape ``inner``'s traffic: ``ShaperLink(inner, "rate=10mbit,delay=5ms,queue=codel")``,
    ``ShaperLink(inner, Shape(...))``, or per direction ``ShaperLink(inner, tx=..., rx=...)``.

    ``pm`` is the plugin manager whose ``layers_queue_disciplines`` are searched for the queue's
    name (a stack's ``stack.pm``); without it the built-ins, then every installed plugin.
    ``record=False`` keeps no time series (totals only)."""

    #: frames taken from the inner link per receive call before returning
    RX_PULL_BUDGET = 1024
    notifies_deadline = True

    def __init__(
        self,
        inner: Link,
        shape: Shape | str | None = None,
        *,
        tx: Shape | str | None = None,
        rx: Shape | str | None = None,
        pm: pluggy.PluginManager | None = None,
        record: bool = True,
        max_samples: int = 200_000,
    ) -> None:
        super().__init__(inner)
        if shape is not None:
            if tx is not None or rx is not None:
                raise ConfigurationError("give ShaperLink one shape, or tx= and/or rx=, not both")
            s = _as_shape(shape)
            tx = s if s.direction in ("both", "tx") else None
            rx = s if s.direction in ("both", "rx") else None
        elif tx is None and rx is None:
            raise ConfigurationError("ShaperLink needs a shape, e.g. 'rate=10mbit,delay=10ms'")
        # TCP must send MTU-sized frames for the queue to see what a wire would carry
        self.capabilities = attrs.evolve(inner.capabilities, gso_max_size=0)
        self._ethernet = inner.capabilities.medium is Medium.ETHERNET
        self._l2len = ETH_HLEN if self._ethernet else 0
        self._mtu = inner.capabilities.mtu
        self._ready: deque[tuple[bytes | bytearray, int]] = deque()
        self.tx: ShapedDirection | None = None
        self.rx: ShapedDirection | None = None
        seed_base: int | None = None
        for name, spec in (("tx", tx), ("rx", rx)):
            if spec is None:
                continue
            s = _as_shape(spec)
            seed = s.seed
            if seed is None:
                if seed_base is None:
                    seed_base = int.from_bytes(os.urandom(4), "big")
                seed = seed_base
                s = attrs.evolve(s, seed=seed)
            info = resolve_queue(s.queue, pm)
            q = make_qdisc(info, s.queue_settings, mtu=self._mtu + self._l2len, rate=s.rate,
                           seed=seed * 2 + (name == "rx"))
            path = ShapedDirection(name, s, q, QueueSeries(max_samples) if record else None)
            setattr(self, name, path)

    # --- the wire --------------------------------------------------------------------------
    def _now(self) -> float:
        return self._clock() if self._clock is not None else 0.0

    def _advance(self, d: ShapedDirection, now: float) -> None:
        """Send every frame whose turn on the wire came by ``now``, each at the exact instant
        the wire became free; then deliver what has propagated by ``now``."""
        q = d.qdisc
        if q.qlen and d.busy_until <= now:
            rate, delay, overhead = d.rate, d.delay, d.overhead
            pipe, series, st = d.pipe, d.series, q.stats
            while q.qlen and d.busy_until <= now:
                t = d.busy_until
                events = st.dropped + st.marked
                pkt = q.dequeue(t)
                if series is not None and st.dropped + st.marked != events:
                    self._events(series, st, t)
                if pkt is None:
                    break
                ser = (pkt.size + overhead) * 8.0 / rate
                end = t + ser
                d.busy_until = end
                d.busy_time += ser
                pipe.append((end + delay, pkt.frame, pkt.meta))
                if series is not None:
                    series.add(t, pkt.sojourn, q.qlen, q.backlog)
        pipe = d.pipe
        if pipe and pipe[0][0] <= now:
            if d is self.tx:
                send = self.inner.send
                while pipe and pipe[0][0] <= now:
                    _, frame, meta = pipe.popleft()
                    d.delivered += 1
                    d.delivered_bytes += len(frame)
                    send(frame, meta)
            else:
                ready = self._ready
                while pipe and pipe[0][0] <= now:
                    _, frame, meta = pipe.popleft()
                    d.delivered += 1
                    d.delivered_bytes += len(frame)
                    ready.append((frame, meta))

    def _arrive(self, d: ShapedDirection, frame: bytes | bytearray, meta: Any, now: float) -> None:
        pipe = d.pipe
        if (d.qdisc.qlen and d.busy_until <= now) or (pipe and pipe[0][0] <= now):
            self._advance(d, now)  # (the test is _advance's own: most arrivals find it idle)
        if d.busy_until < now:
            d.busy_until = now  # the wire was idle
        size = len(frame)
        if size - self._l2len > self._mtu:
            size = wire_size(frame, self._l2len, self._mtu)
        d.arrived += 1
        d.arrived_bytes += size
        if d.first_arrival is None:
            d.first_arrival = now
        st = d.qdisc.stats
        events = st.dropped + st.marked
        d.qdisc.enqueue(Packet.from_frame(frame, ethernet=self._ethernet, size=size, meta=meta),
                        now)
        if d.series is not None and st.dropped + st.marked != events:
            self._events(d.series, st, now)
        self._advance(d, now)

    @staticmethod
    def _events(series: QueueSeries, st: QdiscStats, t: float) -> None:
        """Record the drops and marks the queue counted since the series last looked."""
        if st.dropped != series.drops.total:
            series.drops.add(t, st.dropped - series.drops.total)
        if st.marked != series.marks.total:
            series.marks.add(t, st.marked - series.marks.total)

    def _pull(self, d: ShapedDirection, now: float) -> None:
        inner_recv = self.inner.recv
        for _ in range(self.RX_PULL_BUDGET):
            got = inner_recv()
            if got is None:
                return
            self._arrive(d, got[0], got[1], now)

    # --- link interface --------------------------------------------------------------------
    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        d = self.tx
        if d is None:
            self.inner.send(frame, offload)
            return
        idle = not d.pipe
        self._arrive(d, frame if type(frame) is bytes else bytes(frame), offload, self._now())
        if idle and d.pipe and self._wakeup is not None:
            self._wakeup()  # a new deadline: have the runner come back for it

    def recv(self) -> tuple[bytes, int] | None:
        d = self.rx
        if d is None:
            return self.inner.recv()
        ready = self._ready
        if not ready:
            now = self._now()
            self._pull(d, now)
            self._advance(d, now)
            if not ready:
                return None
        frame, flags = ready.popleft()
        return (frame if type(frame) is bytes else bytes(frame)), flags

    def next_deadline(self) -> float | None:
        if self._ready:
            return self._now()
        best = self.inner.next_deadline()
        d = self.tx
        if d is not None and d.pipe:
            t = d.pipe[0][0]
            if best is None or t < best:
                best = t
        d = self.rx
        if d is not None and d.pipe:
            t = d.pipe[0][0]
            if best is None or t < best:
                best = t
        return best

    def poll(self, now: float) -> None:
        self.inner.poll(now)
        if self.rx is not None:
            self._pull(self.rx, now)
            self._advance(self.rx, now)
        if self.tx is not None:
            self._advance(self.tx, now)

    def close(self) -> None:
        for d in (self.tx, self.rx):
            if d is not None:
                d.qdisc.reset()
                d.pipe.clear()
        self._ready.clear()
        self.inner.close()

    def set_rate(self, rate: float, direction: str = "both") -> None:
        """Change the rate (bits/s) from now on, e.g. to step a bottleneck's capacity in an
        experiment. The frame on the wire finishes at the old rate; the next one uses the
        new rate."""
        if not (rate > 0 and math.isfinite(rate)):
            raise ConfigurationError(f"rate={rate} must be a positive number of bits per second")
        if direction not in DIRECTIONS:
            raise ConfigurationError(f"direction={direction!r}: use both, tx or rx")
        now = self._now()
        for d in self.directions:
            if direction in ("both", d.name):
                self._advance(d, now)  # what left before now left at the old rate
                d.rate = rate
        if self._wakeup is not None:
            self._wakeup()  # frames may have moved onto the wire: a new deadline

    # --- reports -------------------------------------------------------------------------
    @property
    def directions(self) -> list[ShapedDirection]:
        return [d for d in (self.tx, self.rx) if d is not None]

    def stack_counters(self, interface: str) -> dict[str, Counters]:
        """Counter groups for the stack's report, one per shaped direction."""
        return {f"shaper {interface} {d.name} ({d.qdisc.name})":
                _DirectionCounters(f"shaper {interface} {d.name}", d) for d in self.directions}

    def describe(self) -> dict[str, object]:
        d = super().describe()
        now = self._now() if self._clock is not None else None
        d["shaper"] = {p.name: {"config": p.shape.describe(), **p.describe(now)}
                       for p in self.directions}
        return d


# --- two stacks with a bottleneck between them --------------------------------------------------


@attrs.frozen
class BottleneckPath:
    """What :func:`bottleneck` built: the shaper (on ``a``'s end of the link) and each side's
    interface. ``forward`` is the direction a -> b, ``reverse`` b -> a (None when unshaped)."""

    shaper: ShaperLink
    a: Interface
    b: Interface

    @property
    def forward(self) -> ShapedDirection:
        assert self.shaper.tx is not None
        return self.shaper.tx

    @property
    def reverse(self) -> ShapedDirection | None:
        return self.shaper.rx

    def describe(self) -> dict[str, Any]:
        """JSON-able figures for both directions (configuration, queue statistics, delivered
        frames and bytes, utilisation, sojourn percentiles), e.g. for an experiment's results."""
        now = self.a.stack.now
        return {("forward" if p is self.shaper.tx else "reverse"):
                {"config": p.shape.describe(), **p.describe(now)}
                for p in self.shaper.directions}


def bottleneck(
    net: VirtualNetwork,
    a: Stack,
    b: Stack,
    shape: Shape | str,
    *,
    reverse: Shape | str | Literal["same", "none"] = "same",
    addresses: tuple[str | None, str | None] = (None, None),
    mtu: int = 1500,
    faults: str | Mapping[str, Any] | None = None,
    record: bool = True,
    max_samples: int = 200_000,
) -> BottleneckPath:
    """Join stacks ``a`` and ``b`` of ``net`` with a memory link whose traffic a -> b crosses a
    bottleneck of ``shape`` (a :class:`Shape` or a spec such as
    ``"rate=10mbit,delay=20ms,queue=codel"``; its ``dir`` must be ``both`` or ``tx``).

    ``reverse`` shapes b -> a: ``"same"`` (default: a symmetric link, each direction with its
    own queue), ``"none"`` (no rate, no delay), or a shape of its own (an asymmetric link, e.g.
    a slower uplink). ``faults`` adds a seeded :class:`~layers.links.faults.FaultLink` on
    ``b``'s end (``"loss=1%,seed=3"`` or FaultLink's keyword arguments): forward frames are
    lost after the bottleneck, reverse ones before it. Queue names are looked up in ``a``'s
    plugins. Several connections between ``a`` and ``b`` share the bottleneck, which is how
    multi-flow experiments (fairness, FQ-CoDel's isolation) are built on it.

    ::

        net = VirtualNetwork()
        a, b = net.new_stack(["arp", "ipv4", "tcp"]), net.new_stack(["arp", "ipv4", "tcp"])
        path = bottleneck(net, a, b, "rate=10mbit,delay=10ms,queue=codel",
                          addresses=("10.0.0.1/24", "10.0.0.2/24"))
        a.start(); b.start()
        ...
        path.forward.series.percentile(50)     # median sojourn in the a -> b queue
        path.forward.qdisc.stats.drops          # Counter({'codel': ...})
    """
    from layers.links.memory import MemoryLink

    if not any(s is a for s in net.stacks) or not any(s is b for s in net.stacks):
        raise ConfigurationError("bottleneck(): make both stacks with this network's "
                                 "new_stack() so that they share its clock")
    fwd = _as_shape(shape)
    if fwd.direction == "rx":
        raise ConfigurationError("bottleneck(): the forward shape cannot be dir=rx; give the "
                                 "reverse direction as reverse=")
    fwd = attrs.evolve(fwd, direction="tx")
    rev: Shape | None
    if reverse == "same":
        rev = attrs.evolve(fwd, direction="rx")
    elif reverse == "none":
        rev = None
    else:
        rev = attrs.evolve(_as_shape(reverse), direction="rx")
    n = len(a.interfaces), len(b.interfaces)
    la, lb = MemoryLink.pair((f"mem{n[0]}", f"mem{n[1]}"), mtu=mtu)
    shaper = ShaperLink(la, tx=fwd, rx=rev, pm=a.pm, record=record, max_samples=max_samples)
    end_b: Link = lb
    if faults is not None:
        from layers.links.faults import FaultLink, parse_faults

        options = parse_faults(faults) if isinstance(faults, str) else dict(faults)
        end_b = FaultLink(lb, **options)
    ia = a.add_interface(shaper, address=addresses[0])
    ib = b.add_interface(end_b, address=addresses[1])
    return BottleneckPath(shaper=shaper, a=ia, b=ib)
