"""The out-of-order queue of the receive side.

Sequence numbers here are the connection's unwrapped ones (plain ints that never wrap), so
comparisons are ordinary integer comparisons.
"""

from __future__ import annotations

from bisect import bisect_right

Buffer = bytes | bytearray | memoryview


class ReassemblyPool:
    """The out-of-order bytes of every connection of a stack, against one limit (what
    Linux's ``tcp_mem`` bounds): a flood of out-of-order segments spread over many
    connections cannot hold more than ``limit`` bytes in all."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def full(self, more: int = 1) -> bool:
        return self.used + more > self.limit


class Reassembly:
    """Non-overlapping blocks of data received beyond ``rcv_nxt``, sorted by sequence number.

    Adjacent blocks are coalesced (appending to a bytearray is amortised O(1)), overlapping
    data is trimmed to the gaps (data already held wins), and the queue is bounded by a block
    count and a byte budget given per call: what does not fit is refused, and the caller
    counts the drop."""

    __slots__ = ("blocks", "max_blocks", "pool", "size", "starts")

    def __init__(self, max_blocks: int = 512, pool: ReassemblyPool | None = None) -> None:
        self.starts: list[int] = []
        self.blocks: list[bytearray] = []
        self.size = 0
        self.max_blocks = max_blocks
        #: the stack-wide accounting this queue draws from (None: only ``budget`` bounds it)
        self.pool = pool

    def __len__(self) -> int:
        return len(self.blocks)

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def ranges(self) -> list[tuple[int, int]]:
        return [(s, s + len(b)) for s, b in zip(self.starts, self.blocks, strict=True)]

    def add(self, seq: int, data: Buffer, budget: int) -> bool:
        """Queue ``data`` at ``seq``. False when (part of) it was refused for lack of room
        (``budget`` bytes in all, ``max_blocks`` blocks, or the pool's limit)."""
        mv = memoryview(data)
        end = seq + len(mv)
        starts = self.starts
        blocks = self.blocks
        j = bisect_right(starts, seq)
        cur = seq
        if j:
            pend = starts[j - 1] + len(blocks[j - 1])
            if pend >= end:
                return True  # all duplicate
            cur = max(cur, pend)
        gaps: list[tuple[int, int]] = []
        while cur < end:
            if j < len(starts) and starts[j] < end:
                ns = starts[j]
                if ns > cur:
                    gaps.append((cur, ns))
                cur = max(cur, ns + len(blocks[j]))
                j += 1
            else:
                gaps.append((cur, end))
                break
        pool = self.pool
        for g0, g1 in gaps:
            if self.size + (g1 - g0) > budget or (pool is not None and pool.full(g1 - g0)):
                return False
            if not self._insert(bisect_right(starts, g0), g0, mv[g0 - seq : g1 - seq]):
                return False
        return True

    def _insert(self, i: int, seq: int, chunk: memoryview) -> bool:
        starts = self.starts
        blocks = self.blocks
        n = len(chunk)
        if i and starts[i - 1] + len(blocks[i - 1]) == seq:
            blocks[i - 1] += chunk
            # now maybe touching the next block: merge it in
            if i < len(starts) and starts[i] == seq + n:
                blocks[i - 1] += blocks[i]
                del starts[i]
                del blocks[i]
            self._grow(n)
            return True
        if i < len(starts) and starts[i] == seq + n:
            blocks[i][:0] = chunk
            starts[i] = seq
            self._grow(n)
            return True
        if len(blocks) >= self.max_blocks:
            return False
        starts.insert(i, seq)
        blocks.insert(i, bytearray(chunk))
        self._grow(n)
        return True

    def _grow(self, n: int) -> None:
        self.size += n
        if self.pool is not None:
            self.pool.used += n

    def pop_ready(self, rcv_nxt: int) -> bytearray | None:
        """Remove and return the data that continues at ``rcv_nxt`` (the blocks that start at
        or before it, joined), or None."""
        starts = self.starts
        if not starts or starts[0] > rcv_nxt:
            return None
        out: bytearray | None = None
        blocks = self.blocks
        while starts and starts[0] <= rcv_nxt:
            s = starts.pop(0)
            b = blocks.pop(0)
            self.size -= len(b)
            if self.pool is not None:
                self.pool.used -= len(b)
            e = s + len(b)
            if e <= rcv_nxt:
                continue
            piece = b if s == rcv_nxt else b[rcv_nxt - s :]
            if out is None:
                out = piece
            else:
                out += piece
            rcv_nxt = e
        return out

    def clear(self) -> None:
        self.starts.clear()
        self.blocks.clear()
        if self.pool is not None:
            self.pool.used -= self.size
        self.size = 0


#: the out-of-order queue of every connection that has never held a segment out of order
#: (most never do): empty, shared, never added to (:meth:`Reassembly.add` is called on a
#: connection's own queue, made then)
NO_OOO = Reassembly(0)

#: writes at least this big, given as ``bytes``, are queued by reference (no copy)
_BY_REFERENCE = 16 * 1024
#: the send buffer's cached view when it has none (its span is empty)
_NO_VIEW = memoryview(b"")
#: smaller writes are gathered into a tail of up to this many bytes before it is frozen
_TAIL_MAX = 64 * 1024


class SendBuffer:
    """The send queue: unacknowledged and unsent bytes, oldest first.

    One contiguous ``bytearray`` cost a copy of every write and, as acknowledgements freed its
    front, reallocations that copied what was left (with page faults on a large buffer). Here
    the bytes stay in the chunks the application wrote: a ``bytes`` write of 16 KiB or more is
    kept by reference (it cannot change), smaller writes and mutable buffers are copied into a
    tail that becomes one ``bytes`` chunk when full or when a segment needs its data. Offsets
    are relative to the first unacknowledged byte; :meth:`view` returns a zero-copy
    ``memoryview`` of a single chunk when the range lies within one."""

    __slots__ = ("_base", "_chunks", "_end", "_first", "_starts", "_tail", "_vend", "_view",
                 "_vstart", "size")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        #: absolute stream offset of each chunk's first byte (ascending)
        self._starts: list[int] = []
        #: index of the first chunk still holding unacknowledged data
        self._first = 0
        #: absolute stream offset of the first unacknowledged byte
        self._base = 0
        #: absolute stream offset just past the last chunk (where the tail starts)
        self._end = 0
        #: bytes held (``len()``, without the call: the connection reads it per segment)
        self.size = 0
        self._tail = bytearray()
        #: a view of the chunk the last range came from, with the stream offsets it spans
        #: (an empty span without one): the next segment is usually in the same chunk
        self._view = _NO_VIEW
        self._vstart = 1
        self._vend = 0

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def append(self, data: Buffer) -> None:
        n = len(data)
        if not n:
            return
        if n >= _BY_REFERENCE and (type(data) is bytes or n >= _TAIL_MAX):
            self._freeze_tail()
            self._push(data if type(data) is bytes else bytes(data))
        else:
            tail = self._tail
            tail += data
            if len(tail) >= _TAIL_MAX:
                self._freeze_tail()
        self.size += n

    def _push(self, chunk: bytes) -> None:
        self._starts.append(self._end)
        self._chunks.append(chunk)
        self._end += len(chunk)

    def _freeze_tail(self) -> None:
        if self._tail:
            self._push(bytes(self._tail))
            self._tail = bytearray()

    def consume(self, n: int) -> None:
        """Forget the first ``n`` bytes (acknowledged)."""
        if n <= 0:
            return
        if n >= self.size:
            self.clear(base=self._base + self.size)
            return
        self.size -= n
        base = self._base = self._base + n
        if base > self._end:
            self._freeze_tail()
        chunks = self._chunks
        starts = self._starts
        i = self._first
        while i < len(chunks) and starts[i] + len(chunks[i]) <= base:
            chunks[i] = b""  # release the memory now
            i += 1
        if i >= 64 and i * 2 >= len(chunks):
            del chunks[:i]
            del starts[:i]
            i = 0
        self._first = i
        if base >= self._vend:
            self._drop_view()  # its chunk is acknowledged: let it go

    def _drop_view(self) -> None:
        self._view = _NO_VIEW
        self._vstart = 1
        self._vend = 0

    def view(self, off: int, n: int) -> bytes | memoryview:
        """``n`` bytes from ``off`` (0 is the first unacknowledged byte); a memoryview of one
        chunk when possible, else a joined copy."""
        got = self.pieces(off, n)
        return b"".join(got) if type(got) is tuple else got  # type: ignore[return-value]

    def pieces(self, off: int, n: int) -> bytes | memoryview | tuple[bytes | memoryview, ...]:
        """:meth:`view` without the copy: a range over several chunks comes back as a tuple of
        views of them (a gather list for a scatter-gather write)."""
        pos = self._base + off
        start = self._vstart
        if start <= pos and pos + n <= self._vend and n > 0 and off >= 0:
            pos -= start
            return self._view[pos : pos + n]  # within the chunk of the last range
        if off < 0:
            raise ValueError(f"send buffer offset {off} is negative (before SND.UNA's byte)")
        if n <= 0:
            return b""
        end = pos + n
        chunks = self._chunks
        starts = self._starts
        if end > self._end:
            self._freeze_tail()
        i = bisect_right(starts, pos, self._first) - 1
        chunk = chunks[i]
        a = pos - starts[i]
        if a + n <= len(chunk):
            if a == 0 and n == len(chunk):
                return chunk
            view = self._view = memoryview(chunk)
            self._vstart = starts[i]
            self._vend = starts[i] + len(chunk)
            return view[a : a + n]
        parts: list[bytes | memoryview] = [memoryview(chunk)[a:]]
        left = n - (len(chunk) - a)
        while left > 0:
            i += 1
            chunk = chunks[i]
            if left >= len(chunk):
                parts.append(chunk)
                left -= len(chunk)
            else:
                parts.append(memoryview(chunk)[:left])
                left = 0
        return tuple(parts)

    def clear(self, base: int | None = None) -> None:
        """Drop everything (the stream offset continues at ``base``, default unchanged)."""
        if base is None:
            base = self._base + self.size
        self._chunks = []
        self._starts = []
        self._first = 0
        self._base = self._end = base
        self.size = 0
        self._tail = bytearray()
        self._drop_view()


#: the send buffer of every connection in TIME-WAIT (Connection._release_for_time_wait): empty
#: and shared; nothing is written to a connection that has sent its FIN
NO_SNDBUF = SendBuffer()
