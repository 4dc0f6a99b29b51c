"""The receiving side of a connection: segment text and FIN once a segment is acceptable,
the out-of-order queue and the ACKs and D-SACKs it calls for, and delivery to the application.

:class:`Receive` is a mixin of :class:`layers_tcp.connection.Connection` (like
:mod:`layers_tcp.output`, and for the same reason: every data segment reads and writes the
receive sequence space). It owns RFC 9293 3.10.7.4's seventh and eighth steps
(:meth:`Receive._rx_text`, :meth:`Receive._rx_fin`): trimming to what is new and fits the
window, in-order data into ``rx_chunks`` (views of immutable frames, one copy at delivery), out-
of-order data into the bounded reassembly queue (:mod:`layers_tcp.buffers`), D-SACK reports
(RFC 2883, :mod:`layers_tcp.dsack`), when an ACK is due (every second full-sized segment once
per batch, at once for a hole or its filling, else delayed); and handing data, then EOF, to the
application in pieces (:meth:`Receive._deliver`), with window updates when it reads.

It does not decide whether a segment is acceptable, nor process its ACK, RST or SYN
(:mod:`layers_tcp.connection`; header prediction there takes the in-order case inline), and it
builds no segment (:mod:`layers_tcp.output`).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from layers_tcp.buffers import NO_OOO, Reassembly
from layers_tcp.dsack import dsack_for
from layers_tcp.states import (
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    RECEIVING,
    SYN_RECEIVED,
    SYNCHRONIZED,
    TIME_WAIT,
    Event,
)

if TYPE_CHECKING:
    from layers.counters import Counters
    from layers_tcp.connection import ConnectionApp
    from layers_tcp.protocol import TCP
    from layers_tcp.states import State

#: received data is handed to the application in pieces of about this size (or one larger
#: received segment)
DELIVER_MAX = 64 * 1024
#: an application that takes views gets a chunk at least this large as it is, not joined
#: with its neighbours: a join would be a copy the application then copies again (a GRO
#: super-segment is up to 64 KiB); smaller chunks (MSS-sized) are still joined, because a
#: call per 1448 bytes costs more than copying them
VIEW_ALONE = 8 * 1024
_RECEIVING = RECEIVING
_SYNCHRONIZED = SYNCHRONIZED


def _view(data: bytes | bytearray | memoryview) -> Any:
    """A chunk as an application that takes views gets it (a bytearray chunk is the
    reassembly queue's own, let go of: no longer shared)."""
    return data


class Receive:
    """The receiving side of :class:`layers_tcp.connection.Connection` (see the module
    docstring)."""

    if TYPE_CHECKING:
        # the TCB fields this side reads and writes: the connection's (connection.py)
        stack: Any
        tcp: TCP
        c: Counters
        state: State
        app: ConnectionApp | None
        rcv_nxt: int
        rcv_adv: int
        rcvbuf: int
        rcv_mss: int
        _rcv_mss_cap: int
        adv_mss: int
        rx_chunks: list[bytes | bytearray | memoryview]
        rx_bytes: int
        ooo: Reassembly
        ooo_fin: int | None
        fin_received: bool
        last_ack_sent: int
        snd_nxt: int
        delack_at: float | None
        close_at: float | None
        _sack_recent: int
        _dsack_ok: bool
        _dsack: tuple[int, int] | None
        _read_closed: bool
        _reading: bool
        _made: bool
        _lost: bool
        _busy: bool
        _delivering: bool
        _eof_delivered: bool

        def _send_ack(self) -> None: ...
        def _send_rst(self, seq: int) -> None: ...
        def _arm(self) -> None: ...
        def _fail(self, err: int, *, report: bool = True) -> None: ...
        def _transition(self, event: Event) -> None: ...
        def _enter_time_wait(self, event: Event, *, send_ack: bool = False) -> None: ...
        def _app_later(self, fn: Any, *args: Any) -> bool: ...
        def _rcv_space(self) -> int: ...

    _ack_now = False
    _ack_soon = False

    def _flush_ack(self) -> None:
        """The end of a burst of frames (a ``call_soon``): the data held back meanwhile goes
        to the application in one piece, then the ACK, with the window it left open."""
        self._ack_soon = False
        if self.rx_chunks:
            self._deliver()
        if self.state in _SYNCHRONIZED and self.last_ack_sent != self.rcv_nxt:
            self._send_ack()
            self._arm()

    def _rx_text(self, seq: int, data: memoryview, fin: int) -> None:
        """Segment text and FIN in ESTABLISHED/FIN-WAIT (RFC 9293 3.10.7.4 seventh, eighth)."""
        c = self.c
        st = self.state
        rcv_nxt = self.rcv_nxt
        dlen = len(data)
        if dlen and st not in _RECEIVING:
            c.drop("data_after_fin")
            return
        if dlen and self._read_closed and seq + dlen > rcv_nxt:
            # data for a socket the application closed: Linux answers with RST
            c["AbortOnData"] += 1
            self._send_rst(self.snd_nxt)
            self._fail(errno.ECONNRESET, report=False)
            return
        # trim what we have already
        if seq < rcv_nxt:
            if dlen and self._dsack_ok:
                # its head is old: report the duplicate part (RFC 2883 4.1.1), at once
                self._dsack = (seq, min(seq + dlen, rcv_nxt))
                c["DSACKOldSent"] += 1
                self._ack_now = True
            cut = rcv_nxt - seq
            if cut >= dlen:
                data = data[:0]
                if fin and seq + dlen < rcv_nxt:
                    fin = 0  # a FIN we processed already
            else:
                data = data[cut:]
            dlen = len(data)
            seq = rcv_nxt
        # trim what does not fit the window
        limit = max(self.rcv_adv, rcv_nxt + self._rcv_space())
        if seq + dlen > limit:
            c.drop("beyond_window")
            data = data[: max(limit - seq, 0)]
            dlen = len(data)
            fin = 0
        if seq == rcv_nxt:
            if dlen:
                rcv_nxt = self._queue_in_order(data, dlen)
                if self.ooo:
                    more = self.ooo.pop_ready(rcv_nxt)
                    if more is not None:
                        self.rx_chunks.append(more)  # the reassembly queue let go of it
                        self.rx_bytes += len(more)
                        rcv_nxt += len(more)
                    self._ack_now = True  # a hole was filled (RFC 5681 4.2)
                    self.rcv_nxt = rcv_nxt
                self._ack_timing(rcv_nxt, self.stack.now)
            if fin or (self.ooo_fin is not None and self.ooo_fin == rcv_nxt):
                self._rx_fin()
        elif dlen or fin:
            # out of order: keep it (bounded) and send a duplicate ACK at once. A bare ACK
            # above RCV.NXT (a peer whose timeout rewound SND.NXT sends ACKs at SND.MAX) has
            # nothing to reassemble and draws no duplicate ACK, as in Linux: two ends that
            # both have holes would otherwise answer each other's ACKs forever (an ACK storm)
            self._ack_now = True
            c["OfoQueue"] += 1
            if dlen:
                if self._dsack_ok:
                    dup = dsack_for(seq, seq + dlen, rcv_nxt, self.ooo.ranges())
                    if dup is not None:
                        # held already out of order (RFC 2883 4.1.2)
                        self._dsack = dup
                        c["DSACKOfoSent"] += 1
                self._sack_recent = seq
                budget = max(self.rcvbuf - self.rx_bytes, 0)
                ooo = self.ooo
                if ooo is NO_OOO:
                    tcp = self.tcp
                    ooo = self.ooo = Reassembly(tcp.settings.ooo_max_blocks, tcp.ooo_pool)
                if not ooo.add(seq, data, budget):
                    c.drop("ooo_memory" if self.tcp.ooo_pool.full(dlen) else "ooo_overflow")
            if fin:
                self.ooo_fin = seq + dlen

    def _rx_fin(self) -> None:
        self.rcv_nxt += 1
        self.fin_received = True
        self.ooo_fin = None
        self._ack_now = True
        st = self.state
        if st == FIN_WAIT_2:
            self._enter_time_wait(Event.RCV_FIN, send_ack=True)
            return
        if st == ESTABLISHED or st == SYN_RECEIVED or st == FIN_WAIT_1:
            # (in FIN-WAIT-1 our FIN is not yet acknowledged, else we would be in FIN-WAIT-2:
            # a simultaneous close)
            self._transition(Event.RCV_FIN)
        self.close_at = (None if self.state != TIME_WAIT
                         else self.stack.now + 2 * self.tcp.settings.msl)

    def _deliver(self) -> None:
        """Hand in-order data (then EOF) to the application unless reading is paused."""
        app = self.app
        if app is None or not self._made or self._lost or self._delivering:
            return  # (a nested call: the loop below takes what arrived meanwhile)
        if self._busy:
            self._app_later(self._deliver)
            return
        if self._read_closed:
            self.rx_chunks.clear()
            self.rx_bytes = 0
            return
        # Pieces of about DELIVER_MAX bytes, not one joined copy of everything queued: a join
        # of up to rcvbuf bytes was a fresh large allocation each time, page faults
        # included. If the application pauses reading part way, the rest waits (and counts
        # against the window) until it resumes.
        self._delivering = True
        try:
            on_data = app.on_data
            # an application that copies what it is given anyway (asyncio's stream reader)
            # takes the frame's view: one copy fewer (64 KiB per GRO super-segment)
            views = getattr(app, "takes_views", False)
            copy = _view if views else bytes
            alone = VIEW_ALONE if views else DELIVER_MAX << 8  # (never, without views)
            while self.rx_chunks and self._reading:
                chunks = self.rx_chunks
                self.rx_chunks = []
                self.rx_bytes = 0
                if len(chunks) == 1:  # the usual case: one segment's data
                    on_data(copy(chunks[0]))
                    if self._lost or self._read_closed:
                        return
                    continue
                i = 0
                n = len(chunks)
                while i < n:
                    j = i + 1
                    size = len(chunks[i])
                    if size < alone:
                        while j < n and size < DELIVER_MAX:
                            nxt = len(chunks[j])
                            if nxt >= alone:
                                break
                            size += nxt
                            j += 1
                    on_data(copy(chunks[i]) if j == i + 1 else b"".join(chunks[i:j]))
                    if self._lost or self._read_closed:
                        return
                    i = j
                    if not self._reading and i < n:
                        rest = chunks[i:]
                        self.rx_chunks[:0] = rest
                        self.rx_bytes += sum(map(len, rest))
                        return
            if self.rx_chunks:
                return
            if self.fin_received and not self._eof_delivered and self._reading:
                self._eof_delivered = True
                app.on_eof()
        finally:
            self._delivering = False

    def _queue_in_order(self, data: memoryview, dlen: int) -> int:
        """``dlen`` bytes of in-order data onto the receive queue; returns the new RCV.NXT
        (stored too). A view of an immutable frame is kept as it is: one copy, at delivery."""
        if dlen > self.rcv_mss:
            self.rcv_mss = min(dlen, self._rcv_mss_cap)
        self.rx_chunks.append(data if type(data.obj) is bytes else bytes(data))
        self.rx_bytes += dlen
        rcv_nxt = self.rcv_nxt = self.rcv_nxt + dlen
        return rcv_nxt

    def _ack_timing(self, rcv_nxt: int, now: float) -> None:
        """ACK at least every second full-sized segment (RFC 9293 3.8.6.3), once per batch
        of frames the runner hands over (like Linux after GRO): the ACK goes out from
        ``call_soon``, after the whole batch was taken in; less than that waits for the
        delayed-ACK timer."""
        if rcv_nxt - self.last_ack_sent > self.rcv_mss:
            if not self._ack_soon:
                self._ack_soon = True
                self.stack.call_soon(self._flush_ack)
        elif self.delack_at is None:
            self.delack_at = now + self.tcp.settings.delack

    def _window_update(self) -> None:
        """The application made room: tell the peer if the window grew usefully.

        Linux's rule (``tcp_cleanup_rbuf``): only while the window still open to the peer is
        at most half the buffer, and only once the new one is at least twice that. A peer
        with half the buffer still open is not held back by the window, and an update for
        every segment's worth the application reads was a pure ACK per read that bought the
        sender nothing (about 250 per 64 MiB received through asyncio's stream reader, which
        pauses at 128 KiB). An update must also open at least an MSS (or half the buffer):
        receiver SWS avoidance (RFC 9293 3.8.6.2.2).
        """
        cur = self.rcv_adv - self.rcv_nxt
        if cur < 0:
            cur = 0
        if cur << 1 > self.rcvbuf:
            return
        space = self._rcv_space()
        if space >= cur << 1 and space - cur >= min(self.rcvbuf // 2, self.adv_mss):
            self.c["WindowUpdates"] += 1
            self._send_ack()
