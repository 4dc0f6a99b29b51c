"""IPv6 reassembly (RFC 8200 section 4.5), bounded in memory and time.

One queue per packet being rebuilt, keyed by ``(src, dst, identification)``. Policies:

* **Overlaps** discard the whole packet and every later fragment of it until its timer ends
  (RFC 5722; ``ReasmOverlaps``). A fragment with exactly the offset and length of one held is
  a duplicate: dropped alone (``ReasmDuplicates``), as Linux does.
* A fragment with M set whose length is not a multiple of 8, or one reaching past 65535
  bytes, is answered by parameter problem (RFC 8200 4.5) and dropped (``bad_fragment``).
* Two different ends, or data past the end, discard the packet (``bad_fragment``).
* **Memory**: each fragment costs its length plus :data:`FRAGMENT_OVERHEAD`; the oldest
  queues go first when a new fragment would pass the limit (``reasm_memory``).
* **Time**: ``timeout`` seconds from the first fragment; on expiry with the first fragment
  (offset 0) held, time exceeded code 1 is sent (RFC 8200 4.5), otherwise nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from layers.counters import Counters
    from layers.stack import Stack
    from layers.timers import Timer

FRAGMENT_OVERHEAD = 64
MAX_PAYLOAD = 65535
Key = tuple[int, int, int]


class FragmentQueue:
    __slots__ = ("cost", "end", "first", "held", "next_header", "parts", "poisoned", "timer",
                 "unfragmentable")

    def __init__(self) -> None:
        #: (offset, data), sorted by offset
        self.parts: list[tuple[int, bytes]] = []
        self.held = 0
        self.cost = 0
        self.end: int | None = None
        #: the headers before the fragment header, from the fragment at offset 0
        self.unfragmentable: bytes | None = None
        self.next_header = -1
        #: the first fragment's whole packet (for a time exceeded quote)
        self.first: bytes | None = None
        self.poisoned = False
        self.timer: Timer | None = None


class Reassembler:
    """``add()`` returns ``(unfragmentable headers, next header, payload)`` when a packet is
    complete, else None; ``on_timeout(first_fragment_packet)`` is called for expired queues
    that held the first fragment."""

    def __init__(self, stack: Stack, counters: Counters, *, timeout: float, memory_limit: int,
                 on_timeout: Callable[[bytes], None]) -> None:
        self.stack = stack
        self._c = counters
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.on_timeout = on_timeout
        self.queues: dict[Key, FragmentQueue] = {}
        self.memory = 0

    def __len__(self) -> int:
        return len(self.queues)

    def add(self, key: Key, unfragmentable: bytes, packet: bytes, next_header: int,
            offset: int, more: bool, data: bytes) -> tuple[bytes, int, bytes] | None:
        c = self._c
        c["ReasmReqds"] += 1
        q = self.queues.get(key)
        if q is None:
            self._make_room(len(data) + FRAGMENT_OVERHEAD)
            q = self.queues[key] = FragmentQueue()
            q.timer = self.stack.call_later(self.timeout, self._expire, key)
        if q.poisoned:
            c.drop("reasm_overlap")
            return None
        end = offset + len(data)
        if not more:
            if (q.end is not None and q.end != end) or any(o + len(d) > end for o, d in q.parts):
                self._fail(key, "bad_fragment")
                return None
            q.end = end
        elif q.end is not None and end > q.end:
            self._fail(key, "bad_fragment")
            return None
        for o, d in q.parts:
            if o == offset and len(d) == len(data):
                c["ReasmDuplicates"] += 1
                c.drop("reasm_duplicate")
                return None
            if o < end and offset < o + len(d):
                c["ReasmOverlaps"] += 1
                q.poisoned = True  # later fragments of it are dropped too (RFC 5722)
                self._discard(key, q)
                c.drop("reasm_overlap")
                return None
        if offset == 0:
            q.unfragmentable = unfragmentable
            q.next_header = next_header
            q.first = packet
        cost = len(data) + FRAGMENT_OVERHEAD
        if self.memory + cost > self.memory_limit:
            self._make_room(cost, keep=key)
            if self.memory + cost > self.memory_limit:
                c["ReasmFails"] += 1
                c.drop("reasm_memory")
                return None
        q.parts.append((offset, data))
        q.parts.sort(key=lambda p: p[0])
        q.held += len(data)
        q.cost += cost
        self.memory += cost
        if q.end is None or q.held != q.end or q.unfragmentable is None:
            return None
        whole = b"".join(d for _, d in q.parts)
        self._discard(key, q)
        c["ReasmOKs"] += 1
        return q.unfragmentable, q.next_header, whole

    def _fail(self, key: Key, reason: str) -> None:
        q = self.queues.get(key)
        if q is not None:
            self._discard(key, q)
        self._c["ReasmFails"] += 1
        self._c.drop(reason)

    def _discard(self, key: Key, q: FragmentQueue) -> None:
        self.memory -= q.cost
        q.cost = 0
        q.parts = []
        q.held = 0
        if not q.poisoned:
            if q.timer is not None:
                q.timer.cancel()
            self.queues.pop(key, None)

    def _make_room(self, cost: int, keep: Key | None = None) -> None:
        while self.memory + cost > self.memory_limit:
            victim = next((k for k, q in self.queues.items() if k != keep and q.cost), None)
            if victim is None:
                return
            q = self.queues[victim]
            self._c["ReasmFails"] += 1
            self._c.drop("reasm_memory")
            self._discard(victim, q)
            if q.timer is not None:
                q.timer.cancel()
            self.queues.pop(victim, None)

    def _expire(self, key: Key) -> None:
        q = self.queues.pop(key, None)
        if q is None:
            return
        self.memory -= q.cost
        if q.poisoned:
            return
        self._c["ReasmTimeout"] += 1
        self._c["ReasmFails"] += 1
        self._c.drop("reasm_timeout")
        if q.first is not None:
            self.on_timeout(q.first)

    def clear(self) -> None:
        for q in self.queues.values():
            if q.timer is not None:
                q.timer.cancel()
        self.queues.clear()
        self.memory = 0
