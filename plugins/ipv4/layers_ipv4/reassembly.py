"""IPv4 reassembly (RFC 791 section 3.2; the bookkeeping RFC 815 describes).

One :class:`_Queue` per datagram being rebuilt, keyed by ``(src, dst, protocol, ident)``
(RFC 791's reassembly key). Instead of RFC 815's explicit hole list each queue keeps its
fragments sorted by offset and counts the bytes it holds: because overlapping fragments are never
stored (see the policy below), the datagram is complete exactly when the last fragment has fixed
its length and the bytes held equal that length. That is the same test as "the hole list is
empty", in O(log n) per fragment.

Policies (documented in the plugin's docstring as well):

* **Duplicates** (a fragment with exactly the offset and length of one already held) are
  dropped and counted (``ReasmDuplicates``); the queue lives on.
* **Overlaps** (any other intersection) discard the whole datagram, as Linux has done for
  IPv4 since 4.19 and as RFC 5722 requires for IPv6 (``ReasmOverlaps``): overlapping
  fragments only come from attacks (Teardrop, IDS evasion) or broken middleboxes.
* **Inconsistent lengths** (two different last fragments, data past the end the last fragment
  set, more than 65535 bytes) discard the datagram (``bad_fragment`` / ``reasm_oversize``).
* A fragment with MF set whose length is not a positive multiple of 8 is dropped alone
  (``bad_fragment``).
* **Memory**: every held fragment costs its length plus :data:`FRAGMENT_OVERHEAD`; when a new
  fragment would take the total over the limit, the oldest queues are discarded first
  (``reasm_memory``), then the new fragment if it still does not fit.
* **ECN** (RFC 3168 5.3): the datagram is CE when any of its fragments was CE (its header
  is rewritten so); fragments that mix Not-ECT with ECT or CE discard the datagram
  (``reasm_ecn_mismatch``), as Linux's ``ip_frag_ecn_table`` does.
* **Time**: a queue lives ``timeout`` seconds from its first fragment (not refreshed). When it
  expires having received the first fragment (offset 0), ICMP time exceeded code 1
  (fragment reassembly time exceeded) is requested from ``stack.errors``; RFC 792 and RFC 1122
  3.2.2.4 forbid it otherwise, since there is no header worth quoting.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

from layers.links.base import RX_CSUM_VERIFIED
from layers.protocols import IPDatagram
from layers.wire.checksum import checksum

if TYPE_CHECKING:
    from layers.counters import Counters
    from layers.interface import Interface
    from layers.stack import Stack
    from layers.timers import Timer

#: bookkeeping cost charged per held fragment on top of its data (Linux charges skb truesize)
FRAGMENT_OVERHEAD = 64
MAX_DATAGRAM = 65535

Key = tuple[int, int, int, int]


class _Queue:
    __slots__ = (
        "broadcast",
        "cost",
        "ecn",
        "end",
        "first_flags",
        "first_header",
        "first_payload",
        "frags",
        "iface",
        "key",
        "received",
        "starts",
        "timer",
        "tos",
        "ttl",
    )

    def __init__(self, key: Key, iface: Interface, broadcast: bool) -> None:
        self.key = key
        self.iface = iface
        self.broadcast = broadcast
        self.starts: list[int] = []
        self.frags: list[tuple[int, int, bytes]] = []
        self.received = 0
        self.end: int | None = None
        self.cost = 0
        self.first_header: bytes | None = None
        self.first_payload = b""
        self.first_flags = 0
        self.ttl = 0
        self.tos = 0
        #: the ECN codepoints seen among the kept fragments, one bit each (1 << codepoint)
        self.ecn = 0
        self.timer: Timer | None = None


#: bits of _Queue.ecn: 1 << the ECN codepoint
_NOT_ECT = 1 << 0
_CE = 1 << 3

# Outcomes of _Queue insertion, for the caller's counters.
_OK, _DUP, _OVERLAP, _BAD = range(4)


class Reassembler:
    """Holds the partial datagrams of one stack; :meth:`add` takes one fragment."""

    def __init__(
        self,
        stack: Stack,
        counters: Counters,
        *,
        timeout: float = 30.0,
        memory_limit: int = 256 * 1024,
    ) -> None:
        self.stack = stack
        self._c = counters
        self.timeout = timeout
        self.memory_limit = memory_limit
        #: insertion order is age order (oldest first), which eviction relies on
        self.queues: dict[Key, _Queue] = {}
        self.memory = 0

    def __len__(self) -> int:
        return len(self.queues)

    def clear(self) -> None:
        for q in self.queues.values():
            if q.timer is not None:
                q.timer.cancel()
        self.queues.clear()
        self.memory = 0

    # --- one fragment -------------------------------------------------------------------
    def add(
        self,
        iface: Interface,
        header: memoryview,
        data: memoryview,
        key: Key,
        frag_word: int,
        ttl: int,
        tos: int,
        flags: int,
        broadcast: bool,
    ) -> IPDatagram | None:
        """File one fragment; return the whole datagram when this one completed it."""
        c = self._c
        c["ReasmReqds"] += 1
        start = (frag_word & 0x1FFF) << 3
        more = bool(frag_word & 0x2000)
        size = len(data)
        end = start + size
        q = self.queues.get(key)
        if len(header) + end > MAX_DATAGRAM:
            c.drop("reasm_oversize")
            if q is not None:
                self._kill(q)
            return None
        if more and (size == 0 or size & 7):
            c.drop("bad_fragment")
            return None
        cost = size + FRAGMENT_OVERHEAD
        if q is None:
            if not self._make_room(cost, None):
                c.drop("reasm_memory")
                c["ReasmFails"] += 1
                return None
            q = self.queues[key] = _Queue(key, iface, broadcast)
            q.timer = self.stack.call_later(self.timeout, self._expire, q)
        elif not self._make_room(cost, q):
            c.drop("reasm_memory")
            self._kill(q)
            return None

        outcome = self._insert(q, start, end, more, data)
        if outcome != _OK:
            if outcome == _DUP:
                c["ReasmDuplicates"] += 1
                c.drop("reasm_duplicate")
            else:
                if outcome == _OVERLAP:
                    c["ReasmOverlaps"] += 1
                    c.drop("reasm_overlap")
                else:
                    c.drop("bad_fragment")
                self._kill(q)
            return None
        q.cost += cost
        self.memory += cost
        q.ecn |= 1 << (tos & 3)
        if start == 0:
            q.first_header = bytes(header)
            q.first_payload = bytes(data)
            q.first_flags = flags
            q.ttl = ttl
            q.tos = tos
        if q.end is None or q.received != q.end:
            return None
        return self._complete(q)

    @staticmethod
    def _insert(q: _Queue, start: int, end: int, more: bool, data: memoryview) -> int:
        if not more:
            if q.end is not None:
                if q.end != end:
                    return _BAD
                if start == end:  # a repeated empty last fragment
                    return _DUP
            elif q.frags and q.frags[-1][1] > end:
                return _BAD
        elif q.end is not None and end > q.end:
            return _BAD
        starts, frags = q.starts, q.frags
        i = bisect_right(starts, start)
        if i:
            p_start, p_end, _ = frags[i - 1]
            if p_start == start and p_end == end:
                return _DUP
            if p_end > start:
                return _OVERLAP
        if i < len(frags) and frags[i][0] < end:
            return _OVERLAP
        if not more:
            q.end = end
        if start != end:
            starts.insert(i, start)
            frags.insert(i, (start, end, bytes(data)))
            q.received += end - start
        return _OK

    # --- room, expiry, completion ------------------------------------------------------
    def _make_room(self, cost: int, keep: _Queue | None) -> bool:
        limit = self.memory_limit
        if cost > limit:
            return False
        while self.memory + cost > limit:
            victim = next((q for q in self.queues.values() if q is not keep), None)
            if victim is None:
                return False
            self._c.drop("reasm_memory_evicted")
            self._kill(victim)
        return True

    def _kill(self, q: _Queue) -> None:
        if self.queues.pop(q.key, None) is None:
            return
        self.memory -= q.cost
        if q.timer is not None:
            q.timer.cancel()
        self._c["ReasmFails"] += 1

    def _expire(self, q: _Queue) -> None:
        if self.queues.get(q.key) is not q:
            return
        q.timer = None
        self._kill(q)
        c = self._c
        c["ReasmTimeout"] += 1
        if q.first_header is None:
            return
        src, dst, proto, _ = q.key
        datagram = IPDatagram(
            q.iface, src, dst, proto, q.ttl, q.tos, q.first_header, q.first_payload,
            q.first_flags, q.broadcast,
        )
        self.stack.errors.time_exceeded(datagram, 1)

    def _complete(self, q: _Queue) -> IPDatagram | None:
        self.queues.pop(q.key, None)
        self.memory -= q.cost
        if q.timer is not None:
            q.timer.cancel()
        tos = q.tos
        ecn = q.ecn
        if ecn & _NOT_ECT and ecn != _NOT_ECT:
            # RFC 3168 5.3: CE must survive reassembly but may not be set on a datagram
            # with Not-ECT parts; Linux discards every mix of Not-ECT with ECT or CE
            self._c["ReasmFails"] += 1
            self._c.drop("reasm_ecn_mismatch")
            return None
        if ecn & _CE:
            tos |= 3
        self._c["ReasmOKs"] += 1
        assert q.first_header is not None and q.end is not None
        payload = b"".join(f[2] for f in q.frags)
        head = bytearray(q.first_header)
        head[1] = tos
        total = len(head) + q.end
        head[2:4] = total.to_bytes(2, "big")
        head[6:8] = b"\x00\x00"
        head[10:12] = b"\x00\x00"
        head[10:12] = checksum(head).to_bytes(2, "big")
        src, dst, proto, _ = q.key
        return IPDatagram(
            q.iface, src, dst, proto, q.ttl, tos, memoryview(bytes(head)),
            memoryview(payload), q.first_flags & ~RX_CSUM_VERIFIED, q.broadcast,
        )
