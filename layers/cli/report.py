"""The tables of ``layers netstat`` (and ``-s``), ``layers routes`` and ``layers arp``, made
from :meth:`layers.stack.Stack.report` (read from a running ``layers up`` through its control
socket, or from a stack in this process), and the commands that print them.

A table a plugin adds through ``layers_report`` under a name the core does not know is printed
by ``layers netstat`` after the core's own, as columns of its rows' keys.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from layers.cli.common import Commands, link_type, query
from layers.wire.addr import ip4, ip4_str, prefix_mask


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart."""
    body = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in body]
    return "\n".join(lines)


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def format_interfaces(report: Mapping[str, Any]) -> str:
    out = []
    for d in report.get("interfaces", []):
        name = str(d.get("name", "?"))
        pad = " " * max(len(name) + 1, 8)
        state = "UP" if d.get("up") else "DOWN"
        mac = f" HWaddr {str(d['mac']).upper()}" if d.get("mac") else ""
        out.append(f"{name.ljust(len(pad) - 1)} {state} Type:{link_type(d)}{mac} "
                   f"MTU:{d.get('mtu', '?')}")
        for text in d.get("addresses", []):
            a, _, p = str(text).partition("/")
            if ":" in a:  # IPv6, as ifconfig prints it
                scope = "Link" if a.lower().startswith("fe80:") else "Global"
                out.append(f"{pad}inet6 addr: {a}/{p or 128} Scope:{scope}")
                continue
            mask = prefix_mask(int(p or 32))
            bcast = (ip4(a) & mask) | (~mask & 0xFFFFFFFF)
            out.append(f"{pad}Inet addr:{a}/{ip4_str(mask)} Bcast:{ip4_str(bcast)}")
        c = d.get("counters", {})
        rx, tx = int(c.get("rx_bytes", 0)), int(c.get("tx_bytes", 0))
        out.append(f"{pad}RX packets:{c.get('rx_frames', 0)} bytes:{rx} ({human_bytes(rx)})  "
                   f"TX packets:{c.get('tx_frames', 0)} bytes:{tx} ({human_bytes(tx)})")
        drops = d.get("drops", {})
        if drops:
            why = ", ".join(f"{k} {v}" for k, v in sorted(drops.items()))
            out.append(f"{pad}dropped:{sum(drops.values())} ({why})")
    return "\n".join(out)


def format_connections(report: Mapping[str, Any]) -> str:
    rows = []
    for r in report.get("listeners", []) or []:
        rows.append((r.get("proto", "?"), r.get("recv_q", 0), r.get("send_q", 0),
                     r.get("local", "?"), r.get("remote", "*:*"), r.get("state", "LISTEN")))
    for r in report.get("connections", []) or []:
        rows.append((r.get("proto", "?"), r.get("recv_q", 0), r.get("send_q", 0),
                     r.get("local", "?"), r.get("remote", "*:*"), r.get("state", "")))
    if not rows:
        return "Active connections: none"
    return "Active connections\n" + table(
        ("Proto", "Recv-Q", "Send-Q", "Local Address", "Foreign Address", "State"), rows)


#: the tables the core formats itself; any other list of rows in a report is a plugin's
CORE_TABLES = frozenset(
    {"name", "interfaces", "routes", "counters", "plugins", "arp", "connections", "listeners",
     "plugin_errors", "internal_errors"}
)


def format_plugin_tables(report: Mapping[str, Any]) -> str:
    """The tables plugins added through ``layers_report`` (``{name: [row, ...]}`` with rows
    of JSON-able dicts), each under its name with a column per key."""
    out = []
    for key, rows in sorted(report.items()):
        if key in CORE_TABLES or not isinstance(rows, list) or not rows:
            continue
        if not all(isinstance(r, Mapping) for r in rows):
            continue
        headers = list(dict.fromkeys(k for r in rows for k in r))
        out.append(f"{key}\n" + table(headers, [[r.get(h, "") for h in headers] for r in rows]))
    return "\n\n".join(out)


def format_plugin_errors(report: Mapping[str, Any]) -> str:
    """Plugins that raised where the stack went on (a per-frame hook, a report hook), each
    named once with its distribution and how to run without it, and how often it failed."""
    lines = []
    for key, title in (("plugin_errors", "Plugin errors (the stack went on without them):"),
                       ("internal_errors", "Internal errors (bugs: each dropped what it was "
                                           "handling; please report them):")):
        rows = report.get(key) or []
        if not rows:
            continue
        lines.append(title)
        for r in rows:
            times = int(r.get("count", 1))
            lines.append(f"  {r.get('message', r)} [{times} time{'s' if times != 1 else ''}]")
    return "\n".join(lines)


def format_netstat(report: Mapping[str, Any]) -> str:
    parts = [format_interfaces(report), format_connections(report), format_plugin_tables(report),
             format_plugin_errors(report)]
    return "\n\n".join(p for p in parts if p)


def _with_plugin_errors(text: str, report: Mapping[str, Any]) -> str:
    errors = format_plugin_errors(report)
    return f"{text}\n\n{errors}" if errors else text


def format_statistics(report: Mapping[str, Any]) -> str:
    """``netstat -s``: every counter per protocol, and drops by reason."""
    out = []
    groups: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]] = []
    for name, snap in sorted((report.get("counters") or {}).items()):
        groups.append((name, snap.get("counters", {}), snap.get("drops", {})))
    for d in report.get("interfaces", []):
        groups.append((f"interface {d.get('name')}", d.get("counters", {}), d.get("drops", {})))
    for name, counters, drops in groups:
        out.append(f"{name}:")
        shown = False
        for key, value in sorted(counters.items()):
            if key == "dropped":
                continue
            out.append(f"    {value} {key.replace('_', ' ')}")
            shown = True
        if drops:
            out.append(f"    {sum(drops.values())} dropped:")
            for reason, value in sorted(drops.items(), key=lambda kv: (-kv[1], kv[0])):
                out.append(f"        {value} {reason.replace('_', ' ')}")
            shown = True
        if not shown:
            out.pop()  # nothing counted yet: leave the group out
    return "\n".join(out) if out else "nothing counted yet"


def format_routes(report: Mapping[str, Any]) -> str:
    rows = [(r.get("destination"), r.get("gateway"), r.get("netmask"), r.get("interface"))
            for r in report.get("routes", [])]
    return table(("Destination", "Gateway", "Netmask", "Interface"), rows)


def format_routes6(report: Mapping[str, Any]) -> str:
    """``routes -6``: the IPv6 table (the ipv6 plugin's ``routes6``)."""
    if "routes6" not in report:
        return "no IPv6 routes: this stack has no IPv6 network layer (add the ipv6 plugin)"
    rows = [(f"{r.get('destination')}/{r.get('prefix_length')}", r.get("gateway"),
             r.get("interface"), r.get("metric"), r.get("origin"))
            for r in report.get("routes6", [])]
    return table(("Destination", "Next Hop", "Interface", "Metric", "Origin"), rows)


def format_ndp(report: Mapping[str, Any]) -> str:
    """``layers ndp``: the IPv6 neighbour cache, as ``ip -6 neigh`` lists it."""
    if "ndp" not in report:
        return ("no IPv6 neighbour cache: this stack has no ndp plugin (or only TUN links)")
    rows = [(r.get("address", "?"), r.get("mac") or "(incomplete)", r.get("state", ""),
             "router" if r.get("router") else "", r.get("interface", ""))
            for r in report.get("ndp", []) or []]
    if not rows:
        return "IPv6 neighbour cache: empty"
    return table(("Address", "HWaddress", "State", "Flags", "Iface"), rows)


def format_arp(report: Mapping[str, Any]) -> str:
    rows = []
    for r in report.get("arp", []) or []:
        expires = r.get("expires")  # seconds until the entry's current state ends
        if isinstance(expires, int | float):
            expires_text = f"{expires:.1f}s"
        else:
            expires_text = "-" if expires is None else str(expires)
        rows.append((r.get("address", "?"), r.get("mac") or "(incomplete)",
                     r.get("state", ""), expires_text, r.get("interface", "")))
    if not rows:
        return "ARP cache: empty" if "arp" in report else (
            "no ARP table: this stack has no neighbour resolver (no arp plugin, or a TUN link)")
    return table(("Address", "HWaddress", "State", "Expires", "Iface"), rows)


def cmd_netstat(args: argparse.Namespace) -> int:
    report = query(args)["report"]
    if args.statistics:
        print(_with_plugin_errors(format_statistics(report), report))
    else:
        print(format_netstat(report))
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    report = query(args)["report"]
    text = format_routes6(report) if args.ipv6 else format_routes(report)
    print(_with_plugin_errors(text, report))
    return 0


def cmd_ndp(args: argparse.Namespace) -> int:
    report = query(args)["report"]
    print(_with_plugin_errors(format_ndp(report), report))
    return 0


def cmd_arp(args: argparse.Namespace) -> int:
    report = query(args)["report"]
    print(_with_plugin_errors(format_arp(report), report))
    return 0


def add_commands(commands: Commands) -> None:
    ns = commands.add("netstat", cmd_netstat, client=True,
                      help="interfaces and connections of a running stack")
    ns.add_argument("-s", "--statistics", action="store_true",
                    help="per-protocol counters and drops by reason")
    routes = commands.add("routes", cmd_routes, client=True,
                          help="routing table of a running stack")
    routes.add_argument("-6", dest="ipv6", action="store_true", help="the IPv6 table")
    commands.add("ndp", cmd_ndp, client=True, help="IPv6 neighbour cache of a running stack")
    commands.add("arp", cmd_arp, client=True, help="ARP cache of a running stack")
