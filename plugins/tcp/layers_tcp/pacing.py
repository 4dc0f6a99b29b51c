"""Pacing: when the congestion control sets ``pacing_rate`` (bytes per second), segments leave
no earlier than the connection's earliest departure time, as with Linux's internal pacing
(``tcp_wstamp_ns``, ``tcp_pacing_check``): each transmission moves that time on by its size
on the wire divided by the rate, and a sender that is ahead arms the connection's timer
instead of sending. The same timer machinery serves the virtual clock and asyncio.
"""

from __future__ import annotations

from layers.wire.ipv4 import IPV4_MIN_HLEN
from layers.wire.tcp import TCP_MIN_HLEN, TCP_TS_OPTION_LEN

#: IPv4 and TCP headers without options, per segment on the wire
_HEADERS = IPV4_MIN_HLEN + TCP_MIN_HLEN
#: the timestamp option, when in use
_TS_LEN = TCP_TS_OPTION_LEN
#: a paced TSO super-segment carries about this much time's worth of data (Linux's
#: tcp_tso_autosize uses 1 ms), and at least two segments
BURST_TIME = 0.001
#: a sender whose timer woke up at most this late keeps its schedule and catches up (a
#: bounded burst): an event loop's timers are far coarser than a kernel's hrtimer, and
#: without it every late wake-up would lower the rate for good. Later than that (the sender
#: was idle, or application-limited), the schedule starts afresh from now, with no credit.
SLACK = 0.002


def departure_after(earliest: float, now: float, payload: int, mss: int, ts: bool,
                    rate: float) -> float:
    """The earliest departure time after sending ``payload`` bytes (one segment or a
    super-segment of several) at ``now``: from ``earliest`` when the sender is on time or at
    most :data:`SLACK` late, else (idle) from now."""
    segs = (payload + mss - 1) // mss if payload > mss else 1
    wire = payload + segs * (_HEADERS + (_TS_LEN if ts else 0))
    start = earliest if earliest >= now - SLACK else now
    return start + wire / rate


def paced_burst(burst: int, mss: int, rate: float) -> int:
    """The largest super-segment while paced: about :data:`BURST_TIME` at ``rate``, whole
    segments, at least two and no more than ``burst``."""
    n = int(rate * BURST_TIME) // mss * mss
    if n < 2 * mss:
        n = 2 * mss
    return n if n < burst else burst
