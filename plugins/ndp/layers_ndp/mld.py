"""Multicast listener discovery for a host, MLDv2 (RFC 3810) kept simple, so routers and
snooping switches keep sending us the groups we listen to (solicited-node above all: without
it a snooping switch starves neighbour discovery).

* When an Ethernet interface joins a group (the ipv6 plugin tells :class:`Mld` through
  :class:`layers.protocols.MulticastListener`) or comes up with groups joined, a state-change
  report (CHANGE_TO_EXCLUDE_MODE, no sources: "every source") goes to ff02::16 at once and
  once more within ``ndp.mld_unsolicited_interval`` seconds (robustness 2, RFC 3810 9.1);
  leaving sends CHANGE_TO_INCLUDE_MODE the same way.
* A query (type 130) from a link-local source is answered after a random delay up to its
  maximum response delay: a general query with one current-state report (MODE_IS_EXCLUDE)
  of every group, a group-specific one with that group's record. An MLDv1 query (24 bytes)
  gets MLDv1 reports (type 131, one per group, to the group), as RFC 3810 8 has hosts answer
  old routers in their version.
* All-nodes (ff02::1) and interface-local groups are never reported (RFC 3810 6). Messages
  leave with hop limit 1, a hop-by-hop router alert option (RFC 2711), from the link-local
  address or ``::`` while it is tentative (RFC 3590).

``ndp.mld=false`` sends nothing. Counters: tx_mld_reports, rx_mld_queries, drops
``mld_source_not_link_local``, ``mld_truncated``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from layers.links.base import Medium
from layers.protocols import IPDatagram, IPv6Configuration
from layers.wire.ipv6 import (
    ALL_NODES,
    NH_HOPOPTS,
    NH_ICMPV6,
    build_icmpv6,
    is_link_local6,
)

if TYPE_CHECKING:
    from layers.interface import Interface
    from layers.timers import Timer
    from layers_ndp.neighbour import Ndp

MLD_QUERY = 130
MLD_V1_REPORT = 131
MLD_V2_REPORT = 143
#: all MLDv2-capable routers
MLDV2_ROUTERS = 0xFF02_0000_0000_0000_0000_0000_0000_0016
MODE_IS_EXCLUDE = 2
CHANGE_TO_INCLUDE = 3
CHANGE_TO_EXCLUDE = 4
ROBUSTNESS = 2
#: hop-by-hop header: next header ICMPv6, length 0, router alert (MLD), PadN of 2
HOP_BY_HOP = bytes((NH_ICMPV6, 0, 5, 2, 0, 0, 1, 0))


def reportable(group: int) -> bool:
    """Groups MLD reports: not all-nodes, not interface- (or reserved-) scoped."""
    return group != ALL_NODES and (group >> 112) & 0xF >= 2


def max_response_delay(code: int, v2: bool) -> float:
    """Seconds from a query's maximum response code (RFC 3810 5.1.3)."""
    if v2 and code >= 0x8000:
        code = ((code & 0xFFF) | 0x1000) << (((code >> 12) & 7) + 3)
    return code / 1000.0


class Mld:
    """MLDv2 host side for one stack."""

    def __init__(self, ndp: Ndp) -> None:
        self.ndp = ndp
        self.stack = ndp.stack
        self.c = ndp.counters
        self.enabled = ndp.cfg.mld
        self.interval = ndp.cfg.mld_unsolicited_interval
        self._rng = random.Random()
        self.timers: set[Timer] = set()
        #: joins and leaves of this turn of the event loop, reported together on the next
        self.pending: dict[Interface, dict[int, int]] = {}

    def _usable(self, iface: Interface) -> bool:
        return (self.enabled and iface.up and iface.mac is not None
                and iface.medium is Medium.ETHERNET and self.stack.ip6 is not None)

    # --- state changes --------------------------------------------------------------------
    def group_joined(self, iface: Interface, group: int) -> None:
        if reportable(group) and self._usable(iface):
            self._change(iface, group, CHANGE_TO_EXCLUDE)

    def group_left(self, iface: Interface, group: int) -> None:
        if reportable(group) and self._usable(iface):
            self._change(iface, group, CHANGE_TO_INCLUDE)

    def interface_up(self, iface: Interface) -> None:
        if self._usable(iface):
            for group in self._groups(iface):
                if reportable(group):
                    self._change(iface, group, CHANGE_TO_EXCLUDE)

    def _change(self, iface: Interface, group: int, kind: int) -> None:
        pending = self.pending.get(iface)
        if pending is None:
            pending = self.pending[iface] = {}
            self._later(0.0, self._flush, iface)
        pending[group] = kind

    def _flush(self, iface: Interface) -> None:
        """One state-change report of this turn's changes, and its retransmissions."""
        records = sorted((kind, g) for g, kind in self.pending.pop(iface, {}).items())
        self._send_v2(iface, records)
        for _ in range(ROBUSTNESS - 1):
            self._later(self._rng.uniform(0.0, self.interval), self._send_v2, iface, records)

    def _groups(self, iface: Interface) -> list[int]:
        ip6 = self.stack.ip6
        return ip6.groups6(iface) if isinstance(ip6, IPv6Configuration) else []

    # --- queries --------------------------------------------------------------------------
    def query(self, dg: IPDatagram, msg: memoryview) -> None:
        c = self.c
        c["rx_mld_queries"] += 1
        if not self.enabled:
            c.drop("mld_disabled")
            return
        if not is_link_local6(dg.src):  # RFC 3810 5.1.14
            c.drop("mld_source_not_link_local")
            return
        if len(msg) < 24 or 24 < len(msg) < 28:
            c.drop("mld_truncated")
            return
        iface = dg.interface
        if not self._usable(iface):
            return
        v2 = len(msg) >= 28
        longest = max_response_delay(int.from_bytes(msg[4:6], "big"), v2)
        group = int.from_bytes(msg[8:24], "big")
        joined = [g for g in self._groups(iface) if reportable(g)]
        if group:
            if group not in joined:
                return
            joined = [group]
        if not joined:
            return
        if v2:
            self._later(self._rng.uniform(0.0, longest), self._send_v2, iface,
                        [(MODE_IS_EXCLUDE, g) for g in joined])
        else:
            for g in joined:
                self._later(self._rng.uniform(0.0, longest), self._send_v1, iface, g)

    # --- sending --------------------------------------------------------------------------
    def _later(self, delay: float, fn: Any, *args: Any) -> None:
        holder: list[Timer] = []

        def run() -> None:
            self.timers.discard(holder[0])
            fn(*args)

        timer = self.stack.call_later(delay, run)
        holder.append(timer)
        self.timers.add(timer)

    def _send_v2(self, iface: Interface, records: list[tuple[int, int]]) -> None:
        if not self._usable(iface):
            return
        current = set(self._groups(iface))
        # a join reported after the group was left again (or the reverse) is stale
        records = [(k, g) for k, g in records
                   if (g in current) == (k != CHANGE_TO_INCLUDE)]
        if not records:
            return
        src = self.ndp.link_local(iface) or 0
        body = b"\x00\x00" + len(records).to_bytes(2, "big") + b"".join(
            bytes((kind, 0, 0, 0)) + g.to_bytes(16, "big") for kind, g in records)
        self._send(iface, src, MLDV2_ROUTERS,
                   build_icmpv6(src, MLDV2_ROUTERS, MLD_V2_REPORT, 0, body))

    def _send_v1(self, iface: Interface, group: int) -> None:
        if not self._usable(iface) or group not in self._groups(iface):
            return
        src = self.ndp.link_local(iface) or 0
        body = bytes(4) + group.to_bytes(16, "big")
        self._send(iface, src, group, build_icmpv6(src, group, MLD_V1_REPORT, 0, body))

    def _send(self, iface: Interface, src: int, dst: int, msg: bytes) -> None:
        ip6 = self.stack.ip6
        if ip6 is None:
            return
        self.c["tx_mld_reports"] += 1
        send: Any = ip6.send
        send(dst, NH_HOPOPTS, HOP_BY_HOP + msg, src=src, ttl=1, interface=iface)

    def stop(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        self.pending.clear()
