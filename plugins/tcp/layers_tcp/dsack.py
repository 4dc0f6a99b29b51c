"""D-SACK (RFC 2883) and what the sender learns from it (RFC 3708), sans-IO.

**Receiver.** A segment whose data we hold already (below RCV.NXT, or inside a block of the
out-of-order queue) is reported in the first SACK block of the ACK it draws, once: RFC 2883's
duplicate-SACK. :func:`dsack_for` computes that block.

**Sender.** The first SACK block of an ACK is a D-SACK when it lies below the cumulative ACK or
inside the second block (RFC 2883 4.1, :func:`find_dsack`). A D-SACK for data we
retransmitted says that both copies arrived: the retransmission was not needed. When every
retransmission of a recovery episode has been D-SACKed, the episode was spurious (RFC 3708
2.2) and its congestion response is undone, as Linux does (``undo_marker`` and
``undo_retrans``): :class:`UndoLedger` keeps the count.
"""

from __future__ import annotations

from collections.abc import Sequence


def find_dsack(blocks: Sequence[tuple[int, int]], ack: int) -> tuple[int, int] | None:
    """The D-SACK block of an ACK's SACK blocks (unwrapped), if its first block is one: below
    the cumulative ACK, or contained in the second block (RFC 2883 4.1)."""
    if not blocks:
        return None
    a, b = blocks[0]
    if a >= b:
        return None
    if b <= ack:
        return a, b
    if len(blocks) > 1:
        a2, b2 = blocks[1]
        if a2 <= a and b <= b2:
            return a, b
    return None


def dsack_for(seq: int, end: int, rcv_nxt: int,
              held: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The D-SACK block for a received segment [seq, end): its part below ``rcv_nxt``
    (RFC 2883 4.1.1), else the part of it inside an out-of-order block ``held`` already
    (4.1.2). None when nothing of it was a duplicate."""
    if seq < rcv_nxt:
        return seq, min(end, rcv_nxt)
    for a, b in held:
        if a >= end:
            break
        if b > seq:
            lo = seq if seq > a else a
            hi = end if end < b else b
            if lo < hi:
                return lo, hi
    return None


class UndoLedger:
    """The retransmissions of the current loss episode (fast recovery or timeout) that no
    D-SACK has reported yet. An episode starts at SND.UNA (Linux's ``undo_marker``) and lasts
    until the next one starts or an undo ends it; retransmitted ranges are kept so that only a
    D-SACK for data we really sent twice counts (a duplicate made by the network does not)."""

    __slots__ = ("marker", "pending", "retransmitted")

    def __init__(self) -> None:
        #: SND.UNA when the episode began; None: no episode to undo
        self.marker: int | None = None
        #: retransmitted [start, end) ranges not yet D-SACKed, sorted, disjoint
        self.pending: list[tuple[int, int]] = []
        #: segments retransmitted in the episode
        self.retransmitted = 0

    def start(self, una: int) -> None:
        """A new episode at SND.UNA ``una``; retransmissions of the last one still
        outstanding stay pending (Linux starts undo_retrans at retrans_out)."""
        keep = [(a if a > una else una, b) for a, b in self.pending if b > una]
        self.marker = una
        self.pending = keep
        self.retransmitted = len(keep)

    def clear(self) -> None:
        self.marker = None
        self.pending = []
        self.retransmitted = 0

    def add(self, start: int, end: int, segments: int) -> None:
        """[start, end) was retransmitted (``segments`` segments) during the episode."""
        if self.marker is None or end <= start:
            return
        self.retransmitted += segments
        pending = self.pending
        if pending and pending[-1][1] <= start:
            if pending[-1][1] == start:
                pending[-1] = (pending[-1][0], end)
            else:
                pending.append((start, end))
            return
        # out of order or overlapping (a segment retransmitted again): merge
        pending.append((start, end))
        pending.sort()
        merged: list[tuple[int, int]] = []
        for a, b in pending:
            if merged and a <= merged[-1][1]:
                if b > merged[-1][1]:
                    merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        self.pending = merged

    def overlaps(self, a: int, b: int) -> bool:
        """[a, b) covers data of this episode's retransmissions not yet reported."""
        return any(s < b and e > a for s, e in self.pending)

    def dsack(self, a: int, b: int) -> bool:
        """A D-SACK reported [a, b): forget the retransmitted data it covers. True when the
        episode retransmitted something and all of it has now been reported twice received:
        every retransmission was spurious (RFC 3708)."""
        marker = self.marker
        if marker is None or b <= marker or not self.pending:
            return False
        out: list[tuple[int, int]] = []
        changed = False
        for s, e in self.pending:
            if e <= a or s >= b:
                out.append((s, e))
                continue
            changed = True
            if s < a:
                out.append((s, a))
            if e > b:
                out.append((b, e))
        if not changed:
            return False
        self.pending = out
        return not out and self.retransmitted > 0
