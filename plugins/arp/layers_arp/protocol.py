"""The ARP network protocol object of one stack: receives ARP frames, owns the resolvers."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from layers.errors import MalformedPacket
from layers.wire.arp import ARPPacket
from layers.wire.ethernet import ETH_P_ARP
from layers_arp.neighbour import ArpResolver, Neighbour
from layers_arp.settings import ArpSettings

if TYPE_CHECKING:
    from layers.interface import Interface
    from layers.stack import Stack


class ArpProtocol:
    """Dispatched by ethertype 0x0806. One per stack; one :class:`ArpResolver` per interface."""

    name = "arp"
    ethertype: int | None = ETH_P_ARP
    ip_version: int | None = None
    needs_neighbour_resolver = False

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.cfg = ArpSettings.from_stack(stack)
        self.counters = stack.counter("arp")
        self.resolvers: dict[Interface, ArpResolver] = {}
        #: packets waiting for resolution on all interfaces (bounded by queue_total)
        self.queued = 0
        self._seq = itertools.count()

    # --- composition ----------------------------------------------------------------------
    def resolver_for(self, iface: Interface) -> ArpResolver:
        res = self.resolvers.get(iface)
        if res is None:
            res = self.resolvers[iface] = ArpResolver(self, iface)
        return res

    # --- input ----------------------------------------------------------------------------
    def receive(self, interface: Interface, packet: memoryview, flags: int) -> None:
        res = self.resolvers.get(interface)
        if res is None:
            self.counters.drop("no_resolver")
            return
        try:
            p = ARPPacket.from_bytes(packet)
        except MalformedPacket as exc:
            self.counters.drop(exc.reason)
            return
        res.receive(p, flags)

    # --- stack-wide bounds ----------------------------------------------------------------
    def next_seq(self) -> int:
        return next(self._seq)

    def drop_oldest_queued(self) -> None:
        """Drop the oldest packet waiting on any interface (the stack-wide queue is full)."""
        victim_res: ArpResolver | None = None
        victim_seq = -1
        for res in self.resolvers.values():
            for n in res.pending.values():
                if n.queue and (victim_res is None or n.queue[0][0] < victim_seq):
                    victim_res, victim_seq = res, n.queue[0][0]
        if victim_res is None:
            return
        for n in victim_res.pending.values():
            if n.queue and n.queue[0][0] == victim_seq:
                n.queue.popleft()
                self.queued -= 1
                if not n.queue:
                    del victim_res.pending[n.address]
                break
        self.counters["queue_overflows"] += 1
        self.counters.drop("queue_overflow")

    def entry_count(self) -> int:
        return sum(len(r.table) for r in self.resolvers.values())

    def evict_one(self) -> bool:
        """Make room for one entry; False when every entry is in use (incomplete/permanent)."""
        best: tuple[tuple[int, float], Neighbour, ArpResolver] | None = None
        for res in self.resolvers.values():
            cand = res.eviction_candidate()
            if cand is not None and (best is None or cand[0] < best[0]):
                best = (cand[0], cand[1], res)
        if best is None:
            return False
        best[2].evict(best[1])
        return True

    # --- lifecycle and reports ------------------------------------------------------------
    def stop(self) -> None:
        for res in self.resolvers.values():
            res.stop()
        self.queued = 0

    def report(self) -> Mapping[str, Any]:
        rows: list[Mapping[str, Any]] = []
        for res in self.resolvers.values():
            rows.extend(res.entries())
        return {"arp": rows}
