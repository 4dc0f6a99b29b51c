"""The tcp plugin for layers: TCP (RFC 9293) with the asyncio Transport interface.

Registered under the entry point ``tcp``. It provides IP protocol 6 (also serving
:class:`layers.streams.StreamService`, so ``layers.streams.open_connection`` and
``start_server`` use it) and the ``newreno`` congestion control through the
``layers_congestion_controls`` hook, where other plugins may add their own. Settings are
listed in :mod:`layers_tcp.settings`.

Supported: all eleven states with simultaneous open and close and half-close; TIME-WAIT of
2*MSL with reuse by a newer SYN (RFC 6191); RST generation and acceptance (RFC 9293 3.10.7)
with RFC 5961 challenge ACKs (rate limited); listen backlog (SYN and accept queues); RFC 6528
ISNs and RFC 6056 ephemeral ports; MSS both ways, window scaling, timestamps with RTTM and
PAWS (RFC 7323), SACK (RFC 2018 blocks out, used in recovery); Nagle/TCP_NODELAY, delayed
ACK (40 ms, every second full segment, coalesced per received batch), sender and receiver
silly-window avoidance, zero-window probes with backoff; RFC 6298 RTO (200 ms floor like
Linux, 120 s cap) with Karn; fast retransmit, NewReno (RFC 6582) and limited transmit
(RFC 3042); pluggable congestion control; keepalive (opt-in), user timeout; ICMP errors
(hard in SYN-SENT, soft afterwards, PMTU); checksum offload and TSO super-segments out,
RX_CSUM_VERIFIED and super-segments in.

Not supported: urgent data (the pointer is ignored; data stays inline, as SO_OOBINLINE),
ECN, TCP Fast Open, SYN cookies, MD5/AO signatures, D-SACK generation, RACK/TLP, IPv6.

Modules: ``protocol`` (demultiplexing, listeners, ports, ISNs, resets), ``connection`` (the
TCB state machine and transport), ``listener``, ``buffers`` (out-of-order queue), ``rtt``
(RFC 6298), ``congestion`` (NewReno), ``settings``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from layers.hookspecs import hookimpl
from layers_tcp.congestion import NewReno
from layers_tcp.connection import Connection, State
from layers_tcp.listener import Listener
from layers_tcp.protocol import TCP, ConnOptions
from layers_tcp.settings import TCPSettings

if TYPE_CHECKING:
    from layers.protocols import TransportProtocol
    from layers.stack import Stack

__all__ = [
    "TCP",
    "ConnOptions",
    "Connection",
    "Listener",
    "NewReno",
    "State",
    "TCPSettings",
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
def layers_congestion_controls() -> Mapping[str, Any]:
    return {"newreno": NewReno}


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
            "tcp.window_scaling": s.window_scaling}
