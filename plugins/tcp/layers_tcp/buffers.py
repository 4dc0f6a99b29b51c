"""The out-of-order queue of the receive side.

Sequence numbers here are the connection's unwrapped ones (plain ints that never wrap), so
comparisons are ordinary integer comparisons.
"""

from __future__ import annotations

from bisect import bisect_right

Buffer = bytes | bytearray | memoryview


class Reassembly:
    """Non-overlapping blocks of data received beyond ``rcv_nxt``, sorted by sequence number.

    Adjacent blocks are coalesced (appending to a bytearray is amortised O(1)), overlapping
    data is trimmed to the gaps (data already held wins), and the queue is bounded by a block
    count and a byte budget given per call: what does not fit is refused, and the caller
    counts the drop."""

    __slots__ = ("blocks", "max_blocks", "size", "starts")

    def __init__(self, max_blocks: int = 512) -> None:
        self.starts: list[int] = []
        self.blocks: list[bytearray] = []
        self.size = 0
        self.max_blocks = max_blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def ranges(self) -> list[tuple[int, int]]:
        return [(s, s + len(b)) for s, b in zip(self.starts, self.blocks, strict=True)]

    def add(self, seq: int, data: Buffer, budget: int) -> bool:
        """Queue ``data`` at ``seq``. False when (part of) it was refused for lack of room
        (``budget`` bytes in all, or ``max_blocks`` blocks)."""
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
        for g0, g1 in gaps:
            if self.size + (g1 - g0) > budget:
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
            self.size += n
            return True
        if i < len(starts) and starts[i] == seq + n:
            blocks[i][:0] = chunk
            starts[i] = seq
            self.size += n
            return True
        if len(blocks) >= self.max_blocks:
            return False
        starts.insert(i, seq)
        blocks.insert(i, bytearray(chunk))
        self.size += n
        return True

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
        self.size = 0
