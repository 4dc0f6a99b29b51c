"""One TCP connection, sans-IO: the TCB and RFC 9293 3.10's event processing.

No asyncio here and no I/O: segments come in through :meth:`Connection.segment`, the
application's calls through :meth:`Connection.write`/:meth:`~Connection.close`/...,
time from ``stack.now``, and one lazily re-armed stack timer per connection serves every
deadline (retransmission, persist, delayed ACK, keepalive, TIME-WAIT/FIN-WAIT-2). Moving a
deadline later costs an attribute store; the timer fires early, finds nothing due and
re-arms for the new time. What the application must hear goes to ``conn.app`` (a
:class:`ConnectionApp`: :class:`layers_tcp.transport.TCPTransport` for asyncio protocols,
any object with those five methods in a test), and never while a segment is half
processed: events raised then wait in ``_deferred`` until the segment's effects are complete,
so an application that calls back into the stack (and, over a synchronous link, gets the
peer's answer back at once) always sees a consistent connection.

Sequence numbers are unwrapped and states change only through
:data:`layers_tcp.states.TRANSITIONS` (see :mod:`layers_tcp.states`).

This module keeps the TCB (the send and receive sequence spaces, the options agreed, the
timers' deadlines), segment arrival (header prediction in :meth:`Connection._rx_fast`, the
general RFC 9293 3.10.7 steps in :meth:`Connection._rx`, the ACK's cumulative part, window
updates, RTT samples and the rate sample of each ACK in :meth:`Connection._rx_ack` and
:meth:`Connection._ack_event`, resets, SYNs), the timers' dispatch, ICMP errors, and the
application's calls and events. The rest is beside it:

* :mod:`layers_tcp.recovery` - :class:`~layers_tcp.recovery.LossRecovery` (``conn.recovery``,
  a component): fast recovery, RFC 6582's partial ACKs, PRR, the RTO's go-back-N, undo,
  F-RTO, RACK-TLP;
* :mod:`layers_tcp.output` - :class:`~layers_tcp.output.Output` (a mixin): what to send and
  when, and building each segment with :mod:`layers.wire`'s layouts and checksum helpers;
* :mod:`layers_tcp.receive` - :class:`~layers_tcp.receive.Receive` (a mixin): segment text
  and FIN, the out-of-order queue, when to ACK, delivery to the application;
* :mod:`layers_tcp.ecn` - :class:`~layers_tcp.ecn.Ecn` (a mixin): RFC 3168's state;
* :mod:`layers_tcp.reporting` - :class:`~layers_tcp.reporting.Reporting` (a mixin):
  telemetry samples and ``describe()``.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from layers.congestion import CongestionControl, RateSample
from layers.errors import os_error
from layers.links.base import TxOffload
from layers.telemetry import Telemetry
from layers.wire.ipv4 import IPV4_MIN_HLEN, PROTO_TCP
from layers.wire.ipv6 import IPV6_HLEN, pseudo_sum
from layers.wire.tcp import (
    TCP_ACK,
    TCP_CWR,
    TCP_DEFAULT_MSS,
    TCP_ECE,
    TCP_FIN,
    TCP_FLAG_MASK,
    TCP_MAX_WINDOW,
    TCP_MAX_WSCALE,
    TCP_MIN_HLEN,
    TCP_MIN_MSS,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    TCP_TS_HLEN,
    TCP_TS_OPTION,
    TCP_TS_OPTION_LEN,
    TCP_TS_PREFIX,
    TCPOptions,
    parse_options,
)
from layers_tcp.buffers import NO_OOO, NO_SNDBUF, SendBuffer
from layers_tcp.dsack import find_dsack
from layers_tcp.ecn import SEG_CE, Ecn
from layers_tcp.output import TS_HZ, Output
from layers_tcp.rate import RateEstimator
from layers_tcp.receive import Receive
from layers_tcp.recovery import LossRecovery
from layers_tcp.reporting import Reporting
from layers_tcp.rtt import RttEstimator
from layers_tcp.sack import NO_SCOREBOARD, Scoreboard
from layers_tcp.states import (
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    CURR_ESTAB,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    HALF,
    LAST_ACK,
    MASK,
    RECEIVING,
    SENDING,
    SYN_RECEIVED,
    SYN_SENT,
    SYNCHRONIZED,
    TIME_WAIT,
    TRANSITIONS,
    Event,
    State,
    next_state,
    unwrap,
)

if TYPE_CHECKING:
    from layers_tcp.listener import Listener
    from layers_tcp.protocol import TCP, ConnOptions

#: RFC 7323 5.5: a TS.Recent older than this is invalid (24 days)
PAWS_IDLE = 24 * 24 * 3600.0
#: PAWS lets a timestamp this many ticks behind TS.Recent through (Linux's TCP_PAWS_WINDOW)
PAWS_WINDOW = 1
#: out-of-window pure ACKs are answered at most this often (Linux tcp_invalid_ratelimit)
OOW_ACK_INTERVAL = 0.5
#: header prediction takes segments whose flags, under this mask, are exactly ACK (so ECE,
#: CWR and CE marks take the full path; unmarked ECT does not)
_FAST_FLAGS = (TCP_FLAG_MASK | SEG_CE) & ~TCP_PSH
_SENDING = SENDING
#: the timestamp option (NOP, NOP, kind 8, length 10) as three 32-bit words
_TS_WORDS = struct.Struct("!III").unpack_from
_TS_PREFIX_WORD = int.from_bytes(TCP_TS_PREFIX, "big")
_RECEIVING = RECEIVING
_SYNCHRONIZED = SYNCHRONIZED
#: what a connection in TIME-WAIT keeps instead of its TSO offload cache and its empty
#: receive queue (Connection._release_for_time_wait): shared, never added to (TIME-WAIT
#: sends no data and takes none in)
_NO_OFFLOADS: dict[tuple[int, int], TxOffload] = {}
_NO_CHUNKS: list[bytes | bytearray | memoryview] = []



def _pieces_via_send(ip: Any) -> Callable[..., bool]:
    """``send_pieces`` for an IP service that offers only ``send``."""

    def send_pieces(dst: int, protocol: int, parts: tuple[Any, ...], plen: int, src: int,
                    tos: int, offload: TxOffload | None) -> bool:
        return bool(ip.send(dst, protocol, parts, src=src, tos=tos, dont_fragment=True,
                            offload=offload))

    return send_pieces


class ConnectionApp(Protocol):
    """What a connection tells its application (:class:`layers_tcp.transport.TCPTransport`
    turns these into asyncio protocol callbacks). Never called while a segment is half
    processed, nor nested inside a call to ``on_data`` or ``on_eof``."""

    def on_established(self) -> None:
        """The handshake completed (or a listener accepted the connection)."""

    def on_data(self, data: bytes) -> None:
        """In-order data (a read-only memoryview instead of bytes if the application has a
        true ``takes_views`` attribute)."""

    def on_eof(self) -> None:
        """The peer's FIN, after all its data."""

    def on_closed(self, exc: Exception | None) -> None:
        """The connection is over for the application (``exc`` None: both directions closed
        in order), or the attempt failed before :meth:`on_established`."""

    def on_writable(self) -> None:
        """ACKs brought the bytes beyond the send buffer (:meth:`Connection.write_buffer_size`)
        down to ``conn.writable_at`` (which the application sets, and -1 turns off)."""


class Connection(Receive, Output, Ecn, Reporting):
    """A TCB and the events that drive it (sans-IO: see the module docstring)."""

    #: accepted by a dual-stack listener on :: from an IPv4 peer: names read ::ffff:a.b.c.d
    v4mapped = False
    #: The state set up by ``__init__`` lives in slots: a connection has about a hundred
    #: attributes, and in an instance dict that size every store in ``__init__`` took the
    #: generic path (and the dict several resizes), about a tenth of the cost of accepting
    #: and closing a connection (tests/tcp/bench_tcp_conn_cost.py). Attributes with a class
    #: default (``v4mapped``, the ECN state...) and anything a test sets go to the
    #: ``__dict__`` the mixins without slots (:class:`~layers_tcp.output.Output`) give.
    __slots__ = (
        "_busy", "_clock", "_closing", "_csum_base", "_csum_offload", "_deferred", "_delivering",
        "_eof_delivered", "_eof_written", "_gso_max", "_gso_offloads", "_ip", "_ip_hlen",
        "_last_oow_ack", "_lost", "_made", "_observers", "_offer_sack", "_offer_ts", "_offer_ws",
        "_pseudo", "_rcv_mss_cap", "_read_closed", "_reading", "_sack_recent", "_send_pieces",
        "_telemetry", "_timer", "_timer_when", "_tx_csum", "active", "adv_mss", "app", "buf_seq",
        "c", "cc", "close_at", "delack_at", "delivery_rate", "fin_after_open", "fin_queued",
        "fin_received", "fin_seq", "irs", "iss", "ka_at", "ka_probes", "key", "last_ack_sent",
        "last_rtt", "last_rx", "listener", "local", "lport", "max_snd_wnd", "min_rtt", "mss",
        "nodelay", "ooo", "ooo_fin", "opts", "pace_at", "pace_next", "peer_mss", "persist_at",
        "probes", "pto_at", "rate", "rcv_adv", "rcv_mss", "rcv_nxt", "rcv_wscale", "rcvbuf",
        "recovery", "remote", "reo_at", "retrans_total", "retries", "rport", "rto_at", "rtt",
        "rtt_seq", "rtt_time", "rx_bytes", "rx_chunks", "sack_ok", "sb", "snd_max", "snd_nxt",
        "snd_una", "snd_wl1", "snd_wl2", "snd_wnd", "snd_wscale", "sndbuf", "sndbuf_limit",
        "soft_error", "stack", "state", "tcp", "ts_offset", "ts_ok", "ts_recent", "ts_recent_age",
        "una_since", "writable_at",
    )

    def __init__(
        self,
        tcp: TCP,
        local: int,
        lport: int,
        remote: int,
        rport: int,
        options: ConnOptions,
        *,
        active: bool,
        listener: Listener | None = None,
    ) -> None:
        self.tcp = tcp
        self.stack = tcp.stack
        #: the stack's clock, called directly on the per-segment path (stack.now without
        #: its property)
        self._clock = tcp.stack.clock
        self.c = tcp.c
        s = tcp.settings
        self.local = local
        self.lport = lport
        self.remote = remote
        self.rport = rport
        self.key = (local, lport, remote, rport)
        self.opts = options
        self.active = active
        #: the application (None for a passive connection not yet accepted)
        self.app: ConnectionApp | None = None
        self.listener = listener
        self.state = CLOSED
        self.nodelay = options.nodelay
        self._pseudo = pseudo_sum(local, remote, PROTO_TCP, 0)
        #: the checksum's words that never change: the pseudo-header and the two ports
        self._csum_base = self._pseudo + lport + rport
        #: IP header bytes in front of ours (IPv4's 20 without options, or IPv6's 40)
        self._ip_hlen = IPV6_HLEN if remote > MASK else IPV4_MIN_HLEN

        # --- send sequence space
        #: the ISN (RFC 6528) for now; a SYN cookie's replaces it (open_from_cookie)
        isn_f, self.ts_offset, seed = tcp.secrets(self.key)
        self.iss = tcp.isn_at(isn_f, self._clock())
        self.snd_una = 0
        self.snd_nxt = 0
        self.snd_max = 0
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        #: unacknowledged and unsent data; sndbuf[0] has sequence number buf_seq
        self.sndbuf = SendBuffer()
        self.buf_seq = 0
        self.fin_queued = False
        self.fin_seq = 0
        #: close()/write_eof() arrived in SYN-RECEIVED: the FIN waits for ESTABLISHED
        #: (RFC 9293 3.10.4), since our SYN is not yet acknowledged
        self.fin_after_open = False
        self.sndbuf_limit = options.sndbuf

        # --- receive sequence space
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0
        self.rcvbuf = options.rcvbuf
        #: in-order data not yet delivered: views of received frames (immutable ``bytes``)
        #: or buffers nobody else holds; joined into ``bytes`` when delivered
        self.rx_chunks: list[bytes | bytearray | memoryview] = []
        self.rx_bytes = 0
        self.ooo = NO_OOO  # a Reassembly of its own with the first out-of-order segment
        self.ooo_fin: int | None = None
        self.fin_received = False
        self.last_ack_sent = 0
        self.rcv_mss = TCP_DEFAULT_MSS
        self._last_oow_ack = -1e9
        self._sack_recent = 0
        self._rcv_mss_cap = TCP_DEFAULT_MSS

        # --- options
        self.peer_mss = TCP_DEFAULT_MSS
        self.mss = TCP_DEFAULT_MSS  # payload bytes per segment we send (options deducted)
        self.adv_mss = TCP_DEFAULT_MSS
        self.snd_wscale = 0
        self.rcv_wscale = 0
        self.ts_ok = False
        self.ts_recent = 0
        self.ts_recent_age = 0.0
        self.sack_ok = False
        self._offer_ws = s.window_scaling
        self._offer_ts = s.timestamps
        self._offer_sack = s.sack
        self._gso_max = 0
        self._tx_csum = False
        self._csum_offload: TxOffload | None = None
        #: TSO descriptors by (mss, header length)
        self._gso_offloads: dict[tuple[int, int], TxOffload] = {}
        ip = self._ip = tcp.ip_for(remote)
        #: the IP service's send for a data segment in pieces: its ``send_pieces``, which is
        #: optional for a third-party IP plugin (``send`` with don't-fragment does the same)
        #: (one bound method per IP service, shared by its connections: 64 bytes each else)
        sender = tcp.pieces_senders.get(id(ip))
        if sender is None or sender[0] is not ip:
            sender = tcp.pieces_senders[id(ip)] = (
                ip, getattr(ip, "send_pieces", None) or _pieces_via_send(ip))
        self._send_pieces = sender[1]

        # --- retransmission and congestion
        self.rtt = RttEstimator(s.rto_initial, s.rto_min, s.rto_max)
        self.cc: CongestionControl = tcp.make_congestion_control(
            options.congestion_control, TCP_DEFAULT_MSS, seed
        )
        self.retries = 0
        self.rtt_seq: int | None = None
        self.rtt_time = 0.0
        self.una_since = 0.0
        self.soft_error: int | None = None
        #: SACK scoreboard, lost and retransmitted ranges, the pipe (RFC 6675)
        self.sb = Scoreboard()
        #: delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation)
        self.rate = RateEstimator()
        self.delivery_rate = 0.0
        self.min_rtt: float | None = None
        #: the last RTT sample (rate records, else timestamps or the timed segment)
        self.last_rtt: float | None = None
        #: retransmitted segments, this connection
        self.retrans_total = 0
        #: loss recovery: fast recovery, the timeout's go-back-N, undo, F-RTO, RACK-TLP
        self.recovery = LossRecovery(self)
        #: pacing (when the algorithm sets ``pacing_rate``): the earliest departure time of
        #: the next segment and the timer deadline that sends it
        self.pace_next = 0.0
        self.pace_at: float | None = None
        # telemetry: the stack's subscribers and this connection's own
        self._telemetry = self.stack.telemetry
        self._observers: Telemetry | None = None

        if options.ecn:  # the ECN state: class attributes in the "ECN" section below
            self._ecn_mode = options.ecn

        # --- timers (one stack timer serves all)
        self.rto_at: float | None = None
        self.persist_at: float | None = None
        self.delack_at: float | None = None
        self.ka_at: float | None = None
        self.close_at: float | None = None
        #: RACK's reordering timer and the tail loss probe's timeout (RFC 8985)
        self.reo_at: float | None = None
        self.pto_at: float | None = None
        self.probes = 0
        self.ka_probes = 0
        self.last_rx = 0.0
        self._timer: Any = None
        self._timer_when = 0.0

        # --- the application side
        self._made = False  # on_established was raised
        self._lost = False  # on_closed was raised
        self._closing = False  # close() or abort() called
        self._read_closed = False  # close(): received data is unwanted
        self._eof_written = False
        self._eof_delivered = False
        self._reading = True
        #: on_writable once the bytes beyond the send buffer fall to this (-1: not wanted);
        #: a threshold, so that a paused writer costs no call per ACK until it is reached
        self.writable_at = -1
        #: a segment is being processed: events for the application wait in _deferred
        self._busy = False
        self._deferred: list[tuple[Callable[..., Any], tuple[Any, ...]]] | None = None
        #: _deliver is handing data over (a nested call leaves it to the running one)
        self._delivering = False

    # =================================================================================
    # opening
    # =================================================================================
    def _init_send(self, iss: int, now: float) -> None:
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss + 1
        self.snd_max = iss + 1
        self.buf_seq = iss + 1
        self.recovery.recover = iss
        self.una_since = now

    def open_active(self) -> None:
        """Send the SYN (RFC 9293 3.10.1, OPEN call in CLOSED)."""
        self._setup_route()
        self._init_send(self.iss, self._clock())
        self._transition(Event.ACTIVE_OPEN)
        self.rtt_time = self._clock()
        self._send_syn(ack=False)
        self.rto_at = self._clock() + self.rtt.current()
        self._arm()

    def open_passive(self, seq32: int, wnd: int, opts: TCPOptions, flags: int = 0) -> None:
        """A SYN reached our listener: answer with a SYN-ACK (SYN-RECEIVED)."""
        if self._ecn_mode:
            self._ecn_accept_syn(flags)
        now = self._clock()
        pmtu = self._setup_route()
        self._init_send(self.iss, now)
        self.irs = seq32
        self.rcv_nxt = seq32 + 1
        self._offer_ws = self._offer_ws and opts.wscale is not None
        self._offer_ts = self._offer_ts and opts.timestamp is not None
        self._offer_sack = self._offer_sack and opts.sack_permitted
        self._apply_syn_options(opts, pmtu, now)
        self.snd_wnd = wnd  # never scaled in a SYN
        self.snd_wl1 = seq32
        self.snd_wl2 = self.iss
        self.max_snd_wnd = wnd
        self._transition(Event.PASSIVE_OPEN)
        self.rtt_time = now
        self.last_rx = now
        self._send_syn(ack=True)
        # the SYN-ACK's retransmission timer, armed as _arm would: a new connection has no
        # other deadline and no timer yet
        self.rto_at = when = now + self.rtt.current()
        if self._timer is None:
            self._timer = self.stack.call_at(when, self._on_timer)
            self._timer_when = when
        else:
            self._arm()

    def open_from_cookie(self, irs32: int, iss: int, wnd: int, opts: TCPOptions) -> None:
        """A valid SYN cookie came back (layers_tcp.syncookies): SYN-RECEIVED as if we had
        sent the SYN-ACK ``iss`` for the SYN ``irs32`` with ``opts`` (the MSS, window scale,
        SACK-permitted and timestamp the cookie kept); the caller hands the ACK on."""
        pmtu = self._setup_route()
        self._init_send(iss, self._clock())
        self.irs = irs32
        self.rcv_nxt = irs32 + 1
        self._offer_ws = self._offer_ws and opts.wscale is not None
        self._offer_ts = self._offer_ts and opts.timestamp is not None
        self._offer_sack = self._offer_sack and opts.sack_permitted
        self._apply_syn_options(opts, pmtu)
        self.snd_wnd = wnd
        self.snd_wl1 = self.rcv_nxt - 1
        self.snd_wl2 = self.iss
        self.max_snd_wnd = wnd
        self._transition(Event.PASSIVE_OPEN)
        self.rtt_time = self._clock()
        self.retries = 1  # no RTT sample from a SYN-ACK whose sending time we did not keep
        self.last_rx = self._clock()

    def _apply_syn_options(self, opts: TCPOptions, pmtu: int | None = None,
                           now: float | None = None) -> None:
        if now is None:
            now = self._clock()
        self.peer_mss = opts.mss if opts.mss else TCP_DEFAULT_MSS
        if self._offer_ws and opts.wscale is not None:
            self.snd_wscale = min(opts.wscale, TCP_MAX_WSCALE)
        else:
            self.snd_wscale = 0
            self.rcv_wscale = 0
            self._offer_ws = False
        if self._offer_ts and opts.timestamp is not None:
            self.ts_ok = True
            self.ts_recent = opts.timestamp[0]
            self.ts_recent_age = now
        self.sack_ok = self._offer_sack and opts.sack_permitted
        if self.sack_ok and self.tcp.settings.dsack:
            self._dsack_ok = True
        self._compute_mss(pmtu)
        self._rcv_mss_cap = self.adv_mss - (TCP_TS_OPTION_LEN if self.ts_ok else 0)
        self.rcv_mss = min(self._rcv_mss_cap, self.mss)

    def _compute_mss(self, pmtu: int | None = None) -> None:
        if pmtu is None:
            pmtu = self._ip.path_mtu(self.remote)
        mss = min(self.peer_mss, pmtu - TCP_MIN_HLEN - self._ip_hlen)
        if self.opts.mss:
            mss = min(mss, self.opts.mss)
        if self.ts_ok:
            mss -= TCP_TS_OPTION_LEN
        self.mss = max(mss, TCP_MIN_MSS)

    def _transition(self, event: Event) -> None:
        """The one way a state changes (but to CLOSED): RFC 9293's diagram as
        :data:`layers_tcp.states.TRANSITIONS` has it (:meth:`_set_state`'s work, inline:
        four or five of these per connection)."""
        old = self.state
        new = TRANSITIONS.get((old, event))
        if new is None:
            new = next_state(old, event)  # raises: the table has no such transition
        if (old in CURR_ESTAB) != (new in CURR_ESTAB):
            self.c["CurrEstab"] += 1 if new in CURR_ESTAB else -1
        self.state = new

    def _set_state(self, new: State) -> None:
        """Change state, keeping CurrEstab (ESTABLISHED + CLOSE-WAIT, as Linux counts it).
        Called directly only for CLOSED; every other state comes from :meth:`_transition`."""
        old = self.state
        if old == new:
            return
        was = old in CURR_ESTAB
        now_in = new in CURR_ESTAB
        if was != now_in:
            self.c["CurrEstab"] += 1 if now_in else -1
        self.state = new

    def _established(self) -> None:
        """Common work on entering ESTABLISHED."""
        now = self._clock()
        self._transition(Event.RCV_ACK_OF_SYN)
        self.retries = 0
        self.rtt.reset_backoff()
        self.last_rx = now
        if self.ecn_ok:
            self.c["ECNNegotiated"] += 1
        # the algorithm was made before the MSS was known: now it is
        self.cc.on_start(self.mss, now)
        if self.opts.keepalive:
            self.ka_at = now + self.tcp.settings.keepalive_time
        if self.sack_ok and self.tcp.settings.recovery == "rack":
            # RACK-TLP (RFC 8985) needs SACK; without it duplicate ACKs are counted
            self.recovery.use_rack()
            self.rate.collect = True

    # =================================================================================
    # segment arrival (RFC 9293 3.10.7)
    # =================================================================================
    def segment(
        self, seq32: int, ack32: int, flags: int, wnd: int, seg: memoryview, doff: int
    ) -> None:
        """One segment for this connection (checksum verified, header sane).

        The application hears nothing until the segment's effects are complete: what it
        must be told meanwhile waits in ``_deferred`` (:meth:`_app_later`), and
        :meth:`_after_input` (the last step of every path that takes the segment in) or the
        end of this method delivers it. So an application that calls back into the stack,
        even one whose peer answers synchronously, meets a consistent connection and its
        segments are processed at once, in order."""
        st = self.state
        if st == ESTABLISHED and self._rx_fast(seq32, ack32, flags, wnd, seg, doff):
            return
        self._busy = True
        try:
            if self._ack_soon and self.rx_chunks:
                # data held for the end of the burst (_after_input) reaches the application
                # before anything but header prediction's segments takes effect
                self._busy = False
                self._deliver()
                self._busy = True
                st = self.state
            if st == SYN_SENT:
                self._rx_syn_sent(seq32, ack32, flags, wnd, seg, doff)
            elif st == LAST_ACK and self._rx_last_ack(seq32, ack32, flags, seg, doff):
                pass
            elif st != CLOSED:
                self._rx(seq32, ack32, flags, wnd, seg, doff)
        finally:
            self._busy = False
            if self._deferred is not None:
                self._run_deferred()
            if self.state != CLOSED and not self._tx_soon:
                self._arm()  # (else the flush of the output arms, after it sent)

    # --- events for the application, after the segment ---------------------------------
    def _app_later(self, fn: Callable[..., Any], *args: Any) -> bool:
        """While a segment is being processed, keep ``fn(*args)`` for when it is done and
        return True; otherwise False (the caller goes on at once)."""
        if not self._busy:
            return False
        if self._deferred is None:
            self._deferred = []
        self._deferred.append((fn, args))
        return True

    def _run_deferred(self) -> None:
        while self._deferred:
            fn, args = self._deferred.pop(0)
            fn(*args)
        self._deferred = None

    def _rx_fast(
        self, seq32: int, ack32: int, flags: int, wnd: int, seg: memoryview, doff: int
    ) -> bool:
        """Header prediction (Van Jacobson; RFC 7323 appendix): the common ESTABLISHED
        segment - the next in sequence, ACK set and nothing else but PSH, at most a timestamp
        option, an ACK within what we sent, data that fits the window with no reassembly in
        progress, outside loss recovery - takes the same steps as :meth:`_rx` without its
        general checks, and then those :meth:`segment` takes after it. Returns False, having
        changed nothing, for any other segment.

        A receiver's usual segment (data that acknowledges nothing new, while the ACK of the
        burst is already due at its end and nothing else waits) ends here after the data
        is queued: nothing is told to the application, nothing is sent and no deadline
        moves, so neither :meth:`_after_input` nor :meth:`_arm` would do anything."""
        if flags & _FAST_FLAGS != TCP_ACK:
            return False
        rcv_nxt = self.rcv_nxt
        if seq32 != rcv_nxt & MASK:
            return False
        tsval = -1
        tsecr = 0
        if doff != TCP_MIN_HLEN:
            if doff != TCP_TS_HLEN or not self.ts_ok:
                return False
            # the option's first word as a number: no slice of the segment to compare
            prefix, tsval, tsecr = _TS_WORDS(seg, TCP_MIN_HLEN)
            if prefix != _TS_PREFIX_WORD or ((tsval - self.ts_recent) & MASK) >= HALF:
                return False  # another option in its place, or PAWS has a say
        elif self.ts_ok:
            return False  # RFC 7323: a segment without the option after it was agreed
        dlen = len(seg) - doff
        if dlen and (rcv_nxt + dlen > self.rcv_adv or self._read_closed):
            return False
        snd_una = self.snd_una
        ack = snd_una + ((ack32 - snd_una + HALF) & MASK) - HALF  # unwrap(), inline
        snd_max = self.snd_max
        if (
            ack < snd_una or ack > snd_max or self.recovery.in_recovery or self.sb.ranges
            or self.ooo.blocks or self.ooo_fin is not None
        ):
            return False
        # --- from here on the steps of _rx, in its order
        now = self._clock()
        self.last_rx = now
        self.ka_probes = 0
        if tsval >= 0 and rcv_nxt <= self.last_ack_sent:
            self.ts_recent = tsval
            self.ts_recent_age = now
        if ack == snd_una and snd_max == snd_una:
            # a receiver's usual segment: nothing of ours is outstanding, so of _rx_ack's
            # steps only the window update applies (inline: this is the per-segment path)
            wnd <<= self.snd_wscale
            wl1 = self.snd_wl1
            if wl1 < rcv_nxt or (wl1 == rcv_nxt and self.snd_wl2 <= ack):
                snd_wnd = self.snd_wnd
                if wnd != snd_wnd:
                    if wnd > snd_wnd:
                        self.persist_at = None
                    self.snd_wnd = wnd
                    if wnd > self.max_snd_wnd:
                        self.max_snd_wnd = wnd
                self.snd_wl1 = rcv_nxt
                self.snd_wl2 = ack
            if (dlen and self._ack_soon and self._deferred is None and not self._ack_now
                    and not self.fin_queued and snd_max >= self.buf_seq + self.sndbuf.size):
                # the ACK is due at the end of the burst (_flush_ack), which also hands the
                # data over; nothing to send (snd_max is SND.NXT here): _after_input would
                # only return, and no deadline moves unless the delayed ACK is armed below
                rcv_nxt = self._queue_in_order(seg[doff:], dlen)
                if rcv_nxt - self.last_ack_sent <= self.rcv_mss and self.delack_at is None:
                    self.delack_at = now + self.tcp.settings.delack
                    self._arm()
                return True
            self._busy = True
            try:
                self._rx_fast_data(dlen, seg, doff, now)
            finally:
                self._after_fast()
            return True
        self._busy = True
        try:
            self._rx_ack(rcv_nxt, ack, wnd, dlen, flags, tsecr, None, now)
            if self.state == ESTABLISHED:
                self._rx_fast_data(dlen, seg, doff, now)
        finally:
            self._after_fast()
        return True

    def _rx_fast_data(self, dlen: int, seg: memoryview, doff: int, now: float) -> None:
        """Header prediction's data, then :meth:`_after_input`."""
        if dlen:
            # _rx_text's in-order case, without trimming (the data fits the window)
            self._ack_timing(self._queue_in_order(seg[doff:], dlen), now)
        self._after_input()

    def _after_fast(self) -> None:
        """What :meth:`segment` does after a segment, for one header prediction took."""
        self._busy = False
        if self._deferred is not None:
            self._run_deferred()
        if self.state != CLOSED and not self._tx_soon:
            self._arm()

    def _rx_syn_sent(
        self, seq32: int, ack32: int, flags: int, wnd: int, seg: memoryview, doff: int
    ) -> None:
        c = self.c
        ack_ok = False
        ack = 0
        if flags & TCP_ACK:
            ack = unwrap(ack32, self.snd_una)
            if ack <= self.iss or ack > self.snd_max:
                c.drop("bad_ack")
                if not flags & TCP_RST:
                    self.tcp.send_reset(self.local, self.lport, self.remote, self.rport,
                                        ack32, 0, TCP_RST)
                return
            ack_ok = True
        if flags & TCP_RST:
            if ack_ok:
                self._fail(errno.ECONNREFUSED)
            else:
                c.drop("rst_without_ack")
            return
        if not flags & TCP_SYN:
            c.drop("no_syn")
            return
        try:
            opts = parse_options(seg[TCP_MIN_HLEN:doff])
        except ValueError:
            c.drop("bad_option")
            return
        now = self._clock()
        self.irs = seq32
        self.rcv_nxt = seq32 + 1
        self.last_ack_sent = self.rcv_nxt
        self._apply_syn_options(opts)
        if ack_ok:
            if self._ecn_requested:
                # RFC 3168 6.1.1: an ECN-setup SYN-ACK has ECE and not CWR
                self._ecn_agreed(flags & (TCP_ECE | TCP_CWR) == TCP_ECE)
            self.snd_una = ack
            if self.retries == 0:
                self.rtt.sample(now - self.rtt_time)
            self.snd_wnd = wnd  # never scaled in a SYN
            self.max_snd_wnd = wnd
            self.snd_wl1 = self.rcv_nxt - 1
            self.snd_wl2 = ack
            self.rto_at = None
            self._established()
            self._send_ack()
            self._connection_made()
            data = seg[doff:]
            if len(data) or flags & TCP_FIN:
                self._rx_text(self.rcv_nxt, data, flags & TCP_FIN)
                self._after_input()
            else:
                self._output()
        else:
            # simultaneous open (RFC 9293 figure 7)
            if self._ecn_requested:
                self._ecn_accept_syn(flags)
            self.snd_wnd = wnd
            self.max_snd_wnd = wnd
            self.snd_wl1 = self.rcv_nxt - 1
            self.snd_wl2 = self.iss
            self._transition(Event.RCV_SYN)
            self._send_syn(ack=True)

    def _rx(self, seq32: int, ack32: int, flags: int, wnd: int, seg: memoryview, doff: int) -> None:
        c = self.c
        now = self._clock()
        rcv_nxt = self.rcv_nxt
        seq = unwrap(seq32, rcv_nxt)
        data = seg[doff:]
        dlen = len(data)
        st = self.state
        self.last_rx = now
        self.ka_probes = 0

        tsval = -1
        tsecr = 0
        sack_blocks: list[tuple[int, int]] | None = None
        if doff > TCP_MIN_HLEN:
            optb = seg[TCP_MIN_HLEN:doff]
            if doff == TCP_TS_HLEN and optb[:4] == TCP_TS_PREFIX:
                _, tsval, tsecr = TCP_TS_OPTION.unpack_from(optb)
            else:
                try:
                    o = parse_options(optb)
                except ValueError:
                    c.drop("bad_option")
                    return
                if o.timestamp is not None:
                    tsval, tsecr = o.timestamp
                if o.sack and self.sack_ok:
                    sack_blocks = [(unwrap(a, self.snd_una), unwrap(b, self.snd_una))
                                   for a, b in o.sack]
            if not self.ts_ok:
                tsval = -1

        # --- a SYN in a synchronized state, or the peer's retransmitted SYN
        if flags & TCP_SYN:
            if seq == self.irs and not flags & TCP_RST:
                if st == SYN_RECEIVED:
                    if not flags & TCP_ACK:
                        # our SYN-ACK was lost: send it again
                        c["SynRetransReceived"] += 1
                        self._send_syn(ack=True)
                        return
                    # simultaneous open: the peer's SYN-ACK; its SYN we hold already
                    flags &= ~TCP_SYN
                    seq += 1
                else:
                    # a retransmitted SYN-ACK: our ACK was lost
                    self._send_ack()
                    return
            elif not flags & TCP_RST:
                # RFC 5961 4.2: never reset on a SYN, challenge it
                c.drop("syn_in_window")
                self._challenge_ack()
                return

        seglen = dlen + (1 if flags & TCP_SYN else 0) + (1 if flags & TCP_FIN else 0)

        # --- PAWS (RFC 7323 5.3)
        if tsval >= 0 and not flags & TCP_RST and ((tsval - self.ts_recent) & MASK) >= HALF:
            if now - self.ts_recent_age > PAWS_IDLE:
                self.ts_recent = tsval
                self.ts_recent_age = now
            elif not self._paws_passes(seq, ack32, wnd, flags, seglen, tsval):
                c.drop("paws")
                c["PAWSEstab"] += 1
                if seglen or now - self._last_oow_ack >= OOW_ACK_INTERVAL:
                    self._last_oow_ack = now
                    self._send_ack()
                return

        # --- sequence acceptability (RFC 9293 3.10.7.4, the four cases)
        rwnd = self.rcv_adv - rcv_nxt
        if rwnd < 0:
            rwnd = 0
        if seglen == 0:
            ok = seq == rcv_nxt if rwnd == 0 else rcv_nxt <= seq < rcv_nxt + rwnd
        elif rwnd == 0:
            ok = False
        else:
            end = seq + seglen - 1
            ok = (rcv_nxt <= seq < rcv_nxt + rwnd) or (rcv_nxt <= end < rcv_nxt + rwnd) or (
                seq < rcv_nxt and end >= rcv_nxt + rwnd
            )
        if not ok:
            if flags & TCP_RST:
                c.drop("rst_out_of_window")
                return
            if rwnd == 0 and seq == rcv_nxt:
                # zero window: the data cannot be taken, but the ACK must be (RFC 9293)
                c.drop("zero_window")
                data = data[:0]
                dlen = 0
                flags &= ~TCP_FIN
                self._ack_now = True
            else:
                c.drop("out_of_window")
                if dlen and seq < rcv_nxt and self._dsack_ok:
                    # all of it is old: the peer resent what we have (RFC 2883 4.1.1)
                    self._dsack = (seq, min(seq + dlen, rcv_nxt))
                    c["DSACKOldSent"] += 1
                if st == TIME_WAIT and flags & TCP_FIN:
                    # the peer retransmitted its FIN: our ACK was lost; restart 2*MSL
                    self.close_at = now + 2 * self.tcp.settings.msl
                if seglen or now - self._last_oow_ack >= OOW_ACK_INTERVAL:
                    self._last_oow_ack = now
                    self._send_ack()
                return

        # --- RST (RFC 9293 3.10.7.4 second, with RFC 5961 3.2)
        if flags & TCP_RST:
            if seq == rcv_nxt:
                self._on_reset()
            else:
                c.drop("rst_in_window")
                self._challenge_ack()
            return

        # --- TS.Recent update (RFC 7323 4.3)
        if tsval >= 0 and seq <= self.last_ack_sent and ((tsval - self.ts_recent) & MASK) < HALF:
            self.ts_recent = tsval
            self.ts_recent_age = now

        # --- ACK
        if not flags & TCP_ACK:
            c.drop("no_ack")
            return
        ack = unwrap(ack32, self.snd_una)
        if st == SYN_RECEIVED:
            if not self.snd_una < ack <= self.snd_max:
                c.drop("bad_ack")
                self.tcp.send_reset(self.local, self.lport, self.remote, self.rport,
                                    ack32, 0, TCP_RST)
                return
            if self.listener is not None and not self.listener.can_accept():
                c.drop("listen_overflow")
                c["ListenOverflows"] += 1
                return
            self.snd_wnd = wnd << self.snd_wscale
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            if self.retries == 0:
                # the SYN-ACK went once: its sending time gives the first RTT sample, with
                # timestamps too, as Linux's tcp_synack_rtt_meas takes it (Karn: not after a
                # retransmission, nor for a SYN cookie, whose sending time was not kept)
                self.rtt.sample(now - self.rtt_time)
            self.snd_una = ack
            self.rto_at = None
            self._established()
            st = ESTABLISHED
            listener = self.listener
            if listener is not None:
                # the listener's accept runs the application's protocol factory: after this
                # segment
                if not self._app_later(listener.established, self):
                    listener.established(self)
            else:
                self._connection_made()
            if self.fin_after_open:
                self.fin_after_open = False
                self._queue_fin()
                st = self.state
        else:
            if ack > self.snd_max:
                c.drop("ack_unsent")
                self._send_ack()
                return
            if ack < self.snd_una - max(self.max_snd_wnd, TCP_MAX_WINDOW):
                c.drop("ack_too_old")
                self._challenge_ack()
                return
            if st == TIME_WAIT:
                # nothing in flight, nothing more to send: an acceptable ACK changes nothing
                # (and the state that processing it would touch is released)
                return
            if flags & TCP_ECE and self.ecn_ok:
                c["ECNEchoReceived"] += 1  # ECE never takes the fast path
            if st == LAST_ACK and ack == self.snd_max and self._last_ack_ends(sack_blocks):
                self.snd_una = ack  # the connection ends below (our FIN acknowledged)
            elif not self._rx_ack(seq, ack, wnd, dlen, flags, tsecr, sack_blocks, now):
                return
            st = self.state
            if st == CLOSED:
                return

        # --- our FIN acknowledged?
        if self.fin_queued and self.snd_una > self.fin_seq:
            if st == FIN_WAIT_1:
                self._transition(Event.RCV_ACK_OF_FIN)
                st = FIN_WAIT_2
                if self._read_closed:
                    self.close_at = now + self.tcp.settings.fin_timeout
                self._maybe_lost()
            elif st == CLOSING:
                self._enter_time_wait(Event.RCV_ACK_OF_FIN)
                return
            elif st == LAST_ACK:
                self._destroy()
                self._maybe_lost()
                return
        if st == TIME_WAIT:
            return

        # --- ECN: CWR from the sender, CE marks from the path (RFC 3168 6.1.3)
        if flags & (TCP_CWR | SEG_CE) and self.ecn_ok:
            self._ecn_received(flags, dlen)

        # --- text and FIN
        if dlen or flags & TCP_FIN:
            self._rx_text(seq, data, flags & TCP_FIN)
        self._after_input()

    def _rx_last_ack(
        self, seq32: int, ack32: int, flags: int, seg: memoryview, doff: int
    ) -> bool:
        """LAST-ACK's usual last segment, as header prediction takes ESTABLISHED's: the next
        in sequence, ACK set and nothing else but PSH, no data, at most a timestamp option
        that PAWS lets through, acknowledging everything we sent, our FIN included. It ends
        the connection as :meth:`_rx` would (acceptable, in order, our FIN acknowledged:
        CLOSED), without the general checks; what else _rx would update (TS.Recent, the
        window) goes with the connection. Returns False, having changed nothing, for any
        other segment."""
        if flags & _FAST_FLAGS != TCP_ACK or len(seg) != doff:
            return False
        snd_max = self.snd_max
        if seq32 != self.rcv_nxt & MASK or ack32 != snd_max & MASK or snd_max <= self.snd_una:
            return False
        if doff != TCP_MIN_HLEN:
            if (doff != TCP_TS_HLEN or not self.ts_ok
                    or seg[TCP_MIN_HLEN:TCP_MIN_HLEN + 4] != TCP_TS_PREFIX):
                return False
            if ((TCP_TS_OPTION.unpack_from(seg, TCP_MIN_HLEN)[1] - self.ts_recent)
                    & MASK) >= HALF:
                return False  # PAWS has a say
        elif self.ts_ok:
            return False  # RFC 7323: a segment without the option after it was agreed
        if not self._last_ack_ends(None):
            return False
        self.snd_una = snd_max
        self._destroy()
        self._maybe_lost()
        return True

    def _last_ack_ends(self, sack_blocks: list[tuple[int, int]] | None) -> bool:
        """Whether an ACK of everything we sent, our FIN included, in LAST-ACK may skip
        :meth:`_rx_ack`: the connection ends with it, and what that would update (RTT, rate
        sample, congestion window, window) goes with the connection, as nothing here keeps
        per-destination metrics (Linux's tcp_metrics). Not when anything could still be
        told: a loss episode, a probe or SACK news (their counters), a paused writer
        (resume_writing before connection_lost), telemetry (the last sample). About 30k
        instructions per passively closed connection (bench_tcp_conn_cost)."""
        rec = self.recovery
        tlp = rec.tlp
        return (
            self.snd_max > self.fin_seq  # our FIN went out: an ACK of SND.MAX covers it
            and not sack_blocks and not rec.in_recovery and not rec.in_loss and not rec.frto
            and (tlp is None or tlp.end_seq is None) and self.writable_at < 0
            and not self._telemetry.active and self._observers is None
        )

    def _paws_passes(self, seq: int, ack32: int, wnd: int, flags: int, seglen: int,
                     tsval: int) -> bool:
        """A segment whose timestamp is older than TS.Recent that PAWS still lets through, as
        Linux's tcp_paws_discard does: one tick behind (TCP_PAWS_WINDOW), or a reordered pure
        duplicate ACK (tcp_disordered_ack: the next sequence number, SND.UNA acknowledged, no
        window update, and a timestamp at most an RTO behind). A reordered SACK-carrying ACK
        thus still counts as the duplicate ACK it is."""
        behind = (self.ts_recent - tsval) & MASK
        if behind <= PAWS_WINDOW:
            return True
        if not flags & TCP_ACK or seglen or seq != self.rcv_nxt:
            return False
        if unwrap(ack32, self.snd_una) != self.snd_una:
            return False
        wl1 = self.snd_wl1
        if seq > wl1 or (seq == wl1 and (wnd << self.snd_wscale) > self.snd_wnd):
            return False  # it would update the window
        if behind > self.rtt.current() * 1024:
            return False
        self.c["PAWSDisorderedAck"] += 1
        return True

    # ---------------------------------------------------------------------------------
    def _rx_ack(
        self,
        seq: int,
        ack: int,
        wnd: int,
        dlen: int,
        flags: int,
        tsecr: int,
        sack_blocks: list[tuple[int, int]] | None,
        now: float,
    ) -> bool:
        """Process an acceptable ACK field in a synchronized state (RFC 9293 3.10.7.4,
        fifth), with RTT sampling, delivery-rate samples, congestion control and loss
        recovery."""
        snd_una = self.snd_una
        wnd <<= self.snd_wscale
        sb = self.sb
        rec = self.recovery
        newly_sacked = 0
        dsack: tuple[int, int] | None = None
        frto = rec.frto
        orig = False
        if frto and ack > snd_una:
            # F-RTO's sign (RFC 5682 3.1): data never retransmitted acknowledged...
            orig = rec.frto_acked_originals(snd_una, ack)
        if sack_blocks:
            dsack = find_dsack(sack_blocks, ack)  # below this segment's own ACK (RFC 2883)
            pre = rec.frto_sacked() if frto and not orig else 0
            newly_sacked = sb.add(sack_blocks, ack if ack > snd_una else snd_una, self.snd_max)
            if frto and not orig and newly_sacked:
                orig = rec.frto_sacked() > pre  # ... or SACKed
        if ack > snd_una:
            if rec.in_loss or rec.in_recovery or sb.ranges or sb.dup_bytes:
                prior_in_flight = self._in_flight()
            else:
                prior_in_flight = self.snd_nxt - snd_una  # _in_flight()'s usual answer
            acked = ack - snd_una
            # drop acknowledged data from the send buffer
            n = min(ack, self.buf_seq + self.sndbuf.size) - self.buf_seq
            if n > 0:
                self.sndbuf.consume(n)
                self.buf_seq += n
            self.snd_una = ack
            if self.snd_nxt < ack:
                self.snd_nxt = ack
            delivered = acked + newly_sacked
            if sb.ranges or sb.rexmit:
                before = sb.sacked_bytes
                sb.trim(ack)
                delivered -= before - sb.sacked_bytes  # SACKed earlier: delivered then
            if sb.dup_bytes:
                # without SACK each duplicate ACK counted one segment delivered; this ACK
                # covers those (RFC 6937: less one SMSS per preceding duplicate ACK)
                used = acked - self.mss
                if used > sb.dup_bytes:
                    used = sb.dup_bytes
                if used > 0:
                    delivered -= used
                    sb.dup_bytes -= used
                if not rec.in_recovery:
                    sb.dup_bytes = 0
            self.una_since = now
            self.retries = 0
            self.probes = 0
            # RTT: timestamps when we have them, else the one timed segment (Karn)
            rtt: float | None = None
            if self.ts_ok and tsecr:
                # _ts_now(), inline
                ms = ((int(now * TS_HZ) + self.ts_offset) - tsecr) & MASK
                if ms < HALF:
                    rtt = ms / 1000.0
            elif self.rtt_seq is not None and ack >= self.rtt_seq:
                rtt = now - self.rtt_time
                self.rtt_seq = None
            if rtt is not None:
                self.rtt.sample(rtt)
            else:
                self.rtt.reset_backoff()
            if rec.undo_ts is not None and tsecr and self.ts_ok:
                rec.eifel(ack, tsecr, now)  # an echo older than our first retransmission?
            if rec.frto and rec.in_loss:
                rec.frto_ack(ack, True, orig, newly_sacked > 0, now)
            if flags & TCP_ECE and self.ecn_ok:
                # ECN echo (RFC 3168 6.1.2): cc.on_ecn at most once per window; on_ack then
                # sees rs.ece and does not grow the window on this ACK
                self._ecn_echo(ack, now)
            self._ack_event(prior_in_flight, delivered, acked, newly_sacked, rtt, flags, now)
            # the retransmission timer (RFC 6298 5.2, 5.3)
            if ack >= self.snd_max:
                self.rto_at = None
            else:
                self.rto_at = now + self._rto()
            if rec.frto_send:
                rec.frto_new_data()
            tlp = rec.tlp
            if tlp is not None:
                if tlp.end_seq is None and dsack is None:
                    # the probe timeout is re-armed after the output this ACK releases, which
                    # re-arms it anyway when new data leaves: once, not twice (_pto_due)
                    self._pto_due = True
                else:
                    rec.schedule_tlp(now)  # before the probe's ACK and the D-SACK are taken
            at = self.writable_at
            if at >= 0 and self.sndbuf.size - self.sndbuf_limit <= at:
                self.writable_at = -1
                self._writable()
        elif ack == snd_una and self.snd_max > snd_una:
            if flags & TCP_ECE and self.ecn_ok:
                self._ecn_echo(ack, now)
            if rec.frto and rec.in_loss:
                rec.frto_ack(ack, False, orig, True, now)
            # RFC 5681's duplicate ACK, or (RFC 6675) any ACK that SACKs new data, even one
            # riding on data the peer sends; an ACK whose only news is a D-SACK is not one
            # (RFC 6675 2: it reports nothing newly held)
            if newly_sacked or (
                dlen == 0 and not flags & (TCP_SYN | TCP_FIN) and wnd == self.snd_wnd
                and dsack is None
            ):
                prior_in_flight = self._in_flight()
                delivered = rec.on_dupack(now, newly_sacked)
                if delivered:
                    self._ack_event(prior_in_flight, delivered, 0, newly_sacked, None, flags,
                                    now)
                elif self._telemetry.active or self._observers is not None:
                    self._emit(now)
        if dsack is not None:
            rec.on_dsack(dsack[0], dsack[1], now)
        tlp = rec.tlp
        if tlp is not None and tlp.end_seq is not None:
            rec.on_probe_ack(ack, ack > snd_una, dsack, newly_sacked > 0 or dlen > 0, now)
        # window update (RFC 9293 3.10.7.4, with the SND.WL1/WL2 rule)
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            if wnd != self.snd_wnd:
                if wnd > self.snd_wnd:
                    self.persist_at = None
                self.snd_wnd = wnd
                if wnd > self.max_snd_wnd:
                    self.max_snd_wnd = wnd
            self.snd_wl1 = seq
            self.snd_wl2 = ack
        return True

    def _ack_event(
        self, prior_in_flight: int, delivered: int, newly_acked: int, newly_sacked: int,
        rtt: float | None, flags: int, now: float,
    ) -> None:
        """One ACK that delivered data (or, without SACK, a duplicate ACK standing for a
        segment delivered): the rate sample, recovery progress, ``cc.on_ack``, telemetry."""
        cc = self.cc
        mss = self.mss
        rate = self.rate
        valid = rate.on_ack(self.snd_una, self.sb.ranges if newly_sacked else None,
                            delivered, now)
        sample = rate.last_rtt if rate.last_rtt is not None else rtt
        if sample is not None:
            self.last_rtt = sample
            if self.min_rtt is None or sample < self.min_rtt:
                self.min_rtt = sample
        if valid:
            # draft 3.3 (and Linux): a sample shorter than the minimum RTT comes from ACK
            # compression and would overstate the rate
            if self.min_rtt is not None and rate.interval < self.min_rtt:
                valid = False
            else:
                self.delivery_rate = rate.rate
        rec = self.recovery
        rack = rec.rack
        if rack is not None and not rec.in_loss:
            # RACK (RFC 8985 6.2): what this ACK delivered, then what is now deemed lost
            if rack.on_delivered(rate.newly_delivered, now, self.min_rtt):
                self.c["SACKReorder"] += 1
            rec.rack_mark(now)
        in_recovery = rec.in_recovery
        exiting = False
        if in_recovery:
            if self.snd_una >= rec.recover:
                exiting = True
            else:
                rec.partial_ack(newly_acked, delivered)  # RFC 6582's partial ACK; PRR
        elif rec.in_loss and self.snd_una >= rec.recover:
            rec.end_loss()
        sb = self.sb
        if rec.in_loss or rec.in_recovery or sb.ranges or sb.dup_bytes:
            in_flight = self._in_flight()
        else:
            in_flight = self.snd_nxt - self.snd_una  # _in_flight()'s usual answer
        newly_lost = rec.newly_lost
        rec.newly_lost = 0
        cc.on_ack(RateSample(
            now, delivered, newly_acked, newly_lost, rate.prior_delivered, rate.delivered,
            rate.interval if valid else 0.0, rate.rate if valid else 0.0,
            rate.rate_app_limited, sample, self.min_rtt, self.rtt.srtt, prior_in_flight,
            in_flight, bool(flags & TCP_ECE) and self.ecn_ok, in_recovery, mss,
        ))
        if exiting:
            rec.exit_recovery(now)
        if self._telemetry.active or self._observers is not None:
            self._emit(now)

    def _enter_time_wait(self, event: Event, *, send_ack: bool = False) -> None:
        if send_ack:
            self._send_ack()
        tcp = self.tcp
        if tcp.tw_count >= tcp.settings.max_tw_buckets:
            # tcp.max_tw_buckets reached: as Linux's tcp_time_wait when it gets no bucket,
            # no TIME-WAIT (the ACK owed is sent above): straight to CLOSED
            tcp.time_wait_overflow()
            self._destroy()
            self.sndbuf.clear()
            self._deliver()
            self._maybe_lost()
            return
        tcp.tw_count += 1
        self._transition(event)
        self.rto_at = None
        self.persist_at = None
        self.delack_at = None
        self.ka_at = None
        self.pace_at = self.reo_at = self.pto_at = None
        self._pto_due = False
        self.close_at = self._clock() + 2 * self.tcp.settings.msl
        self._release_for_time_wait()
        self._deliver()
        self._maybe_lost()
        self._arm()

    def _release_for_time_wait(self) -> None:
        """TIME-WAIT only answers segments (with an ACK, a challenge ACK or by ending) and
        waits for its timer: it sends no data and processes no ACK (:meth:`_rx` stops
        before them), so what sending and loss recovery keep goes, as Linux trades the
        socket for a small tcp_timewait_sock. The send buffer and the scoreboard become
        shared empty stand-ins (like NO_OOO), the rate estimator and loss recovery drop
        their queues and RACK/TLP state. What TIME-WAIT uses stays: the 4-tuple,
        RCV.NXT/SND.NXT, the timestamps state (PAWS, RFC 6191 reuse), the ACK's window and
        checksum state, the timer, and what :meth:`describe` reports (the congestion
        control, the RTT estimator, the delivered and lost totals). Data the application
        has not read yet stays too (``rx_chunks``)."""
        self.sndbuf = NO_SNDBUF
        self.sb = NO_SCOREBOARD
        self.rate.release()
        self.recovery.release()
        self._gso_offloads = _NO_OFFLOADS
        if not self.rx_chunks:
            self.rx_chunks = _NO_CHUNKS
        if self._lost:
            self.app = None  # told already (on_closed): see _lose

    def _on_reset(self) -> None:
        st = self.state
        if st == SYN_RECEIVED:
            if self.active:
                self._fail(errno.ECONNREFUSED)
            else:
                # back to LISTEN: just forget the embryonic connection (RFC 9293)
                self.c["AttemptFails"] += 1
                self._destroy()
            return
        if st in (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
            self.c["EstabResets"] += 1
            self._fail(errno.ECONNRESET)
        else:
            # CLOSING, LAST-ACK, TIME-WAIT: just close
            self._destroy()
            self._maybe_lost()

    def _challenge_ack(self) -> None:
        """RFC 5961's challenge ACK, rate limited per stack."""
        if self.tcp.challenge_allowed():
            self.c["ChallengeACKs"] += 1
            self._send_ack()

    # =================================================================================
    # after input: deliver, send, acknowledge
    # =================================================================================
    #: output waits for the end of the received burst (TCP.defer_output)
    _tx_soon = False

    def _flush_output(self) -> None:
        self._tx_soon = False
        if self.state != CLOSED:
            self._output()
            self._arm()

    def _after_input(self) -> None:
        """The last step of taking a segment in: its effects are complete, so the
        application now hears of them (events kept meanwhile, then data), and then what the
        windows allow is sent, and the ACK if one is due."""
        self._busy = False
        if self._deferred is not None:
            self._run_deferred()
        if self.state == CLOSED:
            return
        # _output, unless it would find nothing to send (a receiver's usual case, per segment)
        nxt = self.snd_nxt
        buf_end = self.buf_seq + self.sndbuf.size
        send = nxt < buf_end or self.recovery.in_recovery or (nxt == buf_end and self.fin_queued)
        if self.rx_chunks or (self.fin_received and not self._eof_delivered):
            # While the end of the burst is to send an ACK (_flush_ack) and nothing leaves
            # before it, in-order data waits for it there: one delivery per burst (one join,
            # one data_received) instead of one per segment, and the ACK still offers the
            # window the application left
            if send or not self._ack_soon or self._ack_now or self.fin_received:
                self._deliver()
                if self.state == CLOSED:
                    return
                nxt = self.snd_nxt
                buf_end = self.buf_seq + self.sndbuf.size
                send = (nxt < buf_end or self.recovery.in_recovery
                        or (nxt == buf_end and self.fin_queued))
        if send:
            if self._ack_now or self.last_ack_sent != self.rcv_nxt:
                self._output()  # an ACK is due: it leaves now, on data if there is room
            elif not self._tx_soon:
                # a sender's ACK: what it lets out goes after the rest of the burst
                self._tx_soon = True
                self.tcp.defer_output(self)
        if self._ack_now:
            self._ack_now = False
            self._send_ack()

    # =================================================================================
    # timers
    # =================================================================================
    def _arm(self) -> None:
        if self._pto_due:
            self._pto_due = False
            self.recovery.schedule_tlp(self._clock())
        # the earliest of the eight deadlines (unrolled: this runs after every segment)
        when = self.rto_at
        d = self.persist_at
        if d is not None and (when is None or d < when):
            when = d
        d = self.delack_at
        if d is not None and (when is None or d < when):
            when = d
        d = self.ka_at
        if d is not None and (when is None or d < when):
            when = d
        d = self.close_at
        if d is not None and (when is None or d < when):
            when = d
        d = self.pace_at
        if d is not None and (when is None or d < when):
            when = d
        d = self.reo_at
        if d is not None and (when is None or d < when):
            when = d
        d = self.pto_at
        if d is not None and (when is None or d < when):
            when = d
        if when is None:
            return
        t = self._timer
        if t is not None and not t.cancelled and self._timer_when <= when:
            return  # fires early and re-arms
        if t is not None:
            t.cancel()
        self._timer = self.stack.call_at(when, self._on_timer)
        self._timer_when = when

    def _on_timer(self) -> None:
        self._timer = None
        if self.state == CLOSED:
            return
        now = self._clock()
        if self._pto_due:  # an ACK's, before the output it released (which _arm follows)
            self._pto_due = False
            self.recovery.schedule_tlp(now)
        if self.close_at is not None and now >= self.close_at:
            self.close_at = None
            self._destroy()
            self._maybe_lost()
            return
        if self.pto_at is not None and now >= self.pto_at:
            # before the RTO: a probe due with it goes instead of it (as Linux's one timer)
            self.recovery.on_pto(now)
            if self.state == CLOSED:
                return
        if self.rto_at is not None and now >= self.rto_at:
            self.rto_at = None
            self._on_rto(now)
            if self.state == CLOSED:
                return
        if self.persist_at is not None and now >= self.persist_at:
            self.persist_at = None
            self._on_persist(now)
            if self.state == CLOSED:
                return
        if self.delack_at is not None and now >= self.delack_at:
            self.delack_at = None
            if self.state in _SYNCHRONIZED and self.last_ack_sent != self.rcv_nxt:
                self.c["DelayedACKs"] += 1
                self._send_ack()
        if self.ka_at is not None and now >= self.ka_at:
            self.ka_at = None
            self._on_keepalive(now)
            if self.state == CLOSED:
                return
        if self.pace_at is not None and now >= self.pace_at:
            self.pace_at = None
            self._output()
            if self.state == CLOSED:
                return
        if self.reo_at is not None and now >= self.reo_at:
            self.reo_at = None
            rec = self.recovery
            if rec.rack is not None and not rec.in_loss and self.state in _SENDING:
                rec.rack_mark(now)
                self._output()
        self._arm()

    def _give_up(self) -> None:
        self._fail(self.soft_error or errno.ETIMEDOUT)

    def _on_rto(self, now: float) -> None:
        s = self.tcp.settings
        st = self.state
        c = self.c
        if st == SYN_SENT or st == SYN_RECEIVED:
            limit = s.syn_retries if st == SYN_SENT else s.synack_retries
            if self.retries >= limit:
                if st == SYN_RECEIVED and not self.active:
                    c["AttemptFails"] += 1
                    self._destroy()
                else:
                    self._give_up()
                return
            self.retries += 1
            self.rtt.back_off()
            c["RetransSegs"] += 1
            self._send_syn(ack=st == SYN_RECEIVED)
            self.rto_at = now + self.rtt.current()
            return
        if self.snd_una >= self.snd_max:
            return
        ut = self.opts.user_timeout
        if self.retries >= s.retries2 or (ut and now - self.una_since >= ut):
            self._give_up()
            return
        self.retries += 1
        c["RTOs"] += 1
        self.recovery.on_rto(now, self.retries, s.frto)  # go-back-N, F-RTO
        self.rto_at = now + self._rto()
        if self._telemetry.active or self._observers is not None:
            self._emit(now)

    def _on_persist(self, now: float) -> None:
        unsent = self.buf_seq + self.sndbuf.size - self.snd_nxt
        if unsent <= 0 or self.snd_nxt != self.snd_una or self.state not in _SENDING:
            self.probes = 0
            return
        ut = self.opts.user_timeout
        if ut and now - self.una_since >= ut:
            self._give_up()
            return
        if self.snd_wnd == 0:
            # a zero-window probe: an old sequence number makes the peer answer with an ACK
            self.c["WindowProbes"] += 1
            self._send(self.snd_una - 1, TCP_ACK)
            self.probes += 1
            self.persist_at = now + min(self.rtt.current() * (1 << self.probes),
                                        self.tcp.settings.rto_max)
        else:
            # the window is open but too small to be worth it: the SWS override timer
            self.probes = 0
            self._output(force=True)

    def _on_keepalive(self, now: float) -> None:
        s = self.tcp.settings
        if self.state not in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2):
            return
        idle = now - self.last_rx
        if idle < s.keepalive_time:
            self.ka_at = self.last_rx + s.keepalive_time
            return
        if self.snd_max > self.snd_una or self.buf_seq + self.sndbuf.size > self.snd_nxt:
            self.ka_at = now + s.keepalive_time  # data in flight: the RTO is watching
            return
        if self.ka_probes >= s.keepalive_probes:
            self._give_up()
            return
        self.c["KeepAliveProbes"] += 1
        self._send(self.snd_una - 1, TCP_ACK)
        self.ka_probes += 1
        self.ka_at = now + s.keepalive_intvl

    # =================================================================================
    # ICMP errors
    # =================================================================================
    def icmp_error(self, err: int, seq32: int, mtu: int | None, local: bool) -> None:
        c = self.c
        st = self.state
        if st == CLOSED:
            return
        seq = unwrap(seq32, self.snd_una)
        if not local and not self.snd_una <= seq < max(self.snd_max, self.snd_una + 1):
            c.drop("icmp_out_of_window")  # RFC 5927: not for data in flight
            return
        if mtu is not None:
            if not local:  # our own IP's EMSGSIZE already reflects what it knows
                update = getattr(self._ip, "update_path_mtu", None)
                if update is not None:
                    update(self.remote, mtu)
            self._pmtu_changed(mtu)
            return
        if st == SYN_SENT:
            # Linux: an unreachable error for a SYN ends the attempt with that error
            self._fail(err)
        elif st == SYN_RECEIVED and not self.active:
            c["AttemptFails"] += 1
            self._destroy()
        else:
            self.soft_error = err
            c["SoftErrors"] += 1

    def _pmtu_changed(self, mtu: int) -> None:
        """An ICMP "fragmentation needed" (or a local EMSGSIZE) for data in flight. As Linux's
        tcp_v4_mtu_reduced, the MSS follows the path MTU the IP layer recorded, not the
        reported value: IP raises forged tiny MTUs to its minimum (552, Linux's min_pmtu),
        so a forged MTU of 68 cannot shrink segments below about 500 bytes."""
        old = self.mss
        self._compute_mss(self._ip.path_mtu(self.remote))
        if self.mss < old:
            self.c["PMTUUpdates"] += 1
            if self._gso_max:
                # a path below the 576-byte datagram every host accepts: no super-segments
                self._gso_max = 0 if self.mss < TCP_DEFAULT_MSS else self._gso_max
            if self.snd_una < self.snd_max and self.state in _SENDING:
                # resend what was too big at once (Linux tcp_simple_retransmit)
                self.snd_nxt = self.snd_una
                self._output(force=True)
                self._arm()

    # =================================================================================
    # ending
    # =================================================================================
    def _destroy(self) -> None:
        """Leave the tables, stop the timer; CLOSED."""
        if self.state == TIME_WAIT:
            self.tcp.tw_count -= 1
        self._set_state(CLOSED)
        conns = self.tcp.conns
        if conns.get(self.key) is self:  # self.tcp.forget(self)
            del conns[self.key]
        if self.ooo is not NO_OOO:
            self.ooo.clear()  # give its bytes back to the stack-wide out-of-order pool
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.rto_at = self.persist_at = self.delack_at = self.ka_at = self.close_at = None
        self.pace_at = self.reo_at = self.pto_at = None
        if self.listener is not None:
            self.listener.forget(self)

    def _fail(self, err: int, *, report: bool = True) -> None:
        st = self.state
        if st in (SYN_SENT, SYN_RECEIVED):
            self.c["AttemptFails"] += 1
        self._destroy()
        self.sndbuf.clear()
        self._lose(os_error(err))

    def _lose(self, exc: Exception | None) -> None:
        """on_closed, once: the end of the connection, or of the attempt, for the
        application."""
        if self._lost:
            return
        app = self.app
        if not self._made:
            if exc is None:
                self._lost = True  # closed before it opened: nothing to tell
                return
            self.app = None  # the attempt failed: on_closed once, and nothing after it
        else:
            self._lost = True
        if app is None:
            return  # a passive connection nobody accepted: nobody to tell
        self.writable_at = -1
        if self.state == TIME_WAIT:
            # nothing more to tell: TIME-WAIT does not keep the application's transport and
            # protocol alive (as a Linux tcp_timewait_sock has no socket behind it)
            self.app = None
        if not self._app_later(app.on_closed, exc):
            app.on_closed(exc)

    def _maybe_lost(self) -> None:
        """on_closed(None) once both directions are done for the application."""
        if self._lost or not self._made:
            return
        if self._app_later(self._maybe_lost):
            return  # after the segment: its data may not be delivered yet
        if not self._read_closed and (
            self.rx_chunks or (self.fin_received and not self._eof_delivered)
        ):
            return  # the application has not read everything yet: after it has
        st = self.state
        fin_acked = self.fin_queued and self.snd_una > self.fin_seq
        if st in (CLOSED, TIME_WAIT) or (self._read_closed and fin_acked):
            self._lose(None)

    def reset_quietly(self) -> None:
        """Stack stopping or listener closing: send RST if synchronized, then forget."""
        if self.state in _SYNCHRONIZED or self.state == SYN_RECEIVED:
            if self.state != TIME_WAIT:
                self._send_rst(self.snd_nxt)
        self._destroy()
        if self._made:
            self._lose(os_error(errno.ECONNABORTED))

    def _connection_made(self) -> None:
        self._made = True
        app = self.app
        if app is not None and not self._app_later(app.on_established):
            app.on_established()

    def attach(self, app: ConnectionApp) -> None:
        """A listener accepted this connection: give it its application."""
        self.app = app
        self._connection_made()
        if self.state == CLOSED:
            self._maybe_lost()
            return
        if self.rx_chunks or self.fin_received:
            self._deliver()
        if self.state in (TIME_WAIT, CLOSED):
            self._maybe_lost()

    def _writable(self) -> None:
        app = self.app
        if app is not None and not self._app_later(app.on_writable):
            app.on_writable()

    # =================================================================================
    # the application's calls (TCPTransport passes asyncio.Transport's on)
    # =================================================================================
    def is_reading(self) -> bool:
        return self._reading and not self._read_closed

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading:
            return
        self._reading = True
        if self.rx_chunks or (self.fin_received and not self._eof_delivered):
            self.stack.call_soon(self._resume_delivery)

    def _resume_delivery(self) -> None:
        if self._lost:
            return
        self._deliver()
        if self.state in _RECEIVING:
            self._window_update()
        if self.state in (TIME_WAIT, CLOSED):
            self._maybe_lost()
        if self.state != CLOSED:
            self._arm()

    def write_buffer_size(self) -> int:
        """Bytes beyond the send buffer (``sndbuf``): what a socket transport would hold in
        user space because the kernel's buffer was full."""
        extra = self.sndbuf.size - self.sndbuf_limit
        return extra if extra > 0 else 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` and send what the windows allow (RFC 9293 3.10.2, SEND)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._closing or self.state not in (*_SENDING, SYN_SENT, SYN_RECEIVED):
            self.c.drop("write_after_close")
            return
        if self.buf_seq + self.sndbuf.size - self.snd_nxt < self.mss:
            self._check_app_limited()
        self.sndbuf.append(data)
        self._output()
        self._arm()

    def _check_app_limited(self) -> None:
        """The application writes after the sender ran (nearly) dry: if the window had room
        and no loss is being repaired, the rate samples until now's flight is delivered
        measure the application, not the path (draft 3.4)."""
        rec = self.recovery
        if rec.in_recovery or rec.in_loss:
            return
        in_flight = self._in_flight()
        if in_flight < self.cc.cwnd:
            self.rate.mark_app_limited(in_flight)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        if self.buf_seq + self.sndbuf.size - self.snd_nxt < self.mss:
            self._check_app_limited()
        for data in list_of_data:
            if self._eof_written:
                raise RuntimeError("Cannot call write() after write_eof()")
            if self._closing or not data:
                continue
            self.sndbuf.append(data)
        self._output()
        self._arm()

    def write_eof(self) -> None:
        """Our FIN after the data queued (RFC 9293 3.10.4, CLOSE with reading still open)."""
        if self._eof_written or (self._closing and self.fin_queued):
            return
        self._eof_written = True
        self._queue_fin()

    def _queue_fin(self) -> None:
        if self.fin_queued:
            return
        st = self.state
        if st == SYN_RECEIVED:
            # our SYN is unacknowledged: a FIN now would make the retransmission timer
            # resend from SND.UNA = ISS, before the first byte of the send buffer
            self.fin_after_open = True
            return
        if st == SYN_SENT:
            self._destroy()
            return
        if st != ESTABLISHED and st != CLOSE_WAIT:
            return
        self._transition(Event.CLOSE)
        self.fin_queued = True
        self.fin_seq = self.buf_seq + self.sndbuf.size
        self._output()
        self._arm()

    def close(self) -> None:
        """RFC 9293 3.10.4 CLOSE: our FIN after the data, and received data is unwanted."""
        if self._closing:
            return
        self._closing = True
        self._read_closed = True
        st = self.state
        if st == CLOSED:
            self.stack.call_soon(self._maybe_lost)
            return
        if st == SYN_SENT:
            self._destroy()
            self.stack.call_soon(self._lose, None)
            return
        if self.rx_chunks:
            # unread data: Linux resets rather than pretend an orderly close (RFC 2525 2.17)
            self.c["AbortOnClose"] += 1
            self.abort()
            return
        self._queue_fin()
        st = self.state
        if st == FIN_WAIT_2:
            self.close_at = self._clock() + self.tcp.settings.fin_timeout
            self._arm()
        # on_closed soon (never from inside close()) if nothing is left to wait for; else
        # what ends the wait (the ACK of our FIN, the end of TIME-WAIT, a reset, a timeout)
        # calls _maybe_lost itself, and a timer per close would find nothing to do
        if st == TIME_WAIT or st == CLOSED or (self.fin_queued and self.snd_una > self.fin_seq):
            self.stack.call_soon(self._maybe_lost)

    def abort(self) -> None:
        """RFC 9293 3.10.5 ABORT: RST if synchronized, then forget the connection."""
        self._closing = True
        self._read_closed = True
        st = self.state
        if st == CLOSED:
            if not self._lost:
                self.stack.call_soon(self._lose, None)
            return
        if (st in _SYNCHRONIZED and st != TIME_WAIT) or st == SYN_RECEIVED:
            if st in (ESTABLISHED, CLOSE_WAIT):
                self.c["EstabResets"] += 1
            self._send_rst(self.snd_nxt)
        elif st == SYN_SENT:
            self.c["AttemptFails"] += 1
        self._destroy()
        self.sndbuf.clear()
        if self._made:
            self.stack.call_soon(self._lose, None)
        else:
            self._lose(os_error(errno.ECONNABORTED))

    def is_closing(self) -> bool:
        return self._closing or self._lost or self.state == CLOSED
