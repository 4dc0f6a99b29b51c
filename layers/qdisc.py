"""Queue disciplines: the queue in front of a bottleneck's wire, as a plugin contract.

Modelled on Linux's ``struct Qdisc_ops``: a discipline holds :class:`Packet` objects and
answers three calls, always given the caller's ``now`` (seconds on the stack's clock, virtual or
real; a discipline never reads a clock itself):

==========================  ===================================================================
``enqueue(pkt, now)``       a packet arrives; returns True when *this* packet was queued, False
                            when it was dropped (a discipline may instead drop others to make
                            room, as FQ-CoDel drops from the fattest flow; those drops are
                            counted in ``stats`` too)
``dequeue(now)``            the wire is free: the next packet to send, or None when empty. It
                            may drop (or CE-mark) packets on the way, as CoDel does
``peek()``                  the packet ``dequeue`` would look at first, without removing it
==========================  ===================================================================

plus ``len(q)`` (packets held), ``q.backlog`` (bytes held), the limits ``q.limit`` (packets)
and ``q.limit_bytes`` (bytes, 0 for none) and ``q.stats`` (:class:`QdiscStats`: enqueued,
dequeued, drops by reason such as ``overlimit``, ``codel``, ``red_early``, CE marks by reason,
sojourn time). Every packet's sojourn (dequeue time minus enqueue time) is set on it at dequeue.
Disciplines are work-conserving: ``dequeue`` returns None only when they hold nothing.

Built in, registered by the core through the ``layers_queue_disciplines`` hook:

* ``droptail`` / ``pfifo`` / ``bfifo``: first in, first out; tail drop over ``limit`` packets
  (or ``limit_bytes``);
* ``red``: Random Early Detection (Floyd and Jacobson 1993, recommended by RFC 2309);
* ``codel``: Controlled Delay, RFC 8289's pseudocode;
* ``fq_codel``: Flow Queue CoDel, RFC 8290.

With ``ecn=True`` a discipline marks an ECN-capable packet (ECT(0), ECT(1) in the IPv4 header)
Congestion Experienced instead of dropping it, fixing the header checksum incrementally
(RFC 1624), and counts a mark instead of a drop. A third-party discipline registers the same
way as the built-ins: a :class:`QdiscInfo` (or ``{name: factory}``) from the hook; the factory
gets a :class:`QdiscContext` with the settings (declared defaults overridden by the user's spec),
the link's MTU and rate, and a seed. See CONTRIBUTING.md.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from layers.errors import CompositionError, ConfigurationError
from layers.wire.ipv4 import PROTO_TCP, PROTO_UDP

if TYPE_CHECKING:
    import pluggy

__all__ = [
    "BUILTIN_QDISCS",
    "CoDel",
    "DropTail",
    "Duration",
    "FQCoDel",
    "Packet",
    "Qdisc",
    "QdiscContext",
    "QdiscFactory",
    "QdiscInfo",
    "QdiscStats",
    "Red",
    "collect_queue_disciplines",
    "make_qdisc",
    "queue_disciplines",
]

ETHERTYPE_IPV4 = 0x0800
#: the two-bit ECN field of the IPv4 TOS byte (RFC 3168)
ECN_NOT_ECT = 0
ECN_ECT1 = 1
ECN_ECT0 = 2
ECN_CE = 3


# --- the packet ------------------------------------------------------------------------------


class Packet:
    """One frame in a queue: its bytes, wire size, enqueue time and what the queue needs to know
    about it (where its IPv4 header starts, its ECN field).

    ``meta`` is whatever travels with the frame past the queue (receive flags, a TxOffload);
    ``size`` is the bytes it occupies on the wire, which for a super-frame is more than
    ``len(frame)`` (see :func:`layers.links.shaper.wire_size`)."""

    __slots__ = ("enqueued_at", "flow", "frame", "l3", "meta", "size", "sojourn")

    def __init__(
        self, frame: bytes | bytearray, size: int | None = None, *, meta: Any = None,
        l3: int = -1,
    ) -> None:
        self.frame = frame
        self.size = len(frame) if size is None else size
        self.meta = meta
        #: offset of the IPv4 header in ``frame``, or -1 when it is not IPv4
        self.l3 = l3
        self.enqueued_at = 0.0
        #: set by ``dequeue``: how long the packet waited
        self.sojourn = 0.0
        #: the flow hash bucket a flow-queueing discipline put it in (-1: none)
        self.flow = -1

    @classmethod
    def from_frame(
        cls, frame: bytes | bytearray, *, ethernet: bool, size: int | None = None,
        meta: Any = None,
    ) -> Packet:
        """A packet for ``frame``, an Ethernet frame (``ethernet=True``) or a bare IP packet,
        with its IPv4 header located when it has a valid-looking one (version 4, IHL >= 5)."""
        l3 = -1
        if ethernet:
            if len(frame) >= 34 and frame[12] == 0x08 and frame[13] == 0x00:
                l3 = 14
        elif len(frame) >= 20:
            l3 = 0
        if l3 >= 0:
            b = frame[l3]
            if b >> 4 != 4 or b & 0x0F < 5 or len(frame) < l3 + (b & 0x0F) * 4:
                l3 = -1
        return cls(frame, size, meta=meta, l3=l3)

    @property
    def ecn(self) -> int:
        """The ECN field (0 Not-ECT, 1 ECT(1), 2 ECT(0), 3 CE); 0 when not IPv4."""
        return self.frame[self.l3 + 1] & 3 if self.l3 >= 0 else ECN_NOT_ECT

    @property
    def ecn_capable(self) -> bool:
        """ECT(0), ECT(1) or already CE: a queue may mark it instead of dropping it."""
        return self.l3 >= 0 and self.frame[self.l3 + 1] & 3 != 0

    def set_ce(self) -> bool:
        """Mark Congestion Experienced (RFC 3168 section 5). False when the packet is not
        ECN-capable (the caller drops it instead). The IPv4 header checksum is updated
        incrementally, RFC 1624's equation 3: ``HC' = ~(~HC + ~m + m')``."""
        l3 = self.l3
        if l3 < 0:
            return False
        frame = self.frame
        tos = frame[l3 + 1]
        if tos & 3 == ECN_NOT_ECT:
            return False
        if tos & 3 == ECN_CE:
            return True
        buf = frame if isinstance(frame, bytearray) else bytearray(frame)
        old = (buf[l3] << 8) | tos
        new = old | ECN_CE
        hc = (buf[l3 + 10] << 8) | buf[l3 + 11]
        s = (~hc & 0xFFFF) + (~old & 0xFFFF) + new
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        hc = ~s & 0xFFFF
        buf[l3 + 1] = tos | ECN_CE
        buf[l3 + 10] = hc >> 8
        buf[l3 + 11] = hc & 0xFF
        self.frame = buf
        return True

    def flow_key(self) -> bytes:
        """The bytes that identify the packet's flow: the IPv4 5-tuple (addresses, protocol,
        ports for TCP/UDP first fragments), or the link header for anything else."""
        frame = self.frame
        l3 = self.l3
        if l3 < 0:
            return bytes(frame[:14])
        ihl = (frame[l3] & 0x0F) * 4
        proto = frame[l3 + 9]
        key = bytes(frame[l3 + 9:l3 + 10]) + bytes(frame[l3 + 12:l3 + 20])
        first_fragment = ((frame[l3 + 6] & 0x1F) << 8 | frame[l3 + 7]) == 0
        if proto in (PROTO_TCP, PROTO_UDP) and first_fragment and len(frame) >= l3 + ihl + 4:
            key += bytes(frame[l3 + ihl:l3 + ihl + 4])
        return key

    def __repr__(self) -> str:
        return f"<Packet {self.size}B ecn={self.ecn} at {self.enqueued_at:.6f}>"


# --- statistics --------------------------------------------------------------------------------


class QdiscStats:
    """What a discipline did: packets and bytes in and out, drops and CE marks by reason, and
    sojourn time (sum and maximum over dequeued packets). Disciplines count drops and marks
    through :meth:`Qdisc._drop` and :meth:`Qdisc._mark`, which keep the totals too."""

    __slots__ = ("dequeued", "dequeued_bytes", "dropped", "drops", "enqueued", "enqueued_bytes",
                 "marked", "marks", "max_backlog", "max_qlen", "sojourn_max", "sojourn_sum")

    def __init__(self) -> None:
        self.enqueued = 0
        self.enqueued_bytes = 0
        self.dequeued = 0
        self.dequeued_bytes = 0
        #: packets dropped, by reason (``overlimit``, ``codel``, ``red_early``, ...)
        self.drops: Counter[str] = Counter()
        #: packets CE-marked instead of dropped, by reason
        self.marks: Counter[str] = Counter()
        #: the totals of ``drops`` and ``marks``
        self.dropped = 0
        self.marked = 0
        self.sojourn_sum = 0.0
        self.sojourn_max = 0.0
        self.max_qlen = 0
        self.max_backlog = 0

    @property
    def sojourn_mean(self) -> float:
        return self.sojourn_sum / self.dequeued if self.dequeued else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "enqueued": self.enqueued, "enqueued_bytes": self.enqueued_bytes,
            "dequeued": self.dequeued, "dequeued_bytes": self.dequeued_bytes,
            "dropped": self.dropped, "drops": dict(self.drops),
            "marked": self.marked, "marks": dict(self.marks),
            "sojourn_mean": self.sojourn_mean, "sojourn_max": self.sojourn_max,
            "max_qlen": self.max_qlen, "max_backlog": self.max_backlog,
        }


# --- the contract ------------------------------------------------------------------------------


class Qdisc(ABC):
    """A queue discipline. Subclasses implement :meth:`enqueue`, :meth:`dequeue`, :meth:`peek`
    and :meth:`reset`, and keep the books through :meth:`_enqueued`, :meth:`_dequeued`,
    :meth:`_drop` and :meth:`_mark` so that ``len()``, ``backlog`` and ``stats`` stay true."""

    name = "qdisc"

    def __init__(self, *, limit: int = 1000, limit_bytes: int = 0, ecn: bool = False) -> None:
        if limit < 1:
            raise ConfigurationError(f"{self.name}: limit={limit} must be at least 1 packet")
        if limit_bytes < 0:
            raise ConfigurationError(f"{self.name}: limit_bytes={limit_bytes} must not be "
                                     f"negative (0: no byte limit)")
        #: most packets held at once
        self.limit = limit
        #: most bytes held at once (0: no byte limit)
        self.limit_bytes = limit_bytes
        #: mark ECN-capable packets CE instead of dropping them (where the discipline would
        #: drop for congestion; overlimit drops stay drops)
        self.ecn = ecn
        self.stats = QdiscStats()
        self.qlen = 0
        #: bytes held
        self.backlog = 0

    @abstractmethod
    def enqueue(self, pkt: Packet, now: float) -> bool:
        """Queue ``pkt`` (arriving at ``now``); False when it was dropped instead."""

    @abstractmethod
    def dequeue(self, now: float) -> Packet | None:
        """The next packet to send at ``now``, or None when nothing is held."""

    @abstractmethod
    def peek(self) -> Packet | None:
        """The packet :meth:`dequeue` would consider first (it may still drop it)."""

    @abstractmethod
    def reset(self) -> None:
        """Drop everything held (without counting drops): the link is going away."""

    def __len__(self) -> int:
        return self.qlen

    def __bool__(self) -> bool:
        return True  # a queue is a queue even when empty (len() says how full)

    def over_limit(self, pkt: Packet) -> bool:
        """True when queuing ``pkt`` would exceed the packet or byte limit."""
        return self.qlen >= self.limit or (
            self.limit_bytes > 0 and self.backlog + pkt.size > self.limit_bytes)

    # --- bookkeeping for subclasses ------------------------------------------------------
    def _enqueued(self, pkt: Packet, now: float) -> None:
        pkt.enqueued_at = now
        st = self.stats
        st.enqueued += 1
        st.enqueued_bytes += pkt.size
        self.qlen += 1
        self.backlog += pkt.size
        if self.qlen > st.max_qlen:
            st.max_qlen = self.qlen
        if self.backlog > st.max_backlog:
            st.max_backlog = self.backlog

    def _removed(self, pkt: Packet) -> None:
        """``pkt`` left the queue (sent or dropped from it)."""
        self.qlen -= 1
        self.backlog -= pkt.size

    def _dequeued(self, pkt: Packet, now: float) -> Packet:
        sojourn = now - pkt.enqueued_at
        pkt.sojourn = sojourn
        st = self.stats
        st.dequeued += 1
        st.dequeued_bytes += pkt.size
        st.sojourn_sum += sojourn
        if sojourn > st.sojourn_max:
            st.sojourn_max = sojourn
        return pkt

    def _drop(self, pkt: Packet, reason: str) -> None:
        """Count ``pkt`` dropped for ``reason`` (remove it from the books first with
        :meth:`_removed` if it was queued)."""
        st = self.stats
        st.drops[reason] += 1
        st.dropped += 1

    def _mark(self, pkt: Packet, reason: str) -> bool:
        """With ``ecn`` on, mark ``pkt`` CE for ``reason`` and count it; False when it cannot
        be marked (ECN off, or the packet is not ECN-capable) so the caller drops it."""
        if self.ecn and pkt.set_ce():
            st = self.stats
            st.marks[reason] += 1
            st.marked += 1
            return True
        return False

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "limit": self.limit, "limit_bytes": self.limit_bytes,
                "ecn": self.ecn, "qlen": self.qlen, "backlog": self.backlog,
                "stats": self.stats.as_dict()}


# --- drop-tail -------------------------------------------------------------------------------


class DropTail(Qdisc):
    """First in, first out; a packet arriving over the limit is dropped (``overlimit``).

    ``pfifo`` is this with a packet limit, ``bfifo`` with a byte limit, as Linux names them."""

    name = "droptail"

    def __init__(self, *, limit: int = 1000, limit_bytes: int = 0, ecn: bool = False) -> None:
        super().__init__(limit=limit, limit_bytes=limit_bytes, ecn=ecn)
        self._q: deque[Packet] = deque()

    def enqueue(self, pkt: Packet, now: float) -> bool:
        if self.over_limit(pkt):
            self._drop(pkt, "overlimit")
            return False
        self._enqueued(pkt, now)
        self._q.append(pkt)
        return True

    def dequeue(self, now: float) -> Packet | None:
        if not self._q:
            return None
        pkt = self._q.popleft()
        self._removed(pkt)
        return self._dequeued(pkt, now)

    def peek(self) -> Packet | None:
        return self._q[0] if self._q else None

    def reset(self) -> None:
        self._q.clear()
        self.qlen = self.backlog = 0


# --- RED ---------------------------------------------------------------------------------------


class Red(Qdisc):
    """Random Early Detection (Floyd and Jacobson, "Random Early Detection Gateways for
    Congestion Avoidance", 1993; RFC 2309 recommends it).

    At each arrival the average queue ``avg`` (packets) follows the instantaneous one with
    weight ``w_q``; after an idle period it decays as if ``m`` small packets had been sent,
    ``avg *= (1 - w_q) ** m`` with ``m = idle / (avpkt * 8 / rate)``. Between ``min_th`` and
    ``max_th`` an arrival is dropped (``red_early``) with probability
    ``p_a = p_b / (1 - count * p_b)``, ``p_b = max_p * (avg - min_th) / (max_th - min_th)``,
    ``count`` being the arrivals since the last drop (which spreads drops evenly). At or above
    ``max_th`` every arrival is dropped (``red_forced``), or with ``gentle`` the probability
    rises from ``max_p`` to 1 between ``max_th`` and ``2 * max_th``. With ``ecn``, ECN-capable
    packets are marked instead of dropped. A full queue (``limit``) drops (``overlimit``)."""

    name = "red"

    def __init__(
        self, *, limit: int = 1000, limit_bytes: int = 0, ecn: bool = False,
        min_th: float = 5.0, max_th: float = 15.0, max_p: float = 0.1, w_q: float = 0.002,
        gentle: bool = False, avpkt: int = 1000, rate: float | None = None, seed: int = 0,
    ) -> None:
        super().__init__(limit=limit, limit_bytes=limit_bytes, ecn=ecn)
        if not 0 <= min_th < max_th:
            raise ConfigurationError(
                f"red: need 0 <= min_th < max_th (packets); got min_th={min_th} max_th={max_th}")
        if not 0.0 < max_p <= 1.0:
            raise ConfigurationError(f"red: max_p={max_p} must be in (0, 1], e.g. 0.1 or 10%")
        if not 0.0 < w_q <= 1.0:
            raise ConfigurationError(f"red: w_q={w_q} must be in (0, 1], e.g. 0.002")
        self.min_th = float(min_th)
        self.max_th = float(max_th)
        self.max_p = max_p
        self.w_q = w_q
        self.gentle = gentle
        #: seconds to send a typical packet: the idle-decay unit
        self.s = (avpkt * 8 / rate) if rate else 0.001
        self.avg = 0.0
        self.count = -1
        self._idle_since: float | None = 0.0
        self._rng = random.Random(f"layers-red-{seed}")
        self._q: deque[Packet] = deque()

    def _update_avg(self, now: float) -> None:
        if self.qlen or self._idle_since is None:
            self.avg += self.w_q * (self.qlen - self.avg)
        else:
            # the queue has been empty since _idle_since: decay as if m small packets had
            # been sent meanwhile. The idle period goes on until a packet is queued (an
            # arrival dropped early leaves the queue empty), so restart it from now.
            m = max(0.0, now - self._idle_since) / self.s
            self.avg *= (1.0 - self.w_q) ** m
            self._idle_since = now

    def drop_probability(self) -> float:
        """``p_b`` at the current average (before the ``count`` correction)."""
        avg = self.avg
        if avg < self.min_th:
            return 0.0
        if avg < self.max_th:
            return self.max_p * (avg - self.min_th) / (self.max_th - self.min_th)
        if self.gentle and avg < 2 * self.max_th:
            return self.max_p + (1 - self.max_p) * (avg - self.max_th) / self.max_th
        return 1.0

    def enqueue(self, pkt: Packet, now: float) -> bool:
        self._update_avg(now)
        avg = self.avg
        congested: str | None = None
        if avg >= self.min_th:
            pb = self.drop_probability()
            if pb >= 1.0:
                congested = "red_forced"
                self.count = 0
            else:
                self.count += 1
                denom = 1.0 - self.count * pb
                pa = pb / denom if denom > 0 else 1.0
                if self._rng.random() < pa:
                    congested = "red_early"
                    self.count = 0
        else:
            self.count = -1
        if congested is not None and not self._mark(pkt, congested):
            self._drop(pkt, congested)
            return False
        if self.over_limit(pkt):
            self._drop(pkt, "overlimit")
            return False
        self._enqueued(pkt, now)
        self._q.append(pkt)
        self._idle_since = None
        return True

    def dequeue(self, now: float) -> Packet | None:
        if not self._q:
            return None
        pkt = self._q.popleft()
        self._removed(pkt)
        if not self._q:
            self._idle_since = now
        return self._dequeued(pkt, now)

    def peek(self) -> Packet | None:
        return self._q[0] if self._q else None

    def reset(self) -> None:
        self._q.clear()
        self.qlen = self.backlog = 0

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(min_th=self.min_th, max_th=self.max_th, max_p=self.max_p, w_q=self.w_q,
                 gentle=self.gentle, avg=self.avg)
        return d


# --- CoDel -------------------------------------------------------------------------------------


class _CoDelVars:
    """One CoDel state machine's variables (RFC 8289 section 5); FQ-CoDel keeps one per flow."""

    __slots__ = ("count", "drop_next", "dropping", "first_above_time", "lastcount")

    def __init__(self) -> None:
        self.first_above_time = 0.0
        self.drop_next = 0.0
        self.count = 0
        self.lastcount = 0
        self.dropping = False


class _CoDelCore:
    """RFC 8289's ``dodequeue``/``dequeue`` over any FIFO of packets, with the control law
    ``t + interval / sqrt(count)`` and the count-reset rule. Drops and marks are counted on
    the owning discipline (reason ``codel``)."""

    def __init__(self, owner: Qdisc, target: float, interval: float, mtu: int) -> None:
        if target <= 0 or interval <= 0:
            raise ConfigurationError(
                f"{owner.name}: target ({target}) and interval ({interval}) must be positive, "
                f"e.g. target=5ms,interval=100ms")
        self.owner = owner
        self.target = target
        self.interval = interval
        #: below this many bytes queued CoDel never drops (one MTU-sized packet, RFC 8289)
        self.maxpacket = mtu

    def control_law(self, t: float, count: int) -> float:
        return t + self.interval / math.sqrt(count)

    def _dodequeue(
        self, v: _CoDelVars, q: deque[Packet], now: float, backlog: Callable[[], int],
        removed: Callable[[Packet], None],
    ) -> tuple[Packet | None, bool]:
        if not q:
            v.first_above_time = 0.0
            return None, False
        pkt = q.popleft()
        removed(pkt)
        sojourn = now - pkt.enqueued_at
        ok_to_drop = False
        if sojourn < self.target or backlog() <= self.maxpacket:
            # went below target: stay below for at least an interval before dropping
            v.first_above_time = 0.0
        elif v.first_above_time == 0.0:
            v.first_above_time = now + self.interval
        elif now >= v.first_above_time:
            ok_to_drop = True
        return pkt, ok_to_drop

    def dequeue(
        self, v: _CoDelVars, q: deque[Packet], now: float, backlog: Callable[[], int],
        removed: Callable[[Packet], None],
    ) -> Packet | None:
        owner = self.owner
        pkt, ok_to_drop = self._dodequeue(v, q, now, backlog, removed)
        if pkt is None:
            v.dropping = False
            return None
        if v.dropping:
            if not ok_to_drop:
                v.dropping = False  # sojourn below target: leave the dropping state
            while v.dropping and now >= v.drop_next:
                v.count += 1
                if owner._mark(pkt, "codel"):
                    # marked, not dropped: send it, and schedule the next mark
                    v.drop_next = self.control_law(v.drop_next, v.count)
                    return pkt
                owner._drop(pkt, "codel")
                pkt, ok_to_drop = self._dodequeue(v, q, now, backlog, removed)
                if pkt is None:
                    v.dropping = False
                    return None
                if not ok_to_drop:
                    v.dropping = False
                else:
                    v.drop_next = self.control_law(v.drop_next, v.count)
        elif ok_to_drop:
            # enter the dropping state: drop (or mark) this one and schedule the next
            if not owner._mark(pkt, "codel"):
                owner._drop(pkt, "codel")
                pkt, _ = self._dodequeue(v, q, now, backlog, removed)
            v.dropping = True
            # If we were dropping recently, start near the drop rate that controlled the
            # queue then, rather than from 1 (RFC 8289 section 5.5)
            delta = v.count - v.lastcount
            v.count = 1
            if delta > 1 and now - v.drop_next < 16 * self.interval:
                v.count = delta
            v.drop_next = self.control_law(now, v.count)
            v.lastcount = v.count
        return pkt


class CoDel(Qdisc):
    """Controlled Delay (RFC 8289): one FIFO; packets that waited more than ``target`` for at
    least ``interval`` start a dropping state whose drops come ever faster
    (``interval / sqrt(count)``) until the sojourn falls below ``target``. Drops (or, with
    ``ecn``, CE marks) are counted as ``codel``; a full queue drops on arrival
    (``overlimit``)."""

    name = "codel"

    def __init__(
        self, *, limit: int = 1000, limit_bytes: int = 0, ecn: bool = False,
        target: float = 0.005, interval: float = 0.100, mtu: int = 1514,
    ) -> None:
        super().__init__(limit=limit, limit_bytes=limit_bytes, ecn=ecn)
        self.core = _CoDelCore(self, target, interval, mtu)
        self.vars = _CoDelVars()
        self._q: deque[Packet] = deque()

    @property
    def target(self) -> float:
        return self.core.target

    @property
    def interval(self) -> float:
        return self.core.interval

    def enqueue(self, pkt: Packet, now: float) -> bool:
        if self.over_limit(pkt):
            self._drop(pkt, "overlimit")
            return False
        self._enqueued(pkt, now)
        self._q.append(pkt)
        return True

    def _backlog(self) -> int:
        return self.backlog

    def dequeue(self, now: float) -> Packet | None:
        pkt = self.core.dequeue(self.vars, self._q, now, self._backlog, self._removed)
        return self._dequeued(pkt, now) if pkt is not None else None

    def peek(self) -> Packet | None:
        return self._q[0] if self._q else None

    def reset(self) -> None:
        self._q.clear()
        self.qlen = self.backlog = 0
        self.vars = _CoDelVars()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        v = self.vars
        d.update(target=self.target, interval=self.interval, dropping=v.dropping,
                 count=v.count)
        return d


# --- FQ-CoDel ----------------------------------------------------------------------------------


class _Flow:
    __slots__ = ("backlog", "codel", "deficit", "index", "q", "where")

    def __init__(self, index: int) -> None:
        self.index = index
        self.q: deque[Packet] = deque()
        self.backlog = 0
        self.deficit = 0
        self.codel = _CoDelVars()
        #: 0 in no list, 1 in new_flows, 2 in old_flows
        self.where = 0


class FQCoDel(Qdisc):
    """Flow Queue CoDel (RFC 8290): packets hashed by 5-tuple (with a seeded perturbation)
    into ``flows`` queues, served by deficit round robin with ``quantum`` bytes; a flow that
    becomes active joins the *new* list and is served before the *old* ones (so sparse flows see
    little delay), each queue has its own CoDel state (shared ``target``/``interval``). Over
    ``limit`` packets (or ``limit_bytes``), packets are dropped from the head of the flow with
    the largest backlog (``overlimit``). ECN marking is on by default, as RFC 8290 advises."""

    name = "fq_codel"

    def __init__(
        self, *, limit: int = 10240, limit_bytes: int = 0, ecn: bool = True,
        target: float = 0.005, interval: float = 0.100, flows: int = 1024,
        quantum: int = 1514, mtu: int = 1514, seed: int = 0,
    ) -> None:
        super().__init__(limit=limit, limit_bytes=limit_bytes, ecn=ecn)
        if not 1 <= flows <= 65536:
            raise ConfigurationError(f"fq_codel: flows={flows} must be in 1..65536")
        if quantum < 64:
            raise ConfigurationError(f"fq_codel: quantum={quantum} must be at least 64 bytes "
                                     f"(one MTU, 1514, is usual)")
        self.core = _CoDelCore(self, target, interval, mtu)
        self.quantum = quantum
        self.n_flows = flows
        #: the hash perturbation (Linux draws it at random; ours comes from the seed)
        self.perturbation = random.Random(f"layers-fq_codel-{seed}").getrandbits(32)
        self._flows: dict[int, _Flow] = {}
        self.new_flows: deque[_Flow] = deque()
        self.old_flows: deque[_Flow] = deque()
        self._current: _Flow | None = None

    def classify(self, pkt: Packet) -> int:
        return zlib.crc32(pkt.flow_key(), self.perturbation) % self.n_flows

    def _flow(self, index: int) -> _Flow:
        flow = self._flows.get(index)
        if flow is None:
            flow = self._flows[index] = _Flow(index)
        return flow

    def enqueue(self, pkt: Packet, now: float) -> bool:
        index = self.classify(pkt)
        pkt.flow = index
        flow = self._flow(index)
        self._enqueued(pkt, now)
        flow.q.append(pkt)
        flow.backlog += pkt.size
        if flow.where == 0:
            flow.where = 1
            flow.deficit = self.quantum
            self.new_flows.append(flow)
        kept = True
        while self.qlen > self.limit or (self.limit_bytes and self.backlog > self.limit_bytes):
            fattest = max(self._active(), key=lambda f: f.backlog)
            victim = fattest.q.popleft()
            fattest.backlog -= victim.size
            self._removed(victim)
            self._drop(victim, "overlimit")
            if victim is pkt:
                kept = False
        return kept

    def _active(self) -> Iterable[_Flow]:
        yield from self.new_flows
        yield from self.old_flows

    def dequeue(self, now: float) -> Packet | None:
        new, old = self.new_flows, self.old_flows
        while True:
            if new:
                flows = new
            elif old:
                flows = old
            else:
                return None
            flow = flows[0]
            if flow.deficit <= 0:
                flow.deficit += self.quantum
                flows.popleft()
                old.append(flow)
                flow.where = 2
                continue

            def removed(p: Packet, flow: _Flow = flow) -> None:
                flow.backlog -= p.size
                self._removed(p)

            pkt = self.core.dequeue(flow.codel, flow.q, now, self._backlog, removed)
            if pkt is None:
                flows.popleft()
                if flows is new and old:
                    # an emptied new flow goes to the old list once, so that a flow cannot
                    # stay "new" by sending one packet at a time forever (RFC 8290 4.2)
                    old.append(flow)
                    flow.where = 2
                else:
                    flow.where = 0
                continue
            flow.deficit -= pkt.size
            return self._dequeued(pkt, now)

    def _backlog(self) -> int:
        return self.backlog

    def peek(self) -> Packet | None:
        for flow in self._active():
            if flow.q:
                return flow.q[0]
        return None

    def reset(self) -> None:
        self._flows.clear()
        self.new_flows.clear()
        self.old_flows.clear()
        self.qlen = self.backlog = 0

    def flow_backlogs(self) -> dict[int, int]:
        """Bytes held per active flow bucket."""
        return {f.index: f.backlog for f in self._active() if f.backlog}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(target=self.core.target, interval=self.core.interval, flows=self.n_flows,
                 quantum=self.quantum, new_flows=len(self.new_flows),
                 old_flows=len(self.old_flows))
        return d


# --- registry ----------------------------------------------------------------------------------


@attrs.frozen
class QdiscContext:
    """What a factory gets to make one queue (one per shaped direction)."""

    #: the discipline's settings: its declared defaults overridden by the user's spec
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    #: the largest frame the link carries, link header included (CoDel's MTU)
    mtu: int = 1514
    #: the bottleneck's rate in bits per second, when there is one (RED's idle decay)
    rate: float | None = None
    #: a seed for any randomness (RED's coin, FQ-CoDel's hash perturbation)
    seed: int = 0


QdiscFactory = Callable[[QdiscContext], Qdisc]


@attrs.frozen
class QdiscInfo:
    """One queue discipline a plugin offers through ``layers_queue_disciplines``."""

    #: the name users select (``queue=NAME`` in a shaper spec)
    name: str
    #: ``factory(ctx) -> Qdisc``, called once per shaped direction
    factory: QdiscFactory
    #: the settings and their defaults; a spec's ``KEY=VALUE`` overrides one, converted to the
    #: default's type: bool (1/0, on/off), int (bytes or a count: ``1514``, ``64kB``), float
    #: (``0.1``, ``10%``), :class:`Duration` (a time with its unit: ``5ms``); an unknown key is
    #: a configuration error
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    #: one line for documentation and error messages
    description: str = ""
    #: the distribution that provides it (for error messages)
    plugin: str = ""


class Duration(float):
    """A setting's default that is a time in seconds: in a spec its value needs a unit
    (``target=5ms``), so that a bare ``5`` is never read as five seconds."""


_COMMON = {"limit": 1000, "limit_bytes": 0, "ecn": False}

BUILTIN_QDISCS: tuple[QdiscInfo, ...] = (
    QdiscInfo(
        "droptail", lambda ctx: DropTail(**ctx.settings), dict(_COMMON),
        "first in, first out; drop arrivals over limit packets (or limit_bytes)", "layers"),
    QdiscInfo(
        "pfifo", lambda ctx: DropTail(**ctx.settings), dict(_COMMON),
        "Linux's name for drop-tail with a packet limit", "layers"),
    QdiscInfo(
        "bfifo", lambda ctx: DropTail(**ctx.settings),
        {"limit": 1 << 30, "limit_bytes": 150_000, "ecn": False},
        "drop-tail with a byte limit (limit_bytes, default 150 kB)", "layers"),
    QdiscInfo(
        "red", lambda ctx: Red(**ctx.settings, rate=ctx.rate, seed=ctx.seed),
        {**_COMMON, "min_th": 5.0, "max_th": 15.0, "max_p": 0.1, "w_q": 0.002,
         "gentle": False, "avpkt": 1000},
        "Random Early Detection (Floyd/Jacobson, RFC 2309); min_th/max_th in packets", "layers"),
    QdiscInfo(
        "codel", lambda ctx: CoDel(**ctx.settings, mtu=ctx.mtu),
        {**_COMMON, "target": Duration(0.005), "interval": Duration(0.100)},
        "CoDel, RFC 8289 (target 5 ms, interval 100 ms)", "layers"),
    QdiscInfo(
        "fq_codel", lambda ctx: FQCoDel(**ctx.settings, mtu=ctx.mtu, seed=ctx.seed),
        {"limit": 10240, "limit_bytes": 0, "ecn": True, "target": Duration(0.005),
         "interval": Duration(0.100),
         "flows": 1024, "quantum": 1514},
        "FQ-CoDel, RFC 8290 (per-flow CoDel, DRR, new/old flows)", "layers"),
)


def collect_queue_disciplines(answers: Iterable[Any]) -> dict[str, QdiscInfo]:
    """Merge ``layers_queue_disciplines`` answers (records or ``{name: factory}`` mappings)
    into ``{name: info}``; one name from two plugins is a :class:`CompositionError`."""
    found: dict[str, QdiscInfo] = {}
    for answer in answers:
        if not answer:
            continue
        items: Iterable[Any]
        if isinstance(answer, Mapping):
            items = [v if isinstance(v, QdiscInfo) else QdiscInfo(name=k, factory=v)
                     for k, v in answer.items()]
        else:
            items = list(answer)
        for info in items:
            if not isinstance(info, QdiscInfo):
                raise CompositionError(
                    f"layers_queue_disciplines returned {info!r}; return QdiscInfo records or "
                    f"a {{name: factory}} mapping")
            old = found.get(info.name)
            if old is not None and old.factory is not info.factory:
                raise CompositionError(
                    f"two plugins provide the queue discipline {info.name!r}; block one of "
                    f"them with LAYERS_DISABLE_PLUGINS")
            found[info.name] = info
    return found


def queue_disciplines(pm: pluggy.PluginManager | None = None) -> dict[str, QdiscInfo]:
    """Every queue discipline ``pm``'s plugins register (a stack's ``stack.pm``); without one,
    those of the core and every installed default plugin."""
    if pm is None:
        from layers.loader import make_plugin_manager

        pm = make_plugin_manager(None)
    return collect_queue_disciplines(pm.hook.layers_queue_disciplines())


# --- settings from text ------------------------------------------------------------------------

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000_000, "mib": 1 << 20,
               "gb": 1000_000_000, "gib": 1 << 30}
_NUM = r"([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)"
_TIME_RE = re.compile(_NUM + r"\s*(s|ms|us|µs|ns)$", re.I)
_SIZE_RE = re.compile(_NUM + r"\s*(b|kb|kib|mb|mib|gb|gib)$", re.I)


def parse_duration(key: str, text: str) -> float:
    """``"5ms"`` -> 0.005; the unit is required (s, ms, us, ns)."""
    m = _TIME_RE.match(text.strip())
    if m is None:
        if re.fullmatch(_NUM, text.strip()):
            raise ConfigurationError(f"{key}={text} needs a unit: {text}ms, {text}us or {text}s")
        raise ConfigurationError(f"{key}={text!r} should be a duration such as 5ms, 500us, 1s")
    return float(m.group(1)) * _TIME_UNITS[m.group(2).lower()]


def parse_size(key: str, text: str) -> int:
    """``"64kB"`` -> 64000, ``"1MiB"`` -> 1048576, ``"1514"`` -> 1514 (bytes)."""
    t = text.strip()
    if re.fullmatch(r"[0-9]+", t):
        return int(t)
    m = _SIZE_RE.match(t)
    if m is None:
        raise ConfigurationError(
            f"{key}={text!r} should be a size in bytes such as 1514, 64kB, 1MB or 1MiB")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def convert_setting(qdisc: str, key: str, value: Any, default: Any) -> Any:
    """``value`` (text from a spec, or a Python value) as the type of ``default``."""
    where = f"{qdisc} setting {key}"
    if not isinstance(value, str):
        try:
            if isinstance(default, Duration):
                return float(value)
            if isinstance(default, bool):
                return bool(value)
            if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return type(default)(value) if default is not None else value
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{where}={value!r} should be a {type(default).__name__} (default {default!r})"
            ) from None
    text = value.strip()
    if isinstance(default, bool):
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f"{where}={text!r} should be 1 or 0 (on/off)")
    if isinstance(default, int):
        return parse_size(where, text)
    if isinstance(default, Duration):
        return parse_duration(where, text)
    if isinstance(default, float):
        if _TIME_RE.match(text):
            return parse_duration(where, text)
        try:
            return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            raise ConfigurationError(
                f"{where}={text!r} should be a number (or a duration such as 5ms, or a "
                f"percent such as 10%)") from None
    return text


def make_qdisc(
    info: QdiscInfo, settings: Mapping[str, Any] | None = None, *, mtu: int = 1514,
    rate: float | None = None, seed: int = 0,
) -> Qdisc:
    """A queue from ``info`` with ``settings`` (text or values) over its declared defaults.
    An unknown key raises :class:`ConfigurationError` listing the valid ones."""
    merged = dict(info.settings)
    for key, value in (settings or {}).items():
        if key not in info.settings:
            valid = ", ".join(sorted(info.settings)) or "none"
            raise ConfigurationError(
                f"queue {info.name} has no setting {key!r}; its settings: {valid}")
        merged[key] = convert_setting(info.name, key, value, info.settings[key])
    try:
        q = info.factory(QdiscContext(settings=merged, mtu=mtu, rate=rate, seed=seed))
    except TypeError as exc:
        raise ConfigurationError(f"queue {info.name}: {exc}") from None
    if not isinstance(q, Qdisc):
        raise CompositionError(
            f"queue discipline {info.name!r} ({info.plugin or 'a plugin'}) made {q!r}, not a "
            f"layers.qdisc.Qdisc")
    return q
