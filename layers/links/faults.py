"""Seeded fault injection around any link: loss, duplication, reordering, corruption, delay.

::

    link = FaultLink(TapLink.open("tap0"), loss=0.02, delay=0.010, jitter=0.002, seed=7)
    link = FaultLink(inner, **parse_faults("loss=2%,reorder=5%,delay=10ms,dir=tx"))

Each direction (``"rx"``: frames the stack receives, ``"tx"``: frames it sends) has its own
random generator derived from ``seed``, so a run is reproducible frame for frame, and the faults
on one direction do not depend on how much traffic the other carried. Per frame, in order:

* **loss** with probability ``loss``: the frame is dropped;
* **corrupt** with probability ``corrupt``: one random bit after the link header is flipped, so
  the IP header checksum or the transport checksum catches it (a single-bit error always changes
  an Internet checksum). A received frame loses its ``RX_CSUM_VERIFIED`` flag (the device
  checked it before the flip). A sent frame whose transport checksum the device will fill in
  (``TxOffload.needs_csum``, TSO) gets the bit flipped in that partial checksum, since a data
  bit flipped before the device checksums would go unseen; on a memory link with checksum
  offload, whose far end trusts partial checksums, the checksum is completed first and the
  frame sent without the offload, as netem does, and then any bit may flip;
* **duplicate** with probability ``duplicate``: a second copy follows the first;
* **delay**: the frame is held for ``delay`` seconds, plus a uniform ``±jitter`` (never below
  zero). Jitter can reorder frames, as netem's does;
* **reorder** with probability ``reorder``: the frame is held back until ``reorder_gap`` later
  frames of the same direction have gone out, then follows them; if no later frame comes within
  ``reorder_timeout`` seconds of its normal release it goes out anyway (counted as
  ``<direction>_reorder_expired``).

**One link, two ends.** A FaultLink sees the frames of the one end it wraps: around a TAP, the
default ``direction="both"`` is exactly "2% loss on this link" (each frame crosses it once, as
rx or as tx). A link between two stacks of ours has two ends, and a ``"both"`` FaultLink on each
would meet every frame twice (once as the sender's tx, once as the receiver's rx: 2% becomes
about 4%). Give such a link its faults once, with ``VirtualNetwork.link(a, b, faults="loss=2%")``
(or ``pair(..., faults=...)``), which puts a ``direction="tx"`` FaultLink on each end.

Held frames are released by the runner through :meth:`next_deadline`/:meth:`poll` on the clock
the stack attached (virtual in tests, the asyncio loop's for real links). Every fault is counted
in :attr:`FaultLink.faults` as ``"<direction>_<kind>"`` (``rx_loss``, ``tx_reorder`` ...), next to
``rx_frames``/``tx_frames``, the frames that entered the injector.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import random
import re
from collections import Counter, deque
from typing import Any

from layers.errors import ConfigurationError
from layers.links.base import RX_CSUM_VERIFIED, Link, LinkWrapper, Medium, TxOffload
from layers.wire.checksum import checksum
from layers.wire.ethernet import ETH_HLEN

FAULT_KINDS = ("loss", "duplicate", "reorder", "corrupt", "delay")
DIRECTIONS = ("rx", "tx")


def _far_end_trusts_partial(link: Link) -> bool:
    """True when ``link`` (under any wrappers) delivers partial checksums as verified: a
    memory link with checksum offload (:mod:`layers.links.memory`)."""
    while isinstance(link, LinkWrapper):
        link = link.inner
    return bool(getattr(link, "checksum_offload", False))


def _complete_checksum(data: bytes, start: int, offset: int) -> bytes:
    """``data`` with the partial checksum at ``start + offset`` (the pseudo-header sum, as a
    transport leaves it for the device) completed over ``data[start:]``."""
    buf = bytearray(data)
    field = start + offset
    buf[field:field + 2] = checksum(memoryview(buf)[start:]).to_bytes(2, "big")
    return bytes(buf)


class _Path:
    """The state of one direction: its generator, held frames and counters."""

    __slots__ = ("enabled", "heap", "held", "name", "rng")

    def __init__(self, name: str, seed: int, enabled: bool) -> None:
        self.name = name
        self.enabled = enabled
        self.rng = random.Random(f"layers-faults-{seed}-{name}")
        #: (release_time, sequence, frame, flags-or-offload) waiting for their time
        self.heap: list[tuple[float, int, bytes, Any]] = []
        #: reordered frames: [frames still to let pass, latest release, frame, meta]
        self.held: list[list[Any]] = []


class FaultLink(LinkWrapper):
    """Inject seeded faults into ``inner``'s traffic, in both directions unless told otherwise."""

    notifies_deadline = True

    def __init__(
        self,
        inner: Link,
        *,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        corrupt: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        seed: int | None = None,
        direction: str = "both",
        reorder_gap: int = 1,
        reorder_timeout: float = 0.01,
    ) -> None:
        super().__init__(inner)
        for key, p in (("loss", loss), ("duplicate", duplicate), ("reorder", reorder),
                       ("corrupt", corrupt)):
            if not 0.0 <= p <= 1.0:
                raise ConfigurationError(
                    f"{key}={p} is a probability: give a fraction 0..1 (0.02) or a percent (2%)"
                )
        for key, t in (("delay", delay), ("jitter", jitter), ("reorder_timeout", reorder_timeout)):
            if t < 0:
                raise ConfigurationError(f"{key}={t} must not be negative")
        if reorder_gap < 1:
            raise ConfigurationError(f"reorder_gap={reorder_gap} must be at least 1")
        if direction not in ("both", "rx", "tx"):
            raise ConfigurationError(
                f"direction={direction!r}: use 'both', 'rx' (toward the stack) or 'tx' (from it)"
            )
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.corrupt = corrupt
        self.delay = delay
        self.jitter = jitter
        self.reorder_gap = reorder_gap
        self.reorder_timeout = reorder_timeout
        self.direction = direction
        #: the seed in use (drawn at random when none was given: report it to replay a run)
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
        active = any((loss, duplicate, reorder, corrupt, delay, jitter))
        self._rx = _Path("rx", self.seed, active and direction in ("both", "rx"))
        self._tx = _Path("tx", self.seed, active and direction in ("both", "tx"))
        self._seq = itertools.count()
        self._ready: deque[tuple[bytes, int]] = deque()
        self._l2len = ETH_HLEN if inner.capabilities.medium is Medium.ETHERNET else 0
        #: every fault, by "<direction>_<kind>", plus the frames that entered each direction
        self.faults: Counter[str] = Counter()

    def count(self, kind: str, direction: str | None = None) -> int:
        """Faults of ``kind`` in ``direction`` (None: both)."""
        if direction is not None:
            return self.faults[f"{direction}_{kind}"]
        return sum(self.faults[f"{d}_{kind}"] for d in DIRECTIONS)

    # --- the injector -----------------------------------------------------------------
    def _now(self) -> float:
        return self._clock() if self._clock is not None else 0.0

    def _inject(self, path: _Path, frame: bytes | bytearray | memoryview, meta: Any) -> None:
        now = self._now()
        self._release(path, now)
        faults = self.faults
        name = path.name
        faults[name + "_frames"] += 1
        rng = path.rng
        if self.loss and rng.random() < self.loss:
            faults[name + "_loss"] += 1
            return
        data = bytes(frame)
        if self.corrupt and rng.random() < self.corrupt:
            start = self._l2len
            if (isinstance(meta, TxOffload) and meta.needs_csum and not meta.gso_size
                    and _far_end_trusts_partial(self.inner)):
                # A memory link with checksum offload hands this frame to the other stack as
                # verified, partial checksum and all: nobody would ever check it. Do what
                # netem does (skb_checksum_help): complete the checksum here and send the
                # frame without the offload, then flip any bit, which the receiver catches.
                data = _complete_checksum(data, start + meta.csum_start, meta.csum_offset)
                meta = None
                span = len(data) - start
            elif isinstance(meta, TxOffload) and meta.needs_csum:
                # The device computes this frame's transport checksum (and, for a TSO
                # super-segment, each segment's) *after* us: a flipped data bit would be
                # checksummed over and pass unseen, unlike corruption on a wire. Flip a bit
                # of the partial checksum instead, so every segment's checksum comes out wrong.
                start += meta.csum_start + meta.csum_offset
                span = min(2, len(data) - start)
            else:
                span = len(data) - start
            if span > 0:
                bit = rng.randrange(span * 8)
                buf = bytearray(data)
                buf[start + (bit >> 3)] ^= 0x80 >> (bit & 7)
                data = bytes(buf)
                faults[name + "_corrupt"] += 1
                if path is self._rx and isinstance(meta, int):
                    meta &= ~RX_CSUM_VERIFIED  # the device vouched for the frame before the flip
        copies = 1
        top = path.heap[0][0] if path.heap else math.inf
        held = len(path.held)
        if self.duplicate and rng.random() < self.duplicate:
            copies = 2
            faults[name + "_duplicate"] += 1
        for i in range(copies):
            hold = self.delay
            if self.jitter:
                hold = max(0.0, hold + rng.uniform(-self.jitter, self.jitter))
            if hold > 0:
                faults[name + "_delay"] += 1
            if i == 0 and self.reorder and rng.random() < self.reorder:
                faults[name + "_reorder"] += 1
                path.held.append([self.reorder_gap, now + hold + self.reorder_timeout, data, meta])
                continue
            if hold <= 0 and not path.heap:
                self._emit(path, data, meta)
            else:
                heapq.heappush(path.heap, (now + hold, next(self._seq), data, meta))
        if path is self._tx and self._wakeup is not None and (
                held != len(path.held) or (path.heap and path.heap[0][0] < top)):
            # a frame held for later, due before any other: the runner must come back for it
            # (a received one is held inside recv(), after which the runner looks anyway)
            self._wakeup()

    def _output(self, path: _Path, data: bytes, meta: Any) -> None:
        if path is self._rx:
            self._ready.append((data, meta))
        else:
            self.inner.send(data, meta)

    def _emit(self, path: _Path, data: bytes, meta: Any) -> None:
        """Send one frame on its way, then any reordered frame it was the last to overtake."""
        self._output(path, data, meta)
        held = path.held
        if held:
            due = []
            for item in held:
                item[0] -= 1
                if item[0] <= 0:
                    due.append(item)
            for item in due:
                held.remove(item)
                self._output(path, item[2], item[3])

    def _release(self, path: _Path, now: float) -> None:
        heap = path.heap
        while heap and heap[0][0] <= now:
            _, _, data, meta = heapq.heappop(heap)
            self._emit(path, data, meta)
        held = path.held
        if held:
            late = [item for item in held if item[1] <= now]
            for item in late:
                held.remove(item)
                self.faults[path.name + "_reorder_expired"] += 1
                self._output(path, item[2], item[3])

    # --- link interface ---------------------------------------------------------------
    def recv(self) -> tuple[bytes, int] | None:
        rx = self._rx
        if not rx.enabled:
            return self.inner.recv()
        ready = self._ready
        while not ready:
            got = self.inner.recv()
            if got is None:
                return None
            self._inject(rx, got[0], got[1])
        return ready.popleft()

    def send(self, frame: bytes | bytearray | memoryview, offload: TxOffload | None = None) -> None:
        tx = self._tx
        if not tx.enabled:
            self.inner.send(frame, offload)
        else:
            self._inject(tx, frame, offload)

    def next_deadline(self) -> float | None:
        best = self.inner.next_deadline()
        if self._ready:
            return self._now()
        for path in (self._rx, self._tx):
            if path.heap:
                d = path.heap[0][0]
                if best is None or d < best:
                    best = d
            for item in path.held:
                if best is None or item[1] < best:
                    best = item[1]
        return best

    def poll(self, now: float) -> None:
        self.inner.poll(now)
        self._release(self._rx, now)
        self._release(self._tx, now)

    @property
    def held(self) -> int:
        """Frames currently held back (delayed or reordered), both directions."""
        return sum(len(p.heap) + len(p.held) for p in (self._rx, self._tx)) + len(self._ready)

    def close(self) -> None:
        for path in (self._rx, self._tx):
            path.heap.clear()
            path.held.clear()
        self._ready.clear()
        self.inner.close()

    def describe(self) -> dict[str, object]:
        d = super().describe()
        d["faults"] = {
            "config": {
                "loss": self.loss, "duplicate": self.duplicate, "reorder": self.reorder,
                "corrupt": self.corrupt, "delay": self.delay, "jitter": self.jitter,
                "seed": self.seed, "direction": self.direction,
            },
            "counts": dict(self.faults),
        }
        return d


# --- the --faults option --------------------------------------------------------------------

_PROBABILITIES = {"loss": "loss", "duplicate": "duplicate", "dup": "duplicate",
                  "reorder": "reorder", "corrupt": "corrupt"}
_TIMES = {"delay": "delay", "jitter": "jitter", "reorder_timeout": "reorder_timeout"}
_INTS = {"seed": "seed", "reorder_gap": "reorder_gap", "gap": "reorder_gap"}
_DIRS = {"dir": "direction", "direction": "direction"}
VALID_KEYS = (*_PROBABILITIES, *_TIMES, *_INTS, *_DIRS)
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_TIME_RE = re.compile(r"^([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*(s|ms|us|µs|ns)$", re.I)


def _probability(key: str, text: str) -> float:
    percent = text.endswith("%")
    try:
        value = float(text[:-1]) / 100.0 if percent else float(text)
    except ValueError:
        raise ConfigurationError(
            f"{key}={text!r} should be a percent (2%) or a fraction (0.02)"
        ) from None
    if not percent and value > 1.0:
        raise ConfigurationError(
            f"{key}={text} is ambiguous: write {text}% for a percent or a fraction 0..1 such "
            f"as 0.02"
        )
    if not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"{key}={text} is outside 0..100%")
    return value


def _duration(key: str, text: str) -> float:
    m = _TIME_RE.match(text)
    if m is None:
        if re.fullmatch(r"[0-9]*\.?[0-9]+", text):
            raise ConfigurationError(f"{key}={text} needs a unit: {text}ms, {text}us or {text}s")
        raise ConfigurationError(f"{key}={text!r} should be a duration such as 10ms, 500us, 1s")
    return float(m.group(1)) * _TIME_UNITS[m.group(2).lower()]


def parse_faults(text: str) -> dict[str, Any]:
    """Parse ``"loss=2%,reorder=5%,delay=10ms,jitter=2ms,seed=7,dir=tx"`` into the keyword
    arguments of :class:`FaultLink`.

    Probabilities are percents (``2%``) or fractions (``0.02``); durations take ``s``, ``ms``,
    ``us`` or ``ns``; ``dir`` is ``both``, ``rx`` or ``tx``. Unknown keys raise
    :class:`~layers.errors.ConfigurationError` listing the valid ones."""
    out: dict[str, Any] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise ConfigurationError(
                f"fault {part!r} should be KEY=VALUE, e.g. loss=2% (valid keys: "
                f"{', '.join(VALID_KEYS)})"
            )
        if key in _PROBABILITIES:
            out[_PROBABILITIES[key]] = _probability(key, value)
        elif key in _TIMES:
            out[_TIMES[key]] = _duration(key, value)
        elif key in _INTS:
            try:
                out[_INTS[key]] = int(value, 0)
            except ValueError:
                raise ConfigurationError(f"{key}={value!r} should be an integer") from None
        elif key in _DIRS:
            if value not in ("both", "rx", "tx"):
                raise ConfigurationError(f"{key}={value!r}: use both, rx or tx")
            out["direction"] = value
        else:
            raise ConfigurationError(
                f"unknown fault {key!r} in --faults; valid keys: {', '.join(VALID_KEYS)}"
            )
    return out
