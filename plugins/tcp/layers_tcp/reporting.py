"""What a connection tells about itself: telemetry samples (:class:`layers.telemetry.
ConnectionSample`) to the stack's subscribers and the connection's own, ``describe()`` for
``layers netstat``/``layers ss -i`` and the transport's ``get_extra_info("tcp")``, and the
queue sizes and names those print.

:class:`Reporting` is a mixin of :class:`layers_tcp.connection.Connection`; it owns the
connection's own telemetry subscribers (``_observers``) and changes nothing else: it only reads
the TCB, the congestion control and the recovery state. When samples are emitted (every ACK
that changes the connection, while someone listens) is the connection's decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from layers.telemetry import ConnectionSample, Observer, Subscription, Telemetry
from layers.wire.ipv6 import ip_str
from layers_tcp.states import SYNCHRONIZED

if TYPE_CHECKING:
    from layers.congestion import CongestionControl
    from layers_tcp.buffers import SendBuffer
    from layers_tcp.rate import RateEstimator
    from layers_tcp.recovery import LossRecovery
    from layers_tcp.rtt import RttEstimator
    from layers_tcp.states import State

_SYNCHRONIZED = SYNCHRONIZED


class Reporting:
    """Telemetry and descriptions of :class:`layers_tcp.connection.Connection` (see the module
    docstring)."""

    if TYPE_CHECKING:
        # what reports read: the connection's (connection.py)
        stack: Any
        state: State
        local: int
        lport: int
        remote: int
        rport: int
        sndbuf: SendBuffer
        rx_bytes: int
        snd_wnd: int
        mss: int
        cc: CongestionControl
        rtt: RttEstimator
        rate: RateEstimator
        recovery: LossRecovery
        min_rtt: float | None
        last_rtt: float | None
        delivery_rate: float
        retrans_total: int
        ecn_reductions: int
        ecn_ce_received: int
        ts_ok: bool
        sack_ok: bool
        snd_wscale: int
        rcv_wscale: int
        ecn_ok: bool
        _telemetry: Telemetry

        #: this connection's own telemetry subscribers (:meth:`subscribe`), made on first use
        _observers: Telemetry | None

        def _in_flight(self) -> int: ...

    @property
    def send_q(self) -> int:
        return self.sndbuf.size

    @property
    def recv_q(self) -> int:
        return self.rx_bytes

    @property
    def flow(self) -> str:
        """``"10.0.0.1:40000->10.0.0.2:80"``, as telemetry names the connection."""
        return (f"{ip_str(self.local)}:{self.lport}->"
                f"{ip_str(self.remote)}:{self.rport}")

    def in_flight(self) -> int:
        """Bytes in flight (RFC 6675's pipe in recovery)."""
        if self.state not in _SYNCHRONIZED:
            return 0
        return self._in_flight()

    def sample(self) -> ConnectionSample:
        """The connection now, as telemetry reports it."""
        cc = self.cc
        rtt = self.rtt
        srtt = rtt.srtt
        return ConnectionSample(
            time=self.stack.now, flow=self.flow, state=self.state.name, cc=cc.name,
            cwnd=cc.cwnd, ssthresh=cc.ssthresh, in_flight=self.in_flight(), srtt=srtt,
            rttvar=None if srtt is None else rtt.rttvar, min_rtt=self.min_rtt,
            rtt=self.last_rtt, rto=rtt.current(), delivered=self.rate.delivered,
            delivery_rate=self.delivery_rate, pacing_rate=cc.pacing_rate,
            retransmits=self.retrans_total, lost=self.recovery.lost_total, send_q=self.sndbuf.size,
            snd_wnd=self.snd_wnd, mss=self.mss, cc_state=dict(cc.state()),
            ecn_reductions=self.ecn_reductions, ecn_ce_received=self.ecn_ce_received,
        )

    def _emit(self, now: float) -> None:
        """One sample to the stack's subscribers and this connection's (only called when
        someone listens)."""
        obs = self._observers
        stack_tel = self._telemetry
        if not stack_tel.active and (obs is None or not obs.active):
            return
        sample = self.sample()
        if stack_tel.active:
            stack_tel.emit(sample)
        if obs is not None and obs.active:
            obs.emit(sample)

    def subscribe(self, callback: Observer, *, interval: float = 0.0) -> Subscription:
        """Call ``callback(sample)`` (a :class:`layers.telemetry.ConnectionSample`) at every
        ACK that changes this connection's state, or at most once per ``interval`` seconds.
        From a StreamWriter: ``writer.transport.subscribe(...)``. ``close()`` the returned
        subscription to stop."""
        if self._observers is None:
            self._observers = Telemetry()
        return self._observers.subscribe(callback, interval=interval)

    def describe(self) -> dict[str, Any]:
        """The connection for ``layers netstat`` and ``layers ss -i`` (control socket)."""
        cc = self.cc
        rtt = self.rtt
        srtt = rtt.srtt
        return {
            "proto": "tcp",
            "local": f"{ip_str(self.local)}:{self.lport}",
            "remote": f"{ip_str(self.remote)}:{self.rport}",
            "state": self.state.name,
            "send_q": self.send_q,
            "recv_q": self.recv_q,
            "mss": self.mss,
            "cc": cc.name,
            "cwnd": cc.cwnd,
            "ssthresh": cc.ssthresh,
            "rto": round(rtt.current(), 4),
            "srtt": None if srtt is None else round(srtt, 6),
            "rttvar": None if srtt is None else round(rtt.rttvar, 6),
            "min_rtt": None if self.min_rtt is None else round(self.min_rtt, 6),
            "delivered": self.rate.delivered,
            "delivery_rate": round(self.delivery_rate, 1),
            "pacing_rate": cc.pacing_rate,
            "retransmits": self.retrans_total,
            "lost": self.recovery.lost_total,
            "in_flight": self.in_flight(),
            "snd_wnd": self.snd_wnd,
            "cc_state": dict(cc.state()),
            "app_limited": self.rate.app_limited != 0,
            "ts_ok": self.ts_ok,
            "sack_ok": self.sack_ok,
            "snd_wscale": self.snd_wscale,
            "rcv_wscale": self.rcv_wscale,
            "ecn": self.ecn_ok,
        }

    def __repr__(self) -> str:
        return (f"<Connection {ip_str(self.local)}:{self.lport} -> "
                f"{ip_str(self.remote)}:{self.rport} {self.state.name}>")
