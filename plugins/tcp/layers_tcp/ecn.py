"""Explicit Congestion Notification (RFC 3168) for one connection: negotiation on the SYN
and SYN-ACK, the receiver's echo of CE marks (ECE until the peer's CWR), the sender's
reduction once per window and the CWR that tells the peer.

:class:`Ecn` is a mixin of :class:`layers_tcp.connection.Connection` whose state lives at
class level until ECN is negotiated: a connection without ECN never stores it, which keeps its
attribute dict, and so every attribute access on the receive path, as it was. It owns the ECN
flags of SYNs (:meth:`Ecn._ecn_syn_flags`), the decision to agree, the echo state and the
per-connection counts telemetry reports. It does not build segments: :mod:`layers_tcp.output`
puts ECE on every segment while ``_ece_pending``, CWR on the next new data while
``_cwr_pending`` and ``_ect`` in the IP header of new data; nor does it choose the reduction,
which is the congestion control's ``on_ecn``. Received segments carry the IP header's ECN field
in ``flags`` above the TCP flag bits (:data:`SEG_CE`, :data:`SEG_ECT`, set by ``TCP.receive``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from layers.wire.ipv4 import ECN_ECT0
from layers.wire.tcp import TCP_CWR, TCP_ECE

if TYPE_CHECKING:
    from layers.congestion import CongestionControl
    from layers.counters import Counters
    from layers_tcp.recovery import LossRecovery

#: The received IP header's ECN field, carried in ``flags`` above the nine TCP flag bits
#: (``TCP.receive`` sets them; they never reach the wire): CE, or ECT(0)/ECT(1) unmarked
SEG_CE = 0x200
SEG_ECT = 0x400


class Ecn:
    """RFC 3168 for :class:`layers_tcp.connection.Connection` (see the module docstring)."""

    if TYPE_CHECKING:
        # the TCB fields ECN reads and writes: the connection's (connection.py)
        c: Counters
        tcp: Any
        retries: int
        snd_una: int
        snd_max: int
        cc: CongestionControl
        recovery: LossRecovery
        _ack_now: bool

    # Defaults at class level: a connection without ECN never stores them, which keeps its
    # attribute dict (and so every attribute access on the receive path) as it was.
    #: 0 off, 1 request and accept, 2 accept only (tcp.ecn, the ecn= option)
    _ecn_mode = 0
    #: both ends agreed to ECN on the SYN and SYN-ACK
    ecn_ok = False
    #: our SYN asked for ECN (ECE|CWR)
    _ecn_requested = False
    #: the ToS byte of new data segments: ECT(0) once ECN is agreed, else 0
    _ect = 0
    #: receiver: a CE mark arrived, ECE goes on every segment until the peer sends CWR
    _ece_pending = False
    #: sender: the next new data segment carries CWR (we reduced for an ECE)
    _cwr_pending = False
    #: sender: no new reduction for ECE until SND.UNA passes this (once per window)
    _ecn_high = -1
    #: this connection's share of ECNReductions and ECNCEReceived (for telemetry)
    ecn_reductions = 0
    ecn_ce_received = 0

    def _ecn_syn_flags(self, ack: bool) -> int:
        """The ECN-setup flags of our SYN (ECE|CWR) or SYN-ACK (ECE) (RFC 3168 6.1.1)."""
        if ack:
            return TCP_ECE if self.ecn_ok else 0
        if self._ecn_mode != 1:
            return 0
        if self.retries and self.tcp.settings.ecn_fallback:
            # RFC 3168 6.1.1.1: a SYN that may have been dropped for its ECN flags goes
            # again without them (a SYN-ACK that agrees is still taken, as Linux does)
            return 0
        self._ecn_requested = True
        return TCP_ECE | TCP_CWR

    def _ecn_accept_syn(self, flags: int) -> None:
        """A SYN asks for ECN with ECE and CWR both set; one that itself arrived ECT or CE
        is refused, as Linux does (a SYN must be Not-ECT: the path rewrites the field)."""
        want = TCP_ECE | TCP_CWR
        self._ecn_agreed(flags & want == want and not flags & (SEG_ECT | SEG_CE))

    def _ecn_agreed(self, ok: bool) -> None:
        if ok:
            self.ecn_ok = True
            self._ect = ECN_ECT0
        elif self._ecn_requested:
            self.c["ECNRefusedByPeer"] += 1

    def _ecn_received(self, flags: int, dlen: int) -> None:
        """An acceptable segment with CWR or a CE mark on an ECN connection."""
        c = self.c
        if flags & TCP_CWR:
            # the sender reduced: stop echoing (a CE on this same segment starts it again)
            c["ECNCWRReceived"] += 1
            self._ece_pending = False
            if dlen:
                self._ack_now = True  # Linux acknowledges CWR data at once
        if flags & SEG_CE and dlen:
            c["ECNCEReceived"] += 1
            self.ecn_ce_received += 1
            if not self._ece_pending:
                self._ece_pending = True
                self._ack_now = True  # the sender learns of the mark without the delay

    def _ecn_echo(self, ack: int, now: float) -> bool:
        """An ACK with ECE: tell the congestion control at most once per window of data
        (RFC 3168 6.1.2), never during loss recovery or the window after a timeout (they
        reduced already), and put CWR on the next new data. True when it reduced."""
        una = ack if ack > self.snd_una else self.snd_una
        # the last reduction's window ends when something above its SND.MAX is acknowledged:
        # only then has the peer seen our CWR (which went on the first byte after it)
        rec = self.recovery
        if rec.in_recovery or una <= self._ecn_high or una < rec.recover:
            return False
        self._ecn_high = self.snd_max
        self._cwr_pending = True
        self.c["ECNReductions"] += 1
        self.ecn_reductions += 1
        self.cc.on_ecn(self.snd_max - self.snd_una, now)  # in flight (after this ACK)
        return True
