"""RACK-TLP (RFC 8985): time-based loss detection and the tail loss probe, sans-IO.

**RACK** (Recent ACKnowledgment) deems a segment lost when a segment *sent after it* has been
delivered (cumulatively or by SACK) and more than a reordering window has passed since: a
segment is lost once ``now >= its xmit time + RACK.rtt + reo_wnd``, where ``RACK.rtt`` is the
RTT of the most recently sent delivered segment. Segments are the engine's transmission
records (:mod:`layers_tcp.rate`: one per segment or TSO super-segment, with the time of its
latest transmission), so a retransmission that is itself lost is found the same way, one RTT
plus the window after a later segment was delivered.

The reordering window (RFC 8985 6.2 step 4, as Linux's ``tcp_rack_reo_wnd``): zero while no
reordering has been seen and either recovery is under way or DupThresh segments are SACKed
(RACK then acts as fast as duplicate-ACK counting); otherwise ``min_rtt / 4`` times a
multiplier, at most SRTT. The multiplier grows by one for each round trip in which the peer
reports a D-SACK (RFC 2883: our retransmission was not needed), and falls back to one after
16 recoveries without any (``reo_wnd_persist``). Reordering is seen when a segment never
retransmitted is delivered below the highest sequence delivered so far (RACK.fack).

**TLP** (RFC 8985 7): with SACK, outside recovery, a probe timeout (PTO) of ``2 * SRTT``
(plus Linux's ``rto_min`` when one segment is in flight, for the peer's delayed ACK; never
later than the RTO) sends one segment: new data when the windows allow, else the last
segment sent again. Its ACK, or the SACK it draws, lets RACK find a tail loss one RTT after
the probe instead of waiting for the retransmission timeout. At most one probe is
outstanding (``TailLossProbe.end_seq``); when it was a retransmission, an ACK beyond it
shows that it repaired a loss (the congestion control is told, ``LossProbeRecovery``), a
D-SACK or a bare duplicate ACK that it was not needed.

This module keeps the state and makes the decisions; :mod:`layers_tcp.connection` feeds it
the delivered records, marks the scoreboard and runs the timers.
"""

from __future__ import annotations

from collections.abc import Iterable

from layers_tcp.rate import END, LOST, RETRANS, SACKED, SENT
from layers_tcp.sack import DUPTHRESH

#: recoveries without a D-SACK after which the reordering window shrinks back (RFC 8985)
REO_WND_PERSIST = 16
#: the PTO when no RTT has been measured (RFC 8985 7.2)
PTO_NO_SRTT = 1.0
#: Linux's TCP_TIMEOUT_MIN: added to 2*SRTT when more than one segment is in flight
PTO_SLACK = 0.002


def sent_after(t1: float, seq1: int, t2: float, seq2: int) -> bool:
    """RFC 8985's RACK_sent_after: (t1, seq1) was sent after (t2, seq2); equal times (a
    burst on a virtual clock, or a coarse one) are ordered by sequence."""
    return t1 > t2 or (t1 == t2 and seq1 > seq2)


class Rack:
    """One connection's RACK state (RFC 8985 6.1)."""

    __slots__ = (
        "dsack_round", "end_seq", "fack", "reo_wnd_mult", "reo_wnd_persist",
        "reordering_seen", "rtt", "xmit_ts",
    )

    def __init__(self) -> None:
        #: transmit time and end of the most recently sent segment delivered (RACK.xmit_ts,
        #: RACK.end_seq); a negative time: none yet
        self.xmit_ts = -1.0
        self.end_seq = 0
        #: the RTT of that segment (RACK.rtt)
        self.rtt = 0.0
        #: the highest end sequence delivered (RACK.fack)
        self.fack = 0
        #: a segment never retransmitted was delivered below RACK.fack
        self.reordering_seen = False
        #: D-SACK adaptation: the round (SND.NXT) whose D-SACKs are counted already
        self.dsack_round: int | None = None
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = 0

    # --- RFC 8985 6.2 steps 2 and 3 -----------------------------------------------------
    def on_delivered(self, records: Iterable[list], now: float,
                     min_rtt: float | None) -> bool:
        """Segments (transmission records) newly delivered by one ACK. Advances RACK.xmit_ts
        and RACK.rtt to the most recently sent of them (a retransmitted one only when its
        RTT is at least the minimum RTT: else the original may have been what arrived), and
        detects reordering. True when this ACK showed reordering for the first time."""
        newest: list | None = None
        n_sent = 0.0
        n_end = 0
        fack = self.fack
        reordered = False
        for r in records:
            end = r[END]
            retrans = r[RETRANS]
            if end > fack:
                fack = end
            elif end < fack and not retrans:
                reordered = True
            sent = r[SENT]
            if retrans and min_rtt is not None and now - sent < min_rtt:
                continue  # ambiguous: possibly the original, still on its way, was SACKed
            # sent_after(sent, end, newest's), inline: this runs for every delivered record
            if newest is None or sent > n_sent or (sent == n_sent and end > n_end):
                newest = r
                n_sent = sent
                n_end = end
        self.fack = fack
        if newest is not None:
            self.rtt = now - n_sent
            x = self.xmit_ts
            if n_sent > x or (n_sent == x and n_end > self.end_seq):  # sent_after()
                self.xmit_ts = n_sent
                self.end_seq = newest[END]
        if reordered and not self.reordering_seen:
            self.reordering_seen = True
            return True
        return False

    # --- step 4 ---------------------------------------------------------------------------
    def on_dsack(self, snd_una: int, snd_nxt: int) -> None:
        """The ACK carried a D-SACK: widen the window once per round trip that has them."""
        if self.dsack_round is not None and snd_una >= self.dsack_round:
            self.dsack_round = None
        if self.dsack_round is None:
            self.dsack_round = snd_nxt
            self.reo_wnd_mult += 1
            self.reo_wnd_persist = REO_WND_PERSIST

    def on_recovery_end(self) -> None:
        """A fast or timeout recovery ended: after 16 without D-SACKs the window is reset."""
        if self.reo_wnd_persist > 0:
            self.reo_wnd_persist -= 1
        if self.reo_wnd_persist <= 0:
            self.reo_wnd_mult = 1

    def reo_wnd(self, in_recovery: bool, sacked_segs: int, min_rtt: float | None,
                srtt: float | None) -> float:
        """RACK.reo_wnd (RFC 8985 6.2 step 4, Linux's tcp_rack_reo_wnd)."""
        if not self.reordering_seen and (in_recovery or sacked_segs >= DUPTHRESH):
            return 0.0
        if min_rtt is None:
            return 0.0
        wnd = min_rtt / 4 * self.reo_wnd_mult
        if srtt is not None and wnd > srtt:
            wnd = srtt
        return wnd

    # --- step 5 ---------------------------------------------------------------------------
    def detect_loss(self, records: Iterable[list], now: float,
                    reo_wnd: float) -> tuple[list[list], float]:
        """RACK_detect_loss: mark (``LOST``) and return the records sent before RACK.xmit_ts
        whose time is up, and the seconds until the next one's is (0.0: none waiting, so no
        reordering timer). ``records`` in sequence order; the scan stops at the first
        original transmission sent after RACK.xmit_ts (originals leave in sequence order,
        so every later one was sent later still)."""
        lost: list[list] = []
        if self.xmit_ts < 0:
            return lost, 0.0
        xmit_ts = self.xmit_ts
        end_seq = self.end_seq
        deadline = self.rtt + reo_wnd
        wait = 0.0
        for r in records:
            if r[SACKED] or r[LOST]:
                continue
            sent = r[SENT]
            if not sent_after(xmit_ts, end_seq, sent, r[END]):
                if r[RETRANS]:
                    continue  # a retransmission sent later: originals beyond may still be due
                break
            remaining = sent + deadline - now
            if remaining <= 0.0:
                r[LOST] = True
                lost.append(r)
            elif remaining > wait:
                wait = remaining
        return lost, wait


class TailLossProbe:
    """The tail loss probe's state (RFC 8985 7, Linux's tlp_high_seq and tlp_retrans)."""

    __slots__ = ("end_seq", "is_retrans")

    #: what an ACK told about the outstanding probe
    NONE = 0
    #: the probe (new data, or a retransmission that proved unneeded) is done with
    DONE = 1
    #: the probe was a retransmission that repaired a loss: reduce the window
    RECOVERED = 2

    def __init__(self) -> None:
        #: SND.NXT when the probe left; None when no probe is outstanding
        self.end_seq: int | None = None
        self.is_retrans = False

    @staticmethod
    def pto(srtt: float | None, one_segment: bool, rto_min: float, rto_left: float) -> float:
        """The probe timeout (RFC 8985 7.2, with Linux's constants)."""
        if srtt is None:
            pto = PTO_NO_SRTT
        else:
            pto = 2 * srtt + (rto_min if one_segment else PTO_SLACK)
        return rto_left if rto_left < pto else pto

    def sent(self, snd_nxt: int, retransmission: bool) -> None:
        self.end_seq = snd_nxt
        self.is_retrans = retransmission

    def on_ack(self, ack: int, una_advanced: bool, dsack_probe: bool,
               sacked_or_data: bool) -> int:
        """An ACK while a probe is outstanding (RFC 8985 7.4.2, as Linux's
        tcp_process_tlp_ack). ``dsack_probe``: it D-SACKs the probe's data;
        ``sacked_or_data``: it SACKed something new or carried data (not a bare duplicate)."""
        end = self.end_seq
        if end is None or ack < end:
            return self.NONE
        if not self.is_retrans or dsack_probe:
            self.end_seq = None
            return self.DONE
        if ack > end:
            self.end_seq = None
            return self.RECOVERED
        if not una_advanced and not sacked_or_data:
            # a bare duplicate ACK: both the original and the probe arrived
            self.end_seq = None
            return self.DONE
        return self.NONE

    def clear(self) -> None:
        self.end_seq = None
        self.is_retrans = False
