"""The tcp plugin for layers: TCP (RFC 9293) with the asyncio Transport interface.

Registered under the entry point ``tcp``. It provides IP protocol 6 (also serving
:class:`layers.streams.StreamService`, so ``layers.streams.open_connection`` and
``start_server`` use it) and the ``newreno`` congestion control through the
``layers_congestion_controls`` hook, where other plugins may add their own. Settings are
listed in :mod:`layers_tcp.settings`.

Congestion control is a plugin on the :mod:`layers.congestion` contract, NewReno included
(``tcp.congestion_control``, or ``congestion_control=`` per connection; ``--set NAME.KEY=V``
for the algorithm's own settings). The engine keeps what is common to every algorithm: loss
detection (``tcp.recovery``: on SACK connections RACK-TLP by default, RFC 8985 in
:mod:`layers_tcp.rack`: a segment is lost once one sent after it was delivered and
RACK.rtt plus a reordering window have passed, the window min_rtt/4 once reordering was seen
and widened by D-SACKs, a reordering timer for what is not yet due, a tail loss probe 2 SRTT
after the last transmission or ACK; ``dupack``, and every connection without SACK: three
duplicate ACKs or RFC 6675's IsLost on the SACK scoreboard; counters ``LossProbes``,
``LossProbeRecovery``, ``SACKReorder``, ``LostRetransmits``), RFC 6582's ``recover`` point
and partial ACKs, in flight as RFC 6675's pipe, proportional rate reduction
(RFC 6937) towards the algorithm's ssthresh during fast recovery (no window inflation),
timeouts with go-back-N, and undo of a spurious timeout or fast retransmit (the congestion
control's ``on_undo``) found by timestamps (Eifel, RFC 3522), by F-RTO without them (RFC 5682,
the SACK-enhanced variant as Linux's ``tcp_process_loss``: after a timeout, an ACK or SACK of
data sent before it and never retransmitted shows the originals arrived; an ACK of only the
retransmitted head sends two new segments and lets the next ACK decide; ``tcp.frto``), or by
D-SACKs (RFC 2883/3708: every retransmission of the episode reported received twice, as
Linux's ``undo_retrans``, also after the recovery ended); counters ``SpuriousRTOs``,
``LossUndo``, ``FullUndo``, ``PartialUndo``, ``DSACKUndo``, ``DSACKRecv``. An ACK whose only
news is a D-SACK is not a duplicate ACK.
Every ACK that delivers data gives the algorithm a rate sample
(draft-cheng-iccrg-delivery-rate-estimation: delivered bytes, delivery rate, app-limited,
RTT and min RTT). When the algorithm sets ``pacing_rate``, segments leave no earlier than the
connection's earliest departure time, the connection timer sending what is ahead of it (as
Linux's internal pacing). Telemetry: ``stack.telemetry.subscribe`` or ``conn.subscribe`` get a
:class:`layers.telemetry.ConnectionSample` per ACK; ``describe()`` (``layers netstat``,
``layers ss -i``) shows cwnd, ssthresh, RTTs, RTO, rates, retransmissions, losses, in flight
and the algorithm's ``state()``.

Supported: all eleven states with simultaneous open and close and half-close; TIME-WAIT of
2*MSL with reuse by a newer SYN (RFC 6191), at most ``tcp.max_tw_buckets`` at once
(Linux's tcp_max_tw_buckets; beyond it, counted ``TCPTimeWaitOverflow``, no TIME-WAIT);
RST generation and acceptance (RFC 9293 3.10.7)
with RFC 5961 challenge ACKs (rate limited); listen backlog (SYN and accept queues); RFC 6528
ISNs and RFC 6056 ephemeral ports; MSS both ways, window scaling, timestamps with RTTM and
PAWS (RFC 7323; a reordered pure duplicate ACK a little older than TS.Recent passes, as
Linux's tcp_disordered_ack, counted ``PAWSDisorderedAck``), SACK (RFC 2018 blocks out, used
in recovery) with D-SACK blocks for duplicate data (RFC 2883, ``tcp.dsack``; counters
``DSACKOldSent``, ``DSACKOfoSent``); Nagle/TCP_NODELAY, delayed
ACK (40 ms, every second full segment, coalesced per received batch), sender and receiver
silly-window avoidance, zero-window probes with backoff; RFC 6298 RTO (200 ms floor like
Linux, 120 s cap) with Karn; fast retransmit, SACK recovery with PRR, NewReno (RFC 6582)
and limited transmit (RFC 3042); pluggable congestion control, rate samples, pacing, undo;
keepalive (opt-in), user timeout; ICMP errors
(hard in SYN-SENT, soft afterwards, PMTU); checksum offload and TSO super-segments out,
RX_CSUM_VERIFIED and super-segments in; ECN (RFC 3168, off by default, below).

ECN (RFC 3168), set by ``tcp.ecn`` (or the ``ecn=`` connection option) as Linux's
``net.ipv4.tcp_ecn``: 0 off, 1 ask on our SYNs and accept, 2 accept only. Negotiation: an
ECN-setup SYN carries ECE and CWR, the SYN-ACK that agrees ECE alone (RFC 3168 6.1.1); a SYN
that itself arrives ECT or CE is not agreed to (the path rewrites the field, as Linux judges);
retransmitted SYNs go without the request (``tcp.ecn_fallback``). Once agreed, new data
segments leave ECT(0); SYNs, SYN-ACKs, pure ACKs, FINs without data, window and keepalive
probes and every retransmission stay Not-ECT (RFC 3168 6.1.5, 6.1.6). Receiver: a data
segment marked CE makes every following segment carry ECE until one with CWR arrives, and is
acknowledged at once (as Linux's quick ACK); CWR with CE on one segment keeps the echo going.
Sender: an ACK with ECE calls the congestion control's ``on_ecn(in_flight, now)`` (NewReno
halves cwnd to ssthresh as a loss would, with nothing resent), at most once per window of data
(again only once an ACK goes beyond what was outstanding at the reduction), never in loss
recovery or before a timeout's window is acknowledged; that ACK does not grow the window, and
the next new data segment carries CWR (alone, never inside a TSO super-segment).
Counters: ``ECNNegotiated`` (connections that agreed), ``ECNRefusedByPeer`` (we asked, the
SYN-ACK did not agree), ``ECNCEReceived`` (data segments marked CE, on ECN connections),
``ECNEchoReceived`` (ACKs with ECE), ``ECNReductions`` (``on_ecn`` calls), ``ECNCWRSent``,
``ECNCWRReceived``; the ipv4 plugin counts packets by codepoint (``InECT0Pkts``,
``InCEPkts``...). ``describe()`` (``layers netstat``) shows ``ecn``.

Not supported: urgent data (the pointer is ignored; data stays inline, as SO_OOBINLINE),
Accurate ECN and ECT(1)/L4S feedback, TCP Fast Open, MD5/AO signatures.

Modules: ``protocol`` (demultiplexing, listeners, ports, ISNs, resets, the algorithm
registry), ``states`` (sequence-number arithmetic, the states and the one table of their
transitions), ``connection`` (the sans-IO TCB: segments, timers and the application's calls
in, events for the application out; no asyncio), ``transport`` (``TCPTransport``, the
asyncio.Transport over a connection), ``listener``, ``buffers`` (send buffer, out-of-order
queue), ``sack`` (SACK scoreboard and pipe), ``recovery`` (PRR), ``rtt`` (RFC 6298),
``rate`` (delivery-rate samples and RACK's transmit times), ``rack`` (RACK-TLP), ``dsack``
(D-SACK blocks and the undo ledger), ``pacing``, ``newreno``, ``syncookies``, ``settings``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from layers.congestion import CongestionControlInfo
from layers.hookspecs import hookimpl
from layers_tcp.connection import Connection, ConnectionApp
from layers_tcp.listener import Listener
from layers_tcp.newreno import NewReno
from layers_tcp.protocol import TCP, ConnOptions
from layers_tcp.settings import TCPSettings
from layers_tcp.states import State
from layers_tcp.transport import TCPTransport

if TYPE_CHECKING:
    from layers.protocols import TransportProtocol
    from layers.stack import Stack

__all__ = [
    "TCP",
    "ConnOptions",
    "Connection",
    "ConnectionApp",
    "Listener",
    "NewReno",
    "State",
    "TCPSettings",
    "TCPTransport",
]


def _tcp(stack: Stack) -> TCP | None:
    proto = stack.protocols.get("tcp")
    return proto if isinstance(proto, TCP) else None


@hookimpl
def layers_transport_protocols(stack: Stack) -> Iterable[TransportProtocol]:
    return [TCP(stack)]


@hookimpl
def layers_settings(stack: Stack) -> Mapping[str, Any]:
    return {"tcp": TCPSettings}


@hookimpl
def layers_congestion_controls() -> Iterable[CongestionControlInfo]:
    return [CongestionControlInfo(
        name="newreno", factory=NewReno, plugin="tcp",
        description="RFC 5681 slow start and congestion avoidance (RFC 3465 byte counting), "
                    "RFC 6582 recovery",
    )]


@hookimpl
def layers_stack_stopping(stack: Stack) -> None:
    tcp = _tcp(stack)
    if tcp is not None:
        tcp.stop()


@hookimpl
def layers_report(stack: Stack) -> Mapping[str, Any] | None:
    tcp = _tcp(stack)
    return tcp.report() if tcp is not None else None


@hookimpl
def layers_capabilities(stack: Stack) -> dict[str, bool] | None:
    """The optional TCP features this stack offers, from its settings (conformance suite)."""
    tcp = _tcp(stack)
    if tcp is None:
        return None
    s = tcp.settings
    return {"tcp.sack": s.sack, "tcp.timestamps": s.timestamps,
            "tcp.window_scaling": s.window_scaling, "tcp.ecn": s.ecn != 0}
