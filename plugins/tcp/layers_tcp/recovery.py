"""Loss recovery, sans-IO: what the sender does once data may be lost, the same for every
congestion control.

:class:`LossRecovery` owns the recovery state of one connection and the rules that change it:

* fast recovery (RFC 5681 3.2, RFC 6675 5) entered on the third duplicate ACK, when RFC
  6675's IsLost marks a hole on the SACK scoreboard, or when RACK (RFC 8985,
  :mod:`layers_tcp.rack`) deems a segment lost; RFC 6582's ``recover`` point (no second
  reduction for losses in the window already being recovered) and its partial-ACK rule (the
  next unacknowledged segment is lost too; without SACK it goes at once) - NewReno's recovery
  bookkeeping, which every algorithm gets (:mod:`layers_tcp.newreno` only chooses numbers);
* proportional rate reduction (RFC 6937, :class:`Prr`) setting ``cwnd`` on each ACK in
  recovery, and the retransmissions it allows (RFC 6675's NextSeg rules 1 and 3);
* the retransmission timeout's loss handling (go-back-N from SND.UNA, the scoreboard kept or
  forgotten) and F-RTO (RFC 5682, SACK-enhanced as Linux's tcp_process_loss);
* undoing a spurious response: Eifel timestamps (RFC 3522), F-RTO, and D-SACKs for every
  retransmission (RFC 3708, :class:`layers_tcp.dsack.UndoLedger`);
* RACK's marking and reordering timer, and the tail loss probe (RFC 8985 7);
* the counts of lost segments and bytes that rate samples and telemetry report.

It does not own the TCB: sequence numbers, windows, the send buffer, the SACK scoreboard
(:mod:`layers_tcp.sack`), the RTT estimator and the timers' deadlines are the connection's
(:mod:`layers_tcp.connection`), which it reads and, for SND.NXT, the deadlines ``rto_at``,
``reo_at`` and ``pto_at`` and the scoreboard's marks, writes. It builds no segment: what it
sends goes through the connection's ``_send_range`` (:mod:`layers_tcp.output`). The connection
calls it on each ACK that matters to it (:meth:`on_dupack`, :meth:`partial_ack`,
:meth:`on_dsack`, :meth:`eifel`, :meth:`frto_ack`, :meth:`on_probe_ack`), on the timers
(:meth:`on_rto`, :meth:`on_pto`, :meth:`rack_mark`) and when it may send
(:meth:`retransmit_lost`); the common ACK with no loss in sight tests a few flags here
(``in_recovery``, ``in_loss``, ``frto``, ``rack``, ``tlp``) and calls nothing. What it needs of
the connection is :class:`RecoveryHost`, so a test drives it with no stack and no loop
(``tests/tcp/test_tcp_recovery_unit.py``).

Without SACK, each duplicate ACK stands for one segment that left the network (RFC 6675 and
RFC 6937 both say so), counted in :attr:`Scoreboard.dup_bytes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from layers_tcp.dsack import UndoLedger
from layers_tcp.rack import PTO_NO_SRTT, PTO_SLACK, Rack, TailLossProbe
from layers_tcp.rate import END, RETRANS, START, RateEstimator
from layers_tcp.sack import DUPTHRESH, Scoreboard
from layers_tcp.states import HALF, MASK, SENDING

if TYPE_CHECKING:
    from layers.congestion import CongestionControl
    from layers.counters import Counters
    from layers_tcp.buffers import SendBuffer
    from layers_tcp.rtt import RttEstimator
    from layers_tcp.states import State

#: a window at or above this is "not yet set" (ssthresh starts at infinity, as 1 << 30 here)
_UNSET = 1 << 30


class Prr:
    """Proportional rate reduction (RFC 6937) for one recovery episode."""

    __slots__ = ("delivered", "out", "recover_fs")

    def __init__(self) -> None:
        self.delivered = 0
        self.out = 0
        self.recover_fs = 1

    def start(self, flight: int) -> None:
        self.delivered = 0
        self.out = 0
        self.recover_fs = flight if flight > 0 else 1

    def sndcnt(self, delivered: int, pipe: int, ssthresh: int, mss: int) -> int:
        """Bytes that may be sent in answer to an ACK that delivered ``delivered`` bytes."""
        self.delivered += delivered
        if pipe > ssthresh:
            # proportional part: -(-a // b) is ceil(a / b)
            n = -(-self.delivered * ssthresh // self.recover_fs) - self.out
        else:
            # slow-start reduction bound (PRR-SSRB)
            limit = self.delivered - self.out
            if delivered > limit:
                limit = delivered
            limit += mss
            n = ssthresh - pipe
            if limit < n:
                n = limit
        return n if n > 0 else 0


class RecoveryHost(Protocol):
    """What loss recovery reads and writes of its connection (the TCB and its sender)."""

    c: Counters
    stack: Any
    tcp: Any
    state: State
    snd_una: int
    snd_nxt: int
    snd_max: int
    snd_wnd: int
    buf_seq: int
    sndbuf: SendBuffer
    fin_queued: bool
    mss: int
    sack_ok: bool
    ts_ok: bool
    sb: Scoreboard
    cc: CongestionControl
    rtt: RttEstimator
    rtt_seq: int | None
    rate: RateEstimator
    min_rtt: float | None
    pace_next: float
    rto_at: float | None
    reo_at: float | None
    pto_at: float | None

    def _in_flight(self) -> int: ...

    def _rto(self) -> float: ...

    def _ts_now(self) -> int: ...

    def _send_range(self, seq: int, n: int, *, retransmit: bool) -> None: ...

    def _pace_later(self) -> None: ...


class LossRecovery:
    """One connection's loss recovery (see the module docstring)."""

    __slots__ = (
        "_ledger",
        "_prr",
        "c",
        "conn",
        "dupacks",
        "force_rexmit",
        "frto",
        "frto_rexmit_end",
        "frto_send",
        "in_loss",
        "in_recovery",
        "lost_total",
        "newly_lost",
        "rack",
        "recover",
        "tlp",
        "undo_ts",
    )

    def __init__(self, conn: RecoveryHost) -> None:
        self.conn = conn
        self.c = conn.c
        #: fast recovery (RFC 6582/6675) is under way, until SND.UNA reaches ``recover``
        self.in_recovery = False
        #: a retransmission timeout's go-back-N is under way, until SND.UNA reaches ``recover``
        self.in_loss = False
        #: RFC 6582's recover point: SND.MAX when the current episode began
        self.recover = 0
        self.dupacks = 0
        #: proportional rate reduction during fast recovery (RFC 6937): :attr:`prr`, made
        #: at the first recovery (most connections never have one)
        self._prr: Prr | None = None
        #: the first retransmission of fast recovery must go whatever PRR allows
        self.force_rexmit = False
        #: the timestamp value of the first retransmission of the current loss episode;
        #: an ACK echoing an older one shows the episode was spurious (Eifel, RFC 3522)
        self.undo_ts: int | None = None
        #: the retransmissions of the current loss episode no D-SACK has reported yet: when
        #: all have been, the episode was spurious (RFC 3708, Linux's undo_retrans);
        #: :attr:`ledger`, made at the first loss episode
        self._ledger: UndoLedger | None = None
        #: F-RTO (RFC 5682): 0 off; 1 the first ACK after a timeout is awaited (step 2);
        #: 2 new data went out after it, the next ACK decides (step 3)
        self.frto = 0
        #: the end of what the timeout's go-back-N retransmitted: data above it (and below
        #: ``recover``) acknowledged or SACKed was never retransmitted, so the originals arrived
        self.frto_rexmit_end = 0
        #: step 2b's new data is due once the ACK is processed
        self.frto_send = False
        #: the RACK state and the tail loss probe's, on SACK connections with
        #: tcp.recovery=rack (:meth:`use_rack`)
        self.rack: Rack | None = None
        self.tlp: TailLossProbe | None = None
        #: bytes marked lost since the last rate sample (its ``newly_lost``)
        self.newly_lost = 0
        #: segments deemed lost, this connection
        self.lost_total = 0

    @property
    def prr(self) -> Prr:
        prr = self._prr
        if prr is None:
            prr = self._prr = Prr()
        return prr

    @property
    def ledger(self) -> UndoLedger:
        ledger = self._ledger
        if ledger is None:
            ledger = self._ledger = UndoLedger()
        return ledger

    def use_rack(self) -> None:
        """RACK-TLP (RFC 8985) as the loss detector (it needs SACK; without it duplicate ACKs
        are counted)."""
        self.rack = Rack()
        self.tlp = TailLossProbe()

    def release(self) -> None:
        """TIME-WAIT: nothing is in flight nor will be, so no loss to detect; RACK's and the
        probe's state, PRR's and the undo ledger go (``lost_total`` stays for reports)."""
        self.rack = None
        self.tlp = None
        self._prr = None
        self._ledger = None

    # --- entering and leaving ---------------------------------------------------------
    def on_dupack(self, now: float, newly_sacked: int) -> int:
        """A duplicate ACK (RFC 5681), or one that SACKs new data (RFC 6675): count it, mark
        what the scoreboard deems lost, enter fast recovery when due. Returns the bytes it
        stands for as delivered (the SACKed ones, or without SACK one segment)."""
        conn = self.conn
        self.dupacks += 1
        self.c["DupAcksIn"] += 1
        sb = conn.sb
        mss = conn.mss
        una = conn.snd_una
        lost_before = sb.lost_bytes(una)
        delivered = newly_sacked
        if not conn.sack_ok and not self.in_loss:
            # one segment has left the network (RFC 5681 3.2 step 4; RFC 6675 for Reno)
            room = conn.snd_max - una - mss - sb.dup_bytes
            delivered = mss if mss < room else max(room, 0)
            sb.dup_bytes += delivered
        lost = False
        if self.rack is not None:
            pass  # RACK decides, from the records this ACK delivered (rack_mark)
        elif conn.sack_ok and sb.ranges:
            sb.update_lost(una, mss)
            lost = sb.lost_end > una
            if sb.rexmit and sb.lost_retransmits(mss):
                self.c["LostRetransmits"] += 1
        if (
            self.rack is None and not self.in_recovery and not self.in_loss
            and (self.dupacks >= DUPTHRESH or lost)
            # RFC 6582 3.2 step 2: not again for losses in the window already recovered
            and una >= self.recover
        ):
            self.enter_recovery(now)
        self.lost_marked(lost_before)
        return delivered

    def enter_recovery(self, now: float) -> None:
        """Loss detected by duplicate ACKs, SACK or RACK (RFC 5681 3.2, RFC 6675 5): the
        algorithm chooses ``ssthresh``; PRR brings what is in flight down to it."""
        conn = self.conn
        una = conn.snd_una
        flight = conn.snd_max - una
        sb = conn.sb
        self.in_recovery = True
        self.recover = conn.snd_max
        self.c["FastRetransmits"] += 1
        if not sb.rexmit:
            # (retransmissions of the last episode still in flight are not sent again, and
            # their stamp stays the one an undo must predate, as Linux's retrans_stamp)
            self.undo_ts = None
        self.ledger.start(una)
        # the first un-SACKed segment is lost (the fast retransmit), and RFC 6675's rule
        if sb.lost_end < una + conn.mss:
            sb.lost_end = una + conn.mss
        self.prr.start(flight)
        self.force_rexmit = True
        if self.tlp is not None:
            # the reduction covers a probe's loss too (Linux clears tlp_high_seq here)
            self.tlp.clear()
            conn.pto_at = None
        conn.cc.on_enter_recovery(flight, now)
        conn.rto_at = now + conn._rto()

    def partial_ack(self, newly_acked: int, delivered: int) -> None:
        """An ACK in fast recovery below ``recover``: RFC 6582 3.2 step 5 (a partial ACK: the
        next unacknowledged segment is lost too, and without SACK it goes at once), then PRR
        sets ``cwnd`` (RFC 6937)."""
        conn = self.conn
        mss = conn.mss
        sb = conn.sb
        if newly_acked and self.rack is None:
            una = conn.snd_una
            head = una + mss
            if head > sb.lost_end:
                before = sb.lost_bytes(una)
                sb.lost_end = head
                self.lost_marked(before)
            if not conn.sack_ok:
                self.force_rexmit = True
        cc = conn.cc
        in_flight = conn._in_flight()
        sndcnt = self.prr.sndcnt(delivered, in_flight, cc.ssthresh, mss)
        if self.force_rexmit and sndcnt < mss:
            sndcnt = mss  # room for the retransmission that must go (as Linux)
        cc.cwnd = in_flight + sndcnt

    def end_loss(self) -> None:
        """SND.UNA reached ``recover`` after a timeout: its go-back-N is over."""
        self.in_loss = False
        self.undo_ts = None
        self.frto = 0
        if self.rack is not None:
            self.rack.on_recovery_end()

    def exit_recovery(self, now: float) -> None:
        """Everything outstanding when recovery began is acknowledged (RFC 6582 3.2 step 3):
        the window ends at ``ssthresh`` (RFC 6937), the algorithm may then set its own."""
        conn = self.conn
        cc = conn.cc
        sb = conn.sb
        self.in_recovery = False
        self.dupacks = 0
        # the scoreboard stays: SACKed ranges, losses and retransmissions above the new
        # SND.UNA belong to the next episode (clearing it would count them again)
        sb.dup_bytes = 0
        if not sb.rexmit:
            self.undo_ts = None
        self.force_rexmit = False
        if cc.ssthresh < _UNSET:
            cc.cwnd = cc.ssthresh
        cc.on_exit_recovery(conn.snd_max - conn.snd_una, now)
        if self.rack is not None:
            self.rack.on_recovery_end()

    def lost_marked(self, before: int) -> None:
        """Count what the scoreboard newly deems lost (it had ``before`` lost bytes)."""
        conn = self.conn
        newly = conn.sb.lost_bytes(conn.snd_una) - before
        if newly > 0:
            self.newly_lost += newly
            self.lost_total += -(-newly // conn.mss)

    def on_retransmit(self, seq: int, end: int, segs: int) -> None:
        """A retransmission of [seq, end) during recovery or a timeout's go-back-N: the
        undo markers (Eifel's stamp, the D-SACK ledger) and F-RTO's extent."""
        if self.undo_ts is None:
            self.undo_ts = self.conn._ts_now()  # Eifel: the first retransmission's stamp
        self.ledger.add(seq, end, segs)
        if end > self.frto_rexmit_end:
            self.frto_rexmit_end = end

    # --- the timeout ---------------------------------------------------------------------
    def on_rto(self, now: float, retries: int, frto: bool) -> None:
        """The retransmission timer expired with data outstanding (the ``retries``-th time in
        a row): everything not SACKed is deemed lost, the algorithm reduces
        (``on_timeout``), go-back-N resends from SND.UNA, and F-RTO (``frto``: tcp.frto)
        watches the first timeout of an episode (RFC 5682 2.1 step 1)."""
        conn = self.conn
        una = conn.snd_una
        mss = conn.mss
        conn.reo_at = None
        conn.pto_at = None
        if self.tlp is not None:
            self.tlp.clear()
        flight = conn.snd_max - una
        new_episode = not self.in_recovery and not self.in_loss
        if new_episode:
            self.undo_ts = None  # a new episode (else the first retransmission stays)
            self.ledger.start(una)
        sb = conn.sb
        # everything outstanding and not SACKed is deemed lost
        self.lost_total += max(1, (flight - sb.sacked_bytes + mss - 1) // mss)
        # a timeout ends fast recovery without on_exit_recovery: on_timeout says it all
        self.in_recovery = False
        self.force_rexmit = False
        self.in_loss = True
        self.recover = conn.snd_max
        self.dupacks = 0
        if retries > 1 or (sb.ranges and sb.ranges[0][0] <= una):
            # SACKed data the receiver has not acknowledged at a timeout, or a second timeout:
            # it may have reneged (RFC 2018 8); forget the scoreboard and resend everything
            sb.clear()
            conn.rate.forget()
        else:
            # keep what the peer holds (as Linux does): go-back-N skips it, and it is not
            # counted as delivered twice
            sb.rexmit = []
            sb.dup_bytes = 0
            sb.lost_end = conn.snd_max
        conn.cc.on_timeout(flight, now)
        conn.rtt.back_off()
        conn.rtt_seq = None
        # go back N: resend from the first unacknowledged byte
        buf_end = conn.buf_seq + conn.sndbuf.size
        n = min(mss, max(buf_end - una, 0))
        conn.snd_nxt = una  # nothing is in flight now: the retransmission starts a flight
        conn._send_range(una, n, retransmit=True)
        # (SND.UNA read again: over a synchronous link the answer may be in already)
        now_una = conn.snd_una
        buf_end = conn.buf_seq + conn.sndbuf.size
        conn.snd_nxt = now_una + n + (1 if conn.fin_queued and now_una + n == buf_end else 0)
        self.frto = 1 if new_episode and frto and conn.snd_nxt < conn.snd_max else 0
        self.frto_rexmit_end = una + n

    # --- undo ------------------------------------------------------------------------------
    def eifel(self, ack: int, tsecr: int, now: float) -> None:
        """An ACK that advanced SND.UNA echoing ``tsecr`` while a first retransmission's stamp
        is kept: if it echoes an older one, the original arrived and the retransmissions were
        spurious (Eifel, RFC 3522)."""
        undo_ts = self.undo_ts
        if (
            undo_ts is not None and ((tsecr - undo_ts) & MASK) >= HALF
            # a partial ACK proves one hole was reordering, not that the others were: with
            # retransmissions still out it undoes nothing (Linux's tcp_try_undo_partial)
            and not (self.in_recovery and ack < self.recover and self.conn.sb.rexmit)
        ):
            self.undo(ack, now)

    def undo(self, ack: int, now: float, *, dsack: bool = False) -> None:
        """The last congestion response was spurious (found by timestamps, RFC 3522; by
        F-RTO, RFC 5682; or by D-SACKs for every retransmission, RFC 3708): restore the
        window (RFC 4015's response: carry on with new data)."""
        c = self.c
        conn = self.conn
        self.undo_ts = None
        self.ledger.clear()
        if self.in_loss:
            c["SpuriousRTOs"] += 1
            c["LossUndo"] += 1
            self.in_loss = False
            self.frto = 0
            # resume after the highest byte sent rather than resend what arrived
            conn.snd_nxt = conn.snd_max
            conn.rtt.reset_backoff()
        elif self.in_recovery:
            c["DSACKUndo" if dsack else "FullUndo" if ack >= self.recover else "PartialUndo"] += 1
            self.exit_recovery(now)
        elif dsack:
            # the D-SACKs came after the recovery ended (Linux's tcp_try_undo_dsack)
            c["DSACKUndo"] += 1
        else:
            return
        conn.cc.on_undo(now)

    def on_dsack(self, a: int, b: int, now: float) -> None:
        """The peer reported [a, b) received twice (RFC 2883)."""
        conn = self.conn
        self.c["DSACKRecv"] += 1
        rack = self.rack
        if rack is not None:
            rack.on_dsack(conn.snd_una, conn.snd_nxt)
            if not rack.reordering_seen and self.ledger.overlaps(a, b):
                # a retransmission both of whose copies arrived: the original was reordered,
                # not lost (Linux takes a D-SACK below the highest SACK as reordering)
                rack.reordering_seen = True
                self.c["SACKReorder"] += 1
        if self.ledger.dsack(a, b):
            # every retransmission of the episode arrived twice: none was needed
            self.undo(conn.snd_una, now, dsack=True)

    # --- F-RTO (RFC 5682, SACK-enhanced as Linux's tcp_process_loss) ----------------------
    def frto_acked_originals(self, una: int, ack: int) -> bool:
        """Whether the ACK from ``una`` to ``ack`` covers data sent before the timeout, never
        retransmitted and not SACKed before: the originals arrived (F-RTO's sign, 3.1)."""
        sb = self.conn.sb
        lo = max(una, self.frto_rexmit_end)
        hi = min(ack, self.recover)
        return hi > lo and hi - lo > sb.sacked_below(hi) - sb.sacked_below(lo)

    def frto_sacked(self) -> int:
        """Bytes SACKed above what the timeout retransmitted and below ``recover``: when an
        ACK's SACK blocks make it grow, originals arrived."""
        sb = self.conn.sb
        return sb.sacked_below(self.recover) - sb.sacked_below(self.frto_rexmit_end)

    def frto_ack(self, ack: int, advanced: bool, orig: bool, dup_or_sacked: bool,
                 now: float) -> None:
        """An ACK during a timeout's recovery with F-RTO under way."""
        conn = self.conn
        if orig and not (not conn.sack_ok and self.frto == 1 and ack >= self.recover):
            # data sent before the timeout and never retransmitted was (S)ACKed: it was not
            # lost, the timeout was spurious (step 3b; Linux takes it from any such ACK).
            # Without SACK, a first ACK that covers everything is ambiguous (step 2a).
            self.undo(ack, now)
            return
        if self.frto == 2:
            if dup_or_sacked:
                # step 3a: a duplicate ACK or SACK after the new data: the loss was real,
                # go back to the first unacknowledged byte
                self.frto = 0
                conn.snd_nxt = conn.snd_una
            return
        if advanced and ack < self.recover:
            # step 2b: only retransmitted data acknowledged; send new data, not the rest
            # of the flight, and let the next ACK tell
            snd_max = conn.snd_max
            buf_end = conn.buf_seq + conn.sndbuf.size
            if buf_end > snd_max and conn.snd_una + conn.snd_wnd > snd_max:
                self.frto = 2
                self.frto_send = True  # frto_new_data, once this ACK is processed
                conn.snd_nxt = snd_max
                return
        self.frto = 0  # step 2a: conventional recovery

    def frto_new_data(self) -> None:
        """F-RTO step 2b: up to two segments of new data, whatever the window (RFC 5682)."""
        self.frto_send = False
        conn = self.conn
        mss = conn.mss
        buf_end = conn.buf_seq + conn.sndbuf.size
        for _ in range(2):
            nxt = conn.snd_max
            n = min(mss, buf_end - nxt, conn.snd_una + conn.snd_wnd - nxt)
            if n <= 0:
                break
            conn._send_range(nxt, n, retransmit=False)
            end = nxt + n + (1 if conn.fin_queued and nxt + n == buf_end else 0)
            conn.snd_nxt = end
            if end > conn.snd_max:
                conn.snd_max = end

    # --- RACK-TLP (RFC 8985; layers_tcp.rack) ----------------------------------------------
    def rack_mark(self, now: float) -> None:
        """RACK_detect_loss_and_arm_timer: mark what RACK deems lost on the scoreboard, enter
        recovery for it, and arm the reordering timer for what is not yet due."""
        conn = self.conn
        sb = conn.sb
        rack = self.rack
        if rack is None or not (sb.ranges or self.in_recovery or sb.rexmit):
            conn.reo_at = None  # nothing delivered out of order: nothing RACK can call lost
            return
        reo = rack.reo_wnd(self.in_recovery, sb.sacked_bytes // conn.mss, conn.min_rtt,
                           conn.rtt.srtt)
        lost, wait = rack.detect_loss(conn.rate.records, now, reo)
        conn.reo_at = now + wait if wait > 0.0 else None
        if not lost:
            return
        before = sb.lost_bytes(conn.snd_una)
        for r in lost:
            a = r[START]
            b = r[END]
            if r[RETRANS] and sb.rexmit:
                # the retransmission is lost too: its range may go again
                kept = [x for x in sb.rexmit if x[1] <= a or x[0] >= b]
                if len(kept) != len(sb.rexmit):
                    sb.rexmit = kept
                    self.c["LostRetransmits"] += 1
            if b > sb.lost_end:
                sb.lost_end = b
        self.lost_marked(before)
        if not self.in_recovery:
            # (no RFC 6582 "recover" test: RACK's losses are proven, as Linux's lost_out)
            self.enter_recovery(now)

    def schedule_tlp(self, now: float) -> None:
        """Arm the probe timeout after new data or an ACK (RFC 8985 7.2): outside recovery,
        nothing SACKed, something in flight, no probe outstanding."""
        conn = self.conn
        tlp = self.tlp
        rto_at = conn.rto_at
        if (
            tlp is None or tlp.end_seq is not None or rto_at is None or self.in_recovery
            or self.in_loss or conn.sb.ranges or conn.snd_una >= conn.snd_max
        ):
            conn.pto_at = None
            return
        # TailLossProbe.pto(), inline: this runs after every ACK and every burst
        srtt = conn.rtt.srtt
        if srtt is None:
            pto = PTO_NO_SRTT
        elif conn.snd_max - conn.snd_una <= conn.mss:
            pto = 2 * srtt + conn.tcp.settings.rto_min
        else:
            pto = 2 * srtt + PTO_SLACK
        left = rto_at - now
        conn.pto_at = now + (left if left < pto else pto)

    def on_pto(self, now: float) -> None:
        """The probe timeout (RFC 8985 7.3): one segment of new data if the peer's window
        takes it (whatever cwnd says, as Linux), else the last segment again; then the RTO
        runs from now."""
        conn = self.conn
        conn.pto_at = None
        tlp = self.tlp
        if (
            tlp is None or tlp.end_seq is not None or self.in_recovery or self.in_loss
            or conn.snd_una >= conn.snd_max or conn.state not in SENDING
        ):
            return
        mss = conn.mss
        buf_end = conn.buf_seq + conn.sndbuf.size
        nxt = conn.snd_nxt
        n = min(mss, buf_end - nxt, conn.snd_una + conn.snd_wnd - nxt)
        if n > 0 and nxt == conn.snd_max:
            conn._send_range(nxt, n, retransmit=False)
            end = nxt + n + (1 if conn.fin_queued and nxt + n == buf_end else 0)
            conn.snd_nxt = end
            if end > conn.snd_max:
                conn.snd_max = end
            tlp.sent(conn.snd_max, False)
        else:
            data_end = min(conn.snd_max, buf_end)
            start = max(conn.snd_una, data_end - mss)
            if data_end > start:
                conn._send_range(start, data_end - start, retransmit=True)
            elif conn.fin_queued:
                conn._send_range(buf_end, 0, retransmit=True)  # the FIN alone
            else:
                return
            tlp.sent(conn.snd_max, True)
        self.c["LossProbes"] += 1
        conn.pto_at = None
        conn.rto_at = now + conn._rto()

    def on_probe_ack(self, ack: int, advanced: bool, dsack: tuple[int, int] | None,
                     news: bool, now: float) -> None:
        """An ACK while a tail loss probe is outstanding (RFC 8985 7.4): ``advanced`` it moved
        SND.UNA, ``dsack`` its D-SACK block, ``news`` it SACKed new data or carried data."""
        tlp = self.tlp
        probe = tlp.end_seq if tlp is not None else None
        if tlp is None or probe is None:
            return
        outcome = tlp.on_ack(
            ack, advanced, dsack is not None and dsack[0] < probe <= dsack[1] + 1, news)
        if outcome == TailLossProbe.RECOVERED:
            self._tlp_recovered(now)

    def _tlp_recovered(self, now: float) -> None:
        """The probe retransmitted a segment that was lost (RFC 8985 7.4.2): the loss was
        repaired without recovery, but the window is reduced as for one (as Linux does with
        a CWR episode)."""
        conn = self.conn
        self.c["LossProbeRecovery"] += 1
        cc = conn.cc
        cc.on_enter_recovery(conn._in_flight(), now)
        if cc.ssthresh < _UNSET:
            cc.cwnd = max(cc.ssthresh, conn.mss)
        cc.on_exit_recovery(conn._in_flight(), now)

    # --- what to resend --------------------------------------------------------------------
    def retransmit_lost(self) -> None:
        """Fast recovery's retransmissions (RFC 6675 NextSeg rules 1 and 3), as far as PRR
        allows; the first one goes regardless (the fast retransmit, or RFC 6582's
        retransmission on a partial ACK without SACK)."""
        conn = self.conn
        sb = conn.sb
        mss = conn.mss
        cc = conn.cc
        end_data = conn.buf_seq + conn.sndbuf.size
        room = cc.cwnd - conn._in_flight()
        rwnd_end = conn.snd_una + conn.snd_wnd
        while True:
            una = conn.snd_una
            hole = sb.next_hole(una, True)
            if hole is None:
                if not conn.sack_ok or conn.snd_nxt < end_data or (
                    conn.fin_queued and conn.snd_nxt == end_data
                ) or self.rack is not None:
                    # new data first (rule 2), via _output; RACK retransmits only what it
                    # deemed lost (a hole may be reordering still in its window)
                    return
                hole = sb.next_hole(una, False)  # rule 3
                if hole is None:
                    return
            start, end = hole
            n = min(mss, end - start, end_data - start)
            if n <= 0:
                return
            if not self.force_rexmit:
                if room < n or start + n > max(rwnd_end, una + mss):
                    return
                if cc.pacing_rate and conn.pace_next > conn.stack.now:
                    conn._pace_later()
                    return
            self.force_rexmit = False
            conn._send_range(start, n, retransmit=True)
            if start == una:
                # the head went again: the timer restarts from it (RFC 6298 5.1, as Linux's
                # tcp_xmit_retransmit_queue), or a retransmission lost once leaves the
                # RTO to fire before the second try had an RTT to arrive
                conn.rto_at = conn.stack.now + conn._rto()
            room -= n
