"""``layers ss``: a running stack's TCP connections, as Linux's ``ss -t`` and ``ss -ti`` show
them.

It reads the ``report`` of a running ``layers up`` through its control socket
(:mod:`layers.control`) and formats the ``connections`` and ``listeners`` the transport
describes. ``-i`` adds a line per connection with what the transport's ``describe()`` holds,
in Linux's units and order: the congestion control's name, ``wscale:SND,RCV``, ``rto:`` and
``rtt:SRTT/RTTVAR`` in milliseconds, ``mss:``, ``cwnd:`` and ``ssthresh:`` in segments,
``bytes_acked:``, ``send`` (cwnd over srtt), ``pacing_rate`` and ``delivery_rate`` in bits per
second, ``delivered:`` (segments), ``unacked:``, ``retrans:``, ``lost:``, ``minrtt:``, and the
algorithm's own state as ``NAME:(key:value,...)`` like Linux's ``bbr:(bw:...)``. A figure the
transport does not report is left out of the line, never guessed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from layers.cli.common import Commands, query

__all__ = ["add_commands", "cmd_ss", "format_ss", "format_tcp_info", "state_name"]

#: our state names -> the ones ``ss`` prints
_SS_STATES = {
    "ESTABLISHED": "ESTAB",
    "SYN_SENT": "SYN-SENT",
    "SYN_RECEIVED": "SYN-RECV",
    "FIN_WAIT_1": "FIN-WAIT-1",
    "FIN_WAIT_2": "FIN-WAIT-2",
    "TIME_WAIT": "TIME-WAIT",
    "CLOSE_WAIT": "CLOSE-WAIT",
    "LAST_ACK": "LAST-ACK",
    "CLOSING": "CLOSING",
    "CLOSED": "UNCONN",
    "LISTEN": "LISTEN",
}
#: Linux leaves ssthresh out while it is "infinite"
_INFINITE_SSTHRESH = 1 << 30
#: describe() keys the -i line shows under a name of its own; the rest of cc state is generic
_CC_KEYS = ("cc", "cc_name", "congestion_control")


def state_name(state: object) -> str:
    text = str(state or "?").upper().replace("-", "_")
    return _SS_STATES.get(text, text.replace("_", "-"))


def _num(d: Mapping[str, Any], *keys: str) -> float | None:
    """The first of ``keys`` that holds a finite number."""
    for key in keys:
        v = d.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def _ms(seconds: float) -> str:
    """Milliseconds as ss prints them (``%g`` of at most microsecond precision)."""
    return f"{round(seconds * 1000.0, 3):g}"


def bps(bytes_per_second: float) -> str:
    """A rate as ss prints it: 9.6Mbps, 1.2Gbps, 800Kbps, 120bps."""
    bits = bytes_per_second * 8.0
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if bits >= scale:
            return f"{bits / scale:.1f}{unit}bps"
    return f"{bits:g}bps"


def _cc(d: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The algorithm's name and its own fields, whichever way describe() gives them:
    ``cc: "cubic"`` with ``cc_state: {...}``, ``cc: {"name": ..., "state"/...}``, or flat
    ``cc.KEY`` entries."""
    name: str | None = None
    state: dict[str, Any] = {}
    for key in _CC_KEYS:
        v = d.get(key)
        if isinstance(v, str) and v:
            name = v
            break
        if isinstance(v, Mapping):
            name = str(v.get("name") or v.get("algorithm") or "") or None
            inner = v.get("state")
            if isinstance(inner, Mapping):
                state.update(inner)
            else:
                state.update({k: x for k, x in v.items() if k not in ("name", "algorithm")})
            break
    for key in ("cc_state", "cc_info"):
        v = d.get(key)
        if isinstance(v, Mapping):
            state.update(v)
    for k, v in d.items():
        if k.startswith("cc."):
            state[k[3:]] = v
    return name, state


def _state_value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def format_tcp_info(d: Mapping[str, Any]) -> str:
    """The ``ss -i`` details of one connection from its ``describe()`` dict (no leading tab)."""
    out: list[str] = []
    for flag, keys in (("ts", ("ts_ok", "timestamps")), ("sack", ("sack_ok", "sack")),
                       ("ecn", ("ecn_ok", "ecn"))):
        if any(d.get(k) is True for k in keys):
            out.append(flag)
    name, cc_state = _cc(d)
    if name:
        out.append(name)
    snd_ws, rcv_ws = _num(d, "snd_wscale"), _num(d, "rcv_wscale")
    if snd_ws is not None and rcv_ws is not None:
        out.append(f"wscale:{snd_ws:.0f},{rcv_ws:.0f}")
    elif isinstance(d.get("wscale"), str):
        out.append(f"wscale:{d['wscale']}")
    rto = _num(d, "rto")
    if rto is not None:
        out.append(f"rto:{_ms(rto)}")
    srtt, rttvar = _num(d, "srtt"), _num(d, "rttvar")
    if srtt is not None:
        out.append(f"rtt:{_ms(srtt)}/{_ms(rttvar)}" if rttvar is not None else f"rtt:{_ms(srtt)}")
    mss = _num(d, "mss")
    if mss is not None:
        out.append(f"mss:{mss:.0f}")

    def segments(nbytes: float, *, up: bool = False) -> str:
        if not mss:
            return f"{nbytes:.0f}B"
        n = math.ceil(nbytes / mss) if up else nbytes // mss
        return f"{max(n, 1 if nbytes > 0 else 0):.0f}"

    cwnd = _num(d, "cwnd")
    if cwnd is not None:
        out.append(f"cwnd:{segments(cwnd)}")
    ssthresh = _num(d, "ssthresh")
    if ssthresh is not None and ssthresh < _INFINITE_SSTHRESH:
        out.append(f"ssthresh:{segments(ssthresh)}")
    for key in ("bytes_sent", "bytes_retrans", "bytes_acked", "bytes_received"):
        v = _num(d, key)
        if v is not None:
            out.append(f"{key}:{v:.0f}")
    if cwnd is not None and srtt:
        out.append(f"send {bps(cwnd / srtt)}")
    pacing = _num(d, "pacing_rate")
    if pacing is not None:
        out.append(f"pacing_rate {bps(pacing)}")
    rate = _num(d, "delivery_rate")
    if rate is not None:
        out.append(f"delivery_rate {bps(rate)}")
    if d.get("app_limited") is True:
        out.append("app_limited")
    delivered = _num(d, "delivered")
    if delivered is not None:
        out.append(f"delivered:{segments(delivered, up=True)}")
    in_flight = _num(d, "in_flight")
    if in_flight is not None:
        out.append(f"unacked:{segments(in_flight, up=True)}")
    retrans = _num(d, "retransmits", "retrans")
    if retrans is not None:
        out_now = _num(d, "retrans_out")
        out.append(f"retrans:{out_now:.0f}/{retrans:.0f}" if out_now is not None
                   else f"retrans:{retrans:.0f}")
    lost = _num(d, "lost")
    if lost is not None:
        out.append(f"lost:{lost:.0f}")
    min_rtt = _num(d, "min_rtt")
    if min_rtt is not None:
        out.append(f"minrtt:{_ms(min_rtt)}")
    snd_wnd = _num(d, "snd_wnd")
    if snd_wnd is not None:
        out.append(f"snd_wnd:{snd_wnd:.0f}")
    cc_phase = d.get("cc_state_name") or d.get("ca_state")
    if isinstance(cc_phase, str) and cc_phase:
        out.append(f"ca_state:{cc_phase}")
    if cc_state:
        body = ",".join(f"{k}:{_state_value(v)}" for k, v in cc_state.items())
        out.append(f"{name or 'cc'}:({body})")
    return " ".join(out)


def _rows(report: Mapping[str, Any], *, listening: bool, everything: bool
          ) -> Iterable[Mapping[str, Any]]:
    for r in report.get("listeners") or []:
        if (listening or everything) and str(r.get("proto", "tcp")) == "tcp":
            yield r
    if listening and not everything:
        return
    for r in report.get("connections") or []:
        if str(r.get("proto", "tcp")) != "tcp":
            continue
        if not everything and str(r.get("state", "")).upper() == "CLOSED":
            continue
        yield r


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        return " ".join(c.rjust(w) if r else c.ljust(w)
                        for c, w, r in zip(cells, widths, right, strict=True)).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def format_ss(report: Mapping[str, Any], *, info: bool = False, listening: bool = False,
              everything: bool = False) -> str:
    """``ss -t`` (``info``: ``-ti``; ``listening``: ``-l``; ``everything``: ``-a``)."""
    headers = ("State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port")
    rows: list[list[str]] = []
    details: list[str | None] = []
    for r in _rows(report, listening=listening, everything=everything):
        state = state_name(r.get("state", "LISTEN" if "remote" not in r else "?"))
        rows.append([state, str(r.get("recv_q", 0)), str(r.get("send_q", 0)),
                     str(r.get("local", "?")), str(r.get("remote", "*:*"))])
        details.append(format_tcp_info(r) if info and state != "LISTEN" else None)
    table = _table(headers, rows, (False, True, True, False, False))
    if not info:
        return table
    lines = table.splitlines()
    out = [lines[0]]
    for line, detail in zip(lines[1:], details, strict=True):
        out.append(line)
        if detail:
            out.append("\t " + detail)
    return "\n".join(out)


def cmd_ss(args: argparse.Namespace) -> int:
    report = query(args)["report"]
    print(format_ss(report, info=args.info, listening=args.listening, everything=args.all))
    return 0


def add_commands(commands: Commands) -> None:
    p = commands.add(
        "ss", cmd_ss, client=True, help="TCP connections of a running stack, like ss -t[i]",
        description="List a running layers up's TCP connections like Linux's ss -t; -i adds "
                    "each connection's congestion control, RTT, window and rates like ss -ti.")
    p.add_argument("-i", "--info", action="store_true",
                   help="per-connection details: cc, wscale, rto, rtt, mss, cwnd, ssthresh, "
                        "rates, retrans, lost, min RTT and the algorithm's state")
    p.add_argument("-l", "--listening", action="store_true", help="only listening sockets")
    p.add_argument("-a", "--all", action="store_true", help="listening and connected sockets")
    p.add_argument("-t", "--tcp", action="store_true", help="TCP sockets (the only kind shown)")
    p.add_argument("-n", "--numeric", action="store_true",
                   help="numeric addresses (always: the stack resolves no names)")
