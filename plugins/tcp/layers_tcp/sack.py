"""The SACK scoreboard (RFC 2018, RFC 6675): what the peer holds above SND.UNA, what is
deemed lost, what was retransmitted, and RFC 6675's pipe computed from them.

The connection (:mod:`layers_tcp.connection`) adds the SACK blocks of each ACK, asks for the
next hole to retransmit and for the pipe; :mod:`layers_tcp.recovery` holds the rest of loss
recovery's bookkeeping (proportional rate reduction).
"""

from __future__ import annotations

#: duplicate ACKs (or SACKed segments above a hole) that signal a loss (RFC 5681, RFC 6675)
DUPTHRESH = 3


class Scoreboard:
    """What the peer holds above SND.UNA, what is deemed lost and what was retransmitted.

    ``ranges`` are sorted, merged (start, end) SACKed ranges; ``sacked_bytes`` their total.
    Bytes below ``lost_end`` that are not SACKed are lost (RFC 6675 IsLost); ``rexmit`` holds
    the ranges retransmitted that are still outstanding, each with SND.MAX at the time: when
    data sent after a retransmission is SACKed DUPTHRESH segments deep, the retransmission was
    lost too and its range may go again (as Linux's lost-retransmit detection)."""

    __slots__ = ("dup_bytes", "high", "lost_end", "ranges", "rexmit", "sacked_bytes")

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []
        self.sacked_bytes = 0
        #: the highest SACKed sequence number (RFC 6675 HighACK's right neighbour)
        self.high = 0
        #: without SACK: bytes the duplicate ACKs say have left the network
        self.dup_bytes = 0
        #: un-SACKed bytes below this are lost
        self.lost_end = 0
        #: (start, end, SND.MAX when sent) retransmitted and not yet acknowledged or SACKed
        #: (what RFC 6675's HighRxt stands for: these holes are not sent again)
        self.rexmit: list[tuple[int, int, int]] = []

    # --- SACK (RFC 2018) --------------------------------------------------------------
    def add(self, blocks: list[tuple[int, int]], una: int, smax: int) -> int:
        """Merge SACK blocks; returns the bytes newly SACKed."""
        ranges = self.ranges
        changed = False
        for a, b in blocks:
            if b <= una or a >= b or b > smax or a < una - 0x80000000:
                continue  # stale, D-SACK or bogus
            if a < una:
                a = una
            ranges.append((a, b))
            changed = True
            if b > self.high:
                self.high = b
        if not changed:
            return 0
        ranges.sort()
        merged: list[tuple[int, int]] = []
        for a, b in ranges:
            if merged and a <= merged[-1][1]:
                if b > merged[-1][1]:
                    merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        self.ranges = merged
        before = self.sacked_bytes
        self.sacked_bytes = sum(b - a for a, b in merged)
        if self.rexmit:
            self._trim_rexmit(una)
        return self.sacked_bytes - before

    def trim(self, una: int) -> None:
        """SND.UNA moved to ``una``: forget what is below it."""
        if self.ranges:
            out = [(a if a > una else una, b) for a, b in self.ranges if b > una]
            self.ranges = out
            self.sacked_bytes = sum(b - a for a, b in out)
        if self.rexmit:
            self._trim_rexmit(una)

    def _trim_rexmit(self, una: int) -> None:
        out = []
        for a, b, m in self.rexmit:
            if b <= una:
                continue
            if a < una:
                a = una
            # cut the SACKed parts out
            for sa, sb in self.ranges:
                if sb <= a or sa >= b:
                    continue
                if sa > a:
                    out.append((a, sa, m))
                a = sb
                if a >= b:
                    break
            if a < b:
                out.append((a, b, m))
        self.rexmit = out

    def lost_retransmits(self, mss: int) -> bool:
        """Forget retransmissions that data sent after them overtook by DUPTHRESH segments
        of SACKed data: they were lost too, and their holes may be retransmitted again."""
        high = self.high - DUPTHRESH * mss
        if all(m > high for _a, _b, m in self.rexmit):
            return False
        self.rexmit = [r for r in self.rexmit if r[2] > high]
        return True

    def clear(self) -> None:
        """A timeout (RFC 2018 8: the receiver may renege) or the end of recovery."""
        self.ranges = []
        self.sacked_bytes = 0
        self.high = 0
        self.dup_bytes = 0
        self.lost_end = 0
        self.rexmit = []

    # --- RFC 6675 ---------------------------------------------------------------------
    def update_lost(self, una: int, mss: int) -> None:
        """RFC 6675 IsLost: a hole is lost when DUPTHRESH SACKed ranges, or more than
        (DUPTHRESH - 1) * SMSS SACKed bytes, lie above it. Moves ``lost_end`` forward to the
        start of the lowest SACKed range with that much SACKed data at or above it."""
        above = 0
        count = 0
        limit = (DUPTHRESH - 1) * mss
        for a, b in reversed(self.ranges):
            above += b - a
            count += 1
            if above > limit or count >= DUPTHRESH:
                if a > self.lost_end:
                    self.lost_end = a
                return

    def lost_bytes(self, una: int) -> int:
        """Un-SACKed bytes in [una, lost_end)."""
        end = self.lost_end
        if end <= una:
            return 0
        n = end - una
        for a, b in self.ranges:
            if a >= end:
                break
            n -= (b if b < end else end) - a
        return n

    def sacked_below(self, seq: int) -> int:
        """SACKed bytes below ``seq``."""
        n = 0
        for a, b in self.ranges:
            if a >= seq:
                break
            n += (b if b < seq else seq) - a
        return n

    def skip(self, seq: int) -> tuple[int, int]:
        """For go-back-N: where sending from ``seq`` should resume (the end of the SACKed
        range holding it, else ``seq``) and where it should stop (the next SACKed range)."""
        for a, b in self.ranges:
            if seq < a:
                return seq, a
            if seq < b:
                return b, b
        return seq, 1 << 62

    def retrans_out(self) -> int:
        return sum(r[1] - r[0] for r in self.rexmit)

    def pipe(self, una: int, smax: int) -> int:
        """RFC 6675 SetPipe: bytes sent and not SACKed, lost or acknowledged, plus the
        retransmissions still in flight."""
        p = smax - una - self.sacked_bytes - self.dup_bytes - self.lost_bytes(una)
        if self.rexmit:
            p += self.retrans_out()
        return p if p > 0 else 0

    def next_hole(self, una: int, lost_only: bool) -> tuple[int, int] | None:
        """RFC 6675 NextSeg: the first range at or above SND.UNA neither SACKed nor
        retransmitted (and still outstanding), below ``lost_end`` (rule 1) or, with
        ``lost_only`` false, below the highest SACKed byte (rule 3)."""
        pos = una
        limit = self.lost_end if lost_only else self.high
        covered = self.ranges
        if self.rexmit:
            covered = sorted([*covered, *((a, b) for a, b, _m in self.rexmit)])
        end = limit
        for a, b in covered:
            if pos < a:
                end = a if a < limit else limit
                break
            if pos < b:
                pos = b
        if pos >= limit:
            return None
        return pos, end

    def retransmitted(self, start: int, end: int, smax: int) -> None:
        rx = self.rexmit
        if rx and rx[-1][1] == start and rx[-1][2] == smax:
            rx[-1] = (rx[-1][0], end, smax)
        else:
            rx.append((start, end, smax))
            if len(rx) > 1 and rx[-2][0] > start:
                rx.sort()


#: the scoreboard of every connection in TIME-WAIT: empty and shared (TIME-WAIT processes
#: no ACK, so nothing is ever SACKed on it)
NO_SCOREBOARD = Scoreboard()
