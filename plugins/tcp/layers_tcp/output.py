"""The sender side of a connection: what leaves, when, and how each segment is built.

:class:`Output` is a mixin of :class:`layers_tcp.connection.Connection` (a mixin, not a
component with a back-reference: every segment reads and writes some thirty TCB fields, and the
per-segment path is where an extra attribute load per field would show in
``tests/tcp/bench_tcp_rx_cost.py``). It owns:

* **what to send and when** (:meth:`Output._output`): the send and congestion windows (RFC
  6675's pipe, :meth:`Output._in_flight`), Nagle (RFC 896/1122), sender SWS avoidance and the
  persist timer's deadline (RFC 9293 3.8.6.2.1), pacing (:mod:`layers_tcp.pacing`), TSO bursts;
  the send-buffer ranges and SND.NXT/SND.MAX bookkeeping of each transmission
  (:meth:`Output._send_range`), where the rate estimator and the congestion control hear of it;
* **building each segment** (:meth:`Output._send`): the ACK field, the advertised window
  (receiver SWS avoidance, RFC 9293 3.8.6.2.2, never shrinking, RFC 7323 2.4), the timestamp
  and SACK/D-SACK options (RFC 7323, 2018, 2883), ECE/CWR, the header through
  :data:`layers.wire.tcp.TCP_HEADER` and its named offsets, the checksum with
  :mod:`layers.wire.checksum` (computed over header, options and data without building them
  first) or left to the link with a :class:`layers.links.base.TxOffload` descriptor (checksum
  offload, TSO as ``GSO_TCPV4``/``GSO_TCPV6``);
* **the per-connection template**, set once when the route is known
  (:meth:`Output._setup_route`): the pseudo-header and port words of the checksum, the IP
  header length of the family, the offload descriptors, the window scale we offer; and the SYN's
  options.

It does not decide what is lost or resent in recovery (:mod:`layers_tcp.recovery`, which calls
:meth:`Output._send_range`), ECN's state (:mod:`layers_tcp.ecn`), or anything about received
segments (:mod:`layers_tcp.connection`).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from layers.links.base import GSO_TCPV4, GSO_TCPV6, TxOffload
from layers.wire.checksum import fold, ones_sum
from layers.wire.ipv4 import IPV4_MAX_TOTAL_LENGTH, IPV4_MIN_HLEN, PROTO_TCP
from layers.wire.ipv6 import IPV6_HLEN
from layers.wire.tcp import (
    TCP_ACK,
    TCP_CSUM_OFFSET,
    TCP_CWR,
    TCP_ECE,
    TCP_FIN,
    TCP_HEADER,
    TCP_MAX_OPTIONS,
    TCP_MAX_WINDOW,
    TCP_MAX_WSCALE,
    TCP_MIN_HLEN,
    TCP_MIN_MSS,
    TCP_PSH,
    TCP_RST,
    TCP_SACK_BLOCK,
    TCP_SACK_BLOCK_LEN,
    TCP_SACK_HLEN,
    TCP_SACK_PREFIX,
    TCP_SYN,
    TCP_TS_OPTION,
    TCP_TS_OPTION_LEN,
    TCP_TS_PREFIX,
    TCP_TS_PREFIX_SUM,
    syn_options,
)
from layers_tcp.pacing import departure_after, paced_burst
from layers_tcp.states import MASK, SENDING, SYN_SENT

if TYPE_CHECKING:
    from collections.abc import Callable

    from layers.congestion import CongestionControl
    from layers.counters import Counters
    from layers.interface import Interface
    from layers_tcp.buffers import Reassembly, SendBuffer
    from layers_tcp.protocol import TCP, ConnOptions
    from layers_tcp.rate import RateEstimator
    from layers_tcp.recovery import LossRecovery
    from layers_tcp.rtt import RttEstimator
    from layers_tcp.sack import Scoreboard
    from layers_tcp.states import State

#: the data offset (header length in 32-bit words) sits in the top four bits of the 16-bit
#: word it shares with the flags: ``(hlen // 4) << 12``, which is ``hlen << 10``
_DOFF_SHIFT = 10
#: timestamps tick in milliseconds (RFC 7323 5.4 allows 1 ms to 1 s)
TS_HZ = 1000
_SENDING = SENDING
#: the header and the timestamp option alone (NOP, NOP, kind, length, TSval, TSecr) in one pack
_HEADER_TS = struct.Struct(TCP_HEADER.format + TCP_TS_OPTION.format.lstrip("!"))
#: the checksum offload of every segment over IPv4 or IPv6 (frozen: one each for all)
_CSUM_OFFLOADS = {
    hlen: TxOffload(csum_start=hlen, csum_offset=TCP_CSUM_OFFSET)
    for hlen in (IPV4_MIN_HLEN, IPV6_HLEN)
}


class Output:
    """The sender side of :class:`layers_tcp.connection.Connection` (see the module
    docstring)."""

    if TYPE_CHECKING:
        # the TCB fields this side reads and writes: the connection's (connection.py)
        stack: Any
        _clock: Any
        tcp: TCP
        c: Counters
        opts: ConnOptions
        state: State
        local: int
        lport: int
        remote: int
        rport: int
        nodelay: bool
        _pseudo: int
        _csum_base: int
        _ip_hlen: int
        _ip: Any
        _send_pieces: Callable[..., bool]
        _gso_max: int
        _tx_csum: bool
        _csum_offload: TxOffload | None
        _gso_offloads: dict[tuple[int, int], TxOffload]
        iss: int
        snd_una: int
        snd_nxt: int
        snd_max: int
        snd_wnd: int
        max_snd_wnd: int
        sndbuf: SendBuffer
        buf_seq: int
        fin_queued: bool
        rcv_nxt: int
        rcv_adv: int
        rcvbuf: int
        rx_bytes: int
        ooo: Reassembly
        last_ack_sent: int
        _sack_recent: int
        adv_mss: int
        mss: int
        rcv_wscale: int
        ts_ok: bool
        ts_recent: int
        ts_offset: int
        sack_ok: bool
        _offer_ws: bool
        _offer_ts: bool
        _offer_sack: bool
        rtt: RttEstimator
        cc: CongestionControl
        rate: RateEstimator
        sb: Scoreboard
        recovery: LossRecovery
        retrans_total: int
        rtt_seq: int | None
        rtt_time: float
        una_since: float
        pace_next: float
        pace_at: float | None
        rto_at: float | None
        persist_at: float | None
        delack_at: float | None
        probes: int
        _ack_now: bool
        _ecn_mode: int
        _ect: int
        _ece_pending: bool
        _cwr_pending: bool

        def _ecn_syn_flags(self, ack: bool) -> int: ...

    #: an ACK left the tail-loss probe's timer to be re-armed by the next _arm (or _output,
    #: when new data leaves after it: the ACK's own re-arm would be overwritten at once);
    #: the timer's callback takes it first too
    _pto_due = False
    #: D-SACK (RFC 2883): we report duplicates (SACK agreed and tcp.dsack), and the block the
    #: next ACK carries first
    _dsack_ok = False
    _dsack: tuple[int, int] | None = None

    # --- the template, once the route is known ---------------------------------------
    def _setup_route(self) -> int:
        """The route's offloads and what we advertise; returns the path MTU (a SYN's MSS
        needs it too: one lookup for both)."""
        ip = self._ip
        pmtu = ip.path_mtu(self.remote)
        self.adv_mss = max(pmtu - TCP_MIN_HLEN - self._ip_hlen, TCP_MIN_MSS)
        if self.opts.mss:
            self.adv_mss = min(self.adv_mss, self.opts.mss)
        # the outgoing interface's offloads, for either family: checksums left to the link,
        # and super-segments it cuts (TSO; gso_type TCPV4 or TCPV6)
        ip_hlen = self._ip_hlen
        iface: Interface | None
        if ip_hlen == IPV4_MIN_HLEN:
            route = self.stack.routes.lookup(self.remote)
            iface = route.interface if route is not None else None
        else:
            ip6 = self.stack.ip6
            iface = ip6.interface_for(self.remote) if ip6 is not None else None
        if iface is not None:
            caps = iface.capabilities
            self._tx_csum = bool(caps.tx_checksum)
            if caps.tx_checksum and caps.gso_max_size > 0 and self.tcp.settings.gso:
                # a super-segment is one datagram: 65535 bytes in all for IPv4, and IPv6's
                # payload length field allows no more either within this bound
                self._gso_max = min(caps.gso_max_size, IPV4_MAX_TOTAL_LENGTH)
        if self._tx_csum:
            self._csum_offload = _CSUM_OFFLOADS[ip_hlen]
        # window scale: the smallest shift that lets the buffer be offered, the smallest ws
        # with TCP_MAX_WINDOW << ws >= rcvbuf
        ws = (-(-self.rcvbuf // TCP_MAX_WINDOW) - 1).bit_length()
        self.rcv_wscale = ws if ws < TCP_MAX_WSCALE else TCP_MAX_WSCALE
        return pmtu

    def _syn_options(self) -> bytes:
        ts = None
        if self._offer_ts:
            ts = (self._ts_now(), self.ts_recent if self.state != SYN_SENT else 0)
        return syn_options(self.adv_mss, self.rcv_wscale if self._offer_ws else None,
                           self._offer_sack, ts)

    def _send_syn(self, *, ack: bool) -> None:
        if not self._offer_ws:
            self.rcv_wscale = 0
        flags = TCP_SYN | (TCP_ACK if ack else 0)
        if self._ecn_mode:
            flags |= self._ecn_syn_flags(ack)
        self._send(self.iss, flags, b"", self._syn_options())

    # --- building segments ----------------------------------------------------------
    def _rcv_space(self) -> int:
        free = self.rcvbuf - self.rx_bytes
        return free if free > 0 else 0

    def _ts_now(self) -> int:
        return (int(self._clock() * TS_HZ) + self.ts_offset) & MASK

    def _sack_option(self, room: int = TCP_MAX_OPTIONS) -> bytes:
        """Up to three (with timestamps) SACK blocks, the most recent first (RFC 2018), no
        more than fit in ``room`` bytes."""
        ranges = self.ooo.ranges()
        dsack = self._dsack
        if (not ranges and dsack is None) or room < TCP_SACK_HLEN + TCP_SACK_BLOCK_LEN:
            return b""
        # four blocks fill the option space, three beside a timestamp (RFC 2018 3)
        limit = min(3 if self.ts_ok else 4, (room - TCP_SACK_HLEN) // TCP_SACK_BLOCK_LEN)
        recent = self._last_ooo_block()
        if dsack is not None:
            # the D-SACK block first, then the block that holds it if one does (RFC 2883 4)
            for r in ranges:
                if r[0] <= dsack[0] and dsack[1] <= r[1]:
                    recent = r
                    break
        ordered = sorted(ranges, key=lambda r: (r != recent, r[0]))
        if dsack is not None:
            ordered.insert(0, dsack)
        ordered = ordered[:limit]
        out = bytearray(TCP_SACK_PREFIX)
        out.append(TCP_SACK_HLEN - 2 + TCP_SACK_BLOCK_LEN * len(ordered))  # kind, length
        for a, b in ordered:
            out += TCP_SACK_BLOCK.pack(a & MASK, b & MASK)
        return bytes(out)

    def _last_ooo_block(self) -> tuple[int, int] | None:
        seq = self._sack_recent
        for a, b in self.ooo.ranges():
            if a <= seq < b:
                return (a, b)
        return None

    def _send(self, seq: int, flags: int, data: Any = b"", opts: bytes | None = None,
              tos: int = 0) -> None:
        """Build and send one segment (or one GSO super-segment when ``data`` exceeds the
        MSS) with the current ACK, window and timestamps; ``tos`` is the IP ToS byte.
        ``data`` in pieces (a tuple, from send-buffer chunks) goes out in pieces: only with
        an offload, since the software checksum below takes one buffer."""
        n = sum(map(len, data)) if type(data) is tuple else len(data)
        if self._ece_pending and not flags & (TCP_SYN | TCP_RST):
            flags |= TCP_ECE  # RFC 3168 6.1.3: until the peer's CWR
        # the timestamp option alone (the usual case) is packed with the header, not apart
        ts = False
        tsval = tsecr = 0
        if opts is None:
            opts = b""
            if self.ts_ok:
                tsval = (int(self.stack.now * TS_HZ) + self.ts_offset) & MASK  # _ts_now()
                tsecr = self.ts_recent
                ts = True
                # the option's 16-bit words, for the checksum below
                osum = TCP_TS_PREFIX_SUM + (tsval >> 16) + (tsval & 0xFFFF) + (tsecr >> 16) + (
                    tsecr & 0xFFFF)
            else:
                osum = 0
            if self.sack_ok and (self.ooo.blocks or self._dsack) and flags & TCP_ACK:
                # only the blocks that fit beside the payload within the MSS
                sack = self._sack_option(
                    self.mss - n if n else TCP_MAX_OPTIONS - (TCP_TS_OPTION_LEN if ts else 0))
                self._dsack = None  # a D-SACK block is reported once (RFC 2883 4)
                if sack:
                    if ts:
                        opts = TCP_TS_OPTION.pack(TCP_TS_PREFIX, tsval, tsecr)
                        ts = False
                    opts += sack
                    osum += int.from_bytes(sack, "big")
        else:
            osum = int.from_bytes(opts, "big")  # options come padded to 32-bit words
        hlen = TCP_MIN_HLEN + (TCP_TS_OPTION_LEN if ts else len(opts))
        total = hlen + n
        if flags & TCP_SYN:
            window = min(self._rcv_space(), TCP_MAX_WINDOW)
            self.rcv_adv = max(self.rcv_adv, self.rcv_nxt + window)
        else:
            window = self._window_field()
        ack = self.rcv_nxt & MASK if flags & TCP_ACK else 0
        seq &= MASK
        offflags = (hlen << _DOFF_SHIFT) | flags
        offload = None
        nsegs = 1
        mss = self.mss
        if n > mss or self._csum_offload is not None:
            # the link completes the checksum: the field holds the pseudo-header sum
            csum = fold(self._pseudo + total)
            if n > mss:
                # one super-segment; the link cuts it into MSS-sized segments (TSO)
                offload = self._tso_offload(hlen)
                nsegs = (n + mss - 1) // mss
            else:
                offload = self._csum_offload
        else:
            # the checksum over header, options and data without building them first: the
            # header and options are whole 16-bit words, so their sums add to the data's
            csum = ~ones_sum(
                data,
                self._csum_base + total + (seq >> 16) + (seq & 0xFFFF)
                + (ack >> 16) + (ack & 0xFFFF) + offflags + window + osum,
            ) & 0xFFFF
        if ts:
            header = _HEADER_TS.pack(self.lport, self.rport, seq, ack, offflags, window, csum, 0,
                                     TCP_TS_PREFIX, tsval, tsecr)
        else:
            header = TCP_HEADER.pack(self.lport, self.rport, seq, ack, offflags, window, csum,
                                     0)
            if opts:
                header += opts
        # data leaves as a view beside the headers (IPv4 and the link add theirs in front
        # and the device writes the pieces at once): the payload is never copied here
        seg: bytes | tuple[Any, ...]
        if not n:
            seg = header
        elif type(data) is tuple:
            seg = (header, *data)
        else:
            seg = (header, data)
        c = self.c
        c["OutSegs"] += nsegs
        if flags & TCP_ACK:
            self.last_ack_sent = self.rcv_nxt
            self.delack_at = None
            self._ack_now = False
        if flags & TCP_RST:
            c["OutRsts"] += 1
        if tos:
            self._ip.send(self.remote, PROTO_TCP, seg, src=self.local, tos=tos, dont_fragment=True,
                          offload=offload)
        else:
            self._ip.send(self.remote, PROTO_TCP, seg, src=self.local, dont_fragment=True,
                          offload=offload)

    def _send_ack(self) -> None:
        # SND.MAX, not SND.NXT: after a timeout rewinds SND.NXT (go-back-N) the peer already
        # has data up to SND.MAX, and a pure ACK below its RCV.NXT is unacceptable to it
        # (RFC 9293 3.10.7.4), ACK field and all. BSD does the same; with SND.NXT, two ends
        # that both timed out could never accept each other's ACKs again.
        self._send(max(self.snd_max, self.snd_nxt), TCP_ACK)

    def _send_rst(self, seq: int) -> None:
        self._send(seq, TCP_RST | TCP_ACK)

    def _send_range(self, seq: int, n: int, *, retransmit: bool) -> None:
        """Send ``n`` bytes from the send buffer at ``seq`` (plus our FIN if it follows)."""
        self._transmit_range(seq, n, retransmit)
        if not retransmit and self.recovery.tlp is not None:
            self.recovery.schedule_tlp(self.stack.now)

    def _transmit_range(self, seq: int, n: int, retransmit: bool) -> None:
        """:meth:`_send_range` but for the tail-loss probe's timer, which the caller
        arms after its last new segment (:meth:`_output`: once per burst, not per segment)."""
        end_data = self.buf_seq + self.sndbuf.size
        flags = TCP_ACK
        if self.fin_queued and seq + n == end_data:
            flags |= TCP_FIN
        if n and seq + n == end_data:
            flags |= TCP_PSH
        if retransmit:
            segs = max(1, (n + self.mss - 1) // self.mss)
            self.c["RetransSegs"] += segs
            self.retrans_total += segs
            if self.rtt_seq is not None and seq < self.rtt_seq:
                self.rtt_seq = None  # Karn: the timed segment is ambiguous now
            rec = self.recovery
            if rec.in_recovery or rec.in_loss:
                rec.on_retransmit(seq, seq + n, segs)  # what an undo must account for
        off = seq - self.buf_seq
        now = self.stack.now
        if n:
            tos = 0
            if self._ect and not retransmit:
                # RFC 3168 6.1.5: ECT (and CWR) on new data only, never on retransmissions
                tos = self._ect
                if self._cwr_pending:
                    self._cwr_pending = False
                    flags |= TCP_CWR
                    self.c["ECNCWRSent"] += 1
            # the delivery-rate record; a send into an empty pipe starts a new flight
            self.rate.on_sent(seq, seq + n, now, self.snd_nxt - self.snd_una, retransmit)
            rec = self.recovery
            if rec.in_recovery:
                rec.prr.out += n
                if retransmit:
                    self.sb.retransmitted(seq, seq + n, self.snd_max)
            cc = self.cc
            pacing = cc.pacing_rate
            if pacing:
                self.pace_next = departure_after(self.pace_next, now, n, self.mss,
                                                 self.ts_ok, pacing)
            data = self.sndbuf.pieces(off, n)
            if type(data) is tuple and n <= self.mss and self._csum_offload is None:
                data = b"".join(data)  # the software checksum takes one buffer (< one MSS)
            self._send(seq, flags, data, None, tos)
            sb = self.sb
            if rec.in_loss or rec.in_recovery or sb.ranges or sb.dup_bytes:
                in_flight = self._in_flight()
            else:
                in_flight = self.snd_nxt - self.snd_una  # _in_flight()'s usual answer
            cc.on_packet_sent(n, in_flight + (n if seq + n > self.snd_nxt else 0), now,
                              self.rate.app_limited != 0)
        else:
            self._send(seq, flags)
        # SND.MAX is the highest sequence number ever sent. A retransmission from SND.UNA
        # may carry bytes never sent before (a full MSS after a short first send); if SND.MAX
        # stayed behind, the peer's ACK for them would look like an ACK of unsent data and
        # be dropped forever (RFC 9293 3.10.7.4).
        end = seq + n + (1 if flags & TCP_FIN else 0)
        if end > self.snd_max:
            self.snd_max = end
        if self.rto_at is None:
            self.rto_at = now + self._rto()

    def _rto(self) -> float:
        rto = self.rtt.current()
        ut = self.opts.user_timeout
        if ut:
            left = self.una_since + ut - self.stack.now
            if left < rto:
                rto = max(left, 0.001)
        return rto

    def _output(self, *, force: bool = False) -> None:
        """Send what the windows, Nagle, sender SWS avoidance (RFC 9293 3.8.6.2.1, RFC
        896/1122 for Nagle) and pacing allow: in fast recovery the lost segments first, then
        new data, within ``cwnd`` less what is in flight (RFC 6675's pipe).

        New data outside loss recovery, with no SACK block and no ECN codepoint to carry (a
        bulk sender's every segment), is built here rather than through
        :meth:`_transmit_range` and :meth:`_send`: the ACK field, the window, the timestamps
        and their checksum words are the same for every segment of one call, so they are
        worked out once (:meth:`_burst_words`) and each segment only adds its sequence number,
        length and data. Everything else (retransmissions, the FIN, SACK blocks, ECN) takes
        :meth:`_transmit_range`."""
        st = self.state
        if st not in _SENDING:
            return
        rec = self.recovery
        if rec.in_recovery:
            rec.retransmit_lost()
        sndbuf = self.sndbuf
        buf_end = self.buf_seq + sndbuf.size
        nxt = self.snd_nxt
        if nxt > buf_end or (nxt == buf_end and not self.fin_queued):
            return  # nothing to send (a receiver's usual case): skip the set-up below
        now = self._clock()
        mss = self.mss
        sb = self.sb
        sack_out = self.sack_ok and (self.ooo.blocks or self._dsack is not None)
        if sack_out and self.ooo.blocks:
            # leave room for the SACK blocks our segments carry while we hold a gap
            mss -= len(self._sack_option())
        burst = mss
        if self._gso_max and mss == self.mss:
            hdr = self._ip_hlen + TCP_MIN_HLEN + (TCP_TS_OPTION_LEN if self.ts_ok else 0)
            burst = max(mss, ((self._gso_max - hdr) // mss) * mss)
        cc = self.cc
        pacing = cc.pacing_rate
        if pacing:
            if self.pace_next > now:
                self._pace_later()
                return
            burst = paced_burst(burst, mss, pacing)
        # the congestion window's room: cwnd less what is in flight (_in_flight(), whose
        # usual answer is SND.NXT - SND.UNA)
        plain = not (rec.in_loss or rec.in_recovery or sb.ranges or sb.dup_bytes)
        croom = cc.cwnd - (nxt - self.snd_una if plain else self._in_flight())
        # this call's own segment builder serves new data (see the docstring)
        plain = plain and not (sack_out or self._ect)
        words: tuple[int, int, int, int, int, int] | None = None
        segs = 0  # segments it sent (OutSegs, counted once at the end)
        new = False  # new data went: the tail-loss probe's timer is armed after
        try:
            while True:
                nxt = self.snd_nxt
                unsent = buf_end - nxt
                if unsent > 0:
                    hole = False
                    if nxt < self.snd_max and rec.in_loss and sb.ranges:
                        # go-back-N after a timeout skips what the peer holds
                        skip, limit = sb.skip(nxt)
                        if skip > nxt:
                            self.snd_nxt = skip
                            continue
                        if limit < buf_end:
                            unsent = limit - nxt
                            hole = True  # a short hole goes as it is (no Nagle, no SWS wait)
                    snd_una = self.snd_una
                    room = snd_una + self.snd_wnd - nxt
                    if croom < room:
                        room = croom
                    n = unsent if unsent < room else room
                    if n > burst:
                        n = burst
                    if n > mss and self._cwr_pending:
                        n = mss  # CWR goes on one segment, not copied into a super-segment's
                    if n <= 0:
                        if not force:
                            if nxt == snd_una and self.persist_at is None:
                                self._maybe_persist(now)
                            return
                        n = min(unsent, mss)
                    if n < mss and not force and not hole:
                        if n < unsent:
                            # window-limited: sender SWS avoidance
                            if n < self.max_snd_wnd // 2:
                                self._maybe_persist(now)
                                return
                        elif not self.nodelay and self.snd_max > snd_una and not (
                            self.fin_queued
                        ):
                            return  # Nagle: a small segment waits for the ACK of the last
                    force = False
                    snd_max = self.snd_max
                    end = nxt + n
                    if nxt < snd_max:
                        self._transmit_range(nxt, n, True)
                    else:
                        new = True
                        if snd_una == snd_max:
                            self.una_since = now
                        if self.rtt_seq is None and not self.ts_ok:
                            self.rtt_seq = end
                            self.rtt_time = now
                        if not plain or (end == buf_end and self.fin_queued):
                            self._transmit_range(nxt, n, False)
                        else:
                            # _transmit_range and _send for new data (see the docstring)
                            if words is None:
                                words = self._burst_words(now)
                            ack, window, tsval, tsecr, hsum, offflags = words
                            if end == buf_end:
                                offflags |= TCP_PSH
                            rate = self.rate
                            rate.on_sent(nxt, end, now, nxt - snd_una, False)
                            if pacing:
                                self.pace_next = departure_after(self.pace_next, now, n,
                                                                 self.mss, self.ts_ok, pacing)
                            data: Any = sndbuf.pieces(nxt - self.buf_seq, n)
                            seq = nxt & MASK
                            if self._csum_offload is None:
                                # (no offload, no TSO: n is at most one MSS)
                                if type(data) is tuple:
                                    data = b"".join(data)  # the software checksum takes one
                                offload = None
                                csum = ~ones_sum(data, hsum + n + (seq >> 16) + (seq & 0xFFFF)
                                                 + offflags) & 0xFFFF
                                segs += 1
                            else:
                                csum = fold(self._pseudo + (offflags >> _DOFF_SHIFT) + n)
                                if n > self.mss:
                                    offload = self._tso_offload(offflags >> _DOFF_SHIFT)
                                    segs += (n + self.mss - 1) // self.mss
                                else:
                                    offload = self._csum_offload
                                    segs += 1
                            if tsval >= 0:
                                header = _HEADER_TS.pack(self.lport, self.rport, seq, ack,
                                                         offflags, window, csum, 0,
                                                         TCP_TS_PREFIX, tsval, tsecr)
                            else:
                                header = TCP_HEADER.pack(self.lport, self.rport, seq, ack,
                                                         offflags, window, csum, 0)
                            self._send_pieces(self.remote, PROTO_TCP,
                                              (header, *data) if type(data) is tuple
                                              else (header, data),
                                              (offflags >> _DOFF_SHIFT) + n, self.local, 0,
                                              offload)
                            cc.on_packet_sent(n, end - snd_una, now, rate.app_limited != 0)
                            if self.rto_at is None:
                                self.rto_at = now + self._rto()
                    if end == buf_end and self.fin_queued:
                        end += 1
                    self.snd_nxt = end
                    if end > self.snd_max:
                        self.snd_max = end
                    self.persist_at = None
                    croom -= n
                    if pacing and self.pace_next > now:
                        self._pace_later()
                        return
                    if plain and end < buf_end and (
                        croom <= 0 or end >= snd_una + self.snd_wnd
                    ):
                        # a window is full: the next turn would find no room and, with data
                        # in flight, no persist timer to arm; a sender's every call ends so
                        return
                    continue
                if self.fin_queued and nxt == buf_end:
                    # FIN alone (ignores the window, like Linux)
                    retrans = nxt < self.snd_max
                    self._transmit_range(nxt, 0, retrans)
                    if not retrans:
                        new = True
                    self.snd_nxt = nxt + 1
                    if self.snd_nxt > self.snd_max:
                        self.snd_max = self.snd_nxt
                return
        finally:
            if segs:
                self.c["OutSegs"] += segs
            if new and rec.tlp is not None:
                self._pto_due = False
                rec.schedule_tlp(now)

    def _window_field(self) -> int:
        """The window field of a segment other than a SYN, scaled: receiver SWS avoidance
        (RFC 9293 3.8.6.2.2), and never shrinking the right edge already offered (RFC 7323
        2.4), which moves up (``rcv_adv``) with what this one offers."""
        rcv_nxt = self.rcv_nxt
        rcvbuf = self.rcvbuf
        free = rcvbuf - self.rx_bytes
        if free < 0:
            free = 0
        rcv_adv = self.rcv_adv
        cur = rcv_adv - rcv_nxt
        if cur < 0:
            cur = 0
        s = self.rcv_wscale
        if free - cur < min(rcvbuf >> 1, self.adv_mss):
            window = (cur + (1 << s) - 1) >> s
        else:
            window = free >> s
        if window > TCP_MAX_WINDOW:
            window = TCP_MAX_WINDOW
        edge = rcv_nxt + (window << s)
        if edge > rcv_adv:
            self.rcv_adv = edge
        return window

    def _burst_words(self, now: float) -> tuple[int, int, int, int, int, int]:
        """What every new-data segment of one :meth:`_output` call shares, worked out as
        :meth:`_send` does for each of its segments: the ACK field, the window field, TSval
        and TSecr (TSval -1 without timestamps), the checksum's sum of the pseudo-header,
        ports, header length, ACK, window and options, and the data offset and flags word.
        Like :meth:`_send` it records the ACK as sent."""
        rcv_nxt = self.rcv_nxt
        ack = rcv_nxt & MASK
        window = self._window_field()
        if self.ts_ok:
            tsval = (int(now * TS_HZ) + self.ts_offset) & MASK  # _ts_now()
            tsecr = self.ts_recent
            hlen = TCP_MIN_HLEN + TCP_TS_OPTION_LEN
            osum = TCP_TS_PREFIX_SUM + (tsval >> 16) + (tsval & 0xFFFF) + (tsecr >> 16) + (
                tsecr & 0xFFFF)
        else:
            tsval = -1
            tsecr = 0
            hlen = TCP_MIN_HLEN
            osum = 0
        flags = TCP_ACK | TCP_ECE if self._ece_pending else TCP_ACK  # RFC 3168 6.1.3
        self.last_ack_sent = rcv_nxt
        self.delack_at = None
        self._ack_now = False
        return (ack, window, tsval, tsecr,
                self._csum_base + hlen + (ack >> 16) + (ack & 0xFFFF) + window + osum,
                (hlen << _DOFF_SHIFT) | flags)

    def _tso_offload(self, hlen: int) -> TxOffload:
        """The TSO descriptor of super-segments of this MSS with a TCP header of ``hlen``."""
        mss = self.mss
        key = (mss, hlen)
        offload = self._gso_offloads.get(key)
        if offload is None:
            ip_hlen = self._ip_hlen
            offload = self._gso_offloads[key] = TxOffload(
                ip_hlen, TCP_CSUM_OFFSET, GSO_TCPV4 if ip_hlen == IPV4_MIN_HLEN else GSO_TCPV6,
                mss, ip_hlen + hlen
            )
        return offload

    def _pace_later(self) -> None:
        """Ahead of the pacing rate: the connection timer sends the rest at the earliest
        departure time (as Linux's internal pacing does with its hrtimer)."""
        self.pace_at = self.pace_next

    def _maybe_persist(self, now: float) -> None:
        if self.snd_nxt == self.snd_una and self.persist_at is None:
            self.persist_at = now + min(self.rtt.current() * (1 << self.probes),
                                        self.tcp.settings.rto_max)

    def _in_flight(self) -> int:
        """Bytes in flight: RFC 6675's pipe while the scoreboard or recovery has anything to
        say, else (also during a timeout's go-back-N, less what the peer SACKed below SND.NXT)
        SND.NXT - SND.UNA."""
        sb = self.sb
        rec = self.recovery
        if rec.in_loss:
            if sb.ranges:
                return self.snd_nxt - self.snd_una - sb.sacked_below(self.snd_nxt)
        elif rec.in_recovery or sb.ranges or sb.dup_bytes:
            return sb.pipe(self.snd_una, self.snd_max)
        return self.snd_nxt - self.snd_una
