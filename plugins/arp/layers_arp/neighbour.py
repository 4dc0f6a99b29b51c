"""The neighbour table of one Ethernet interface, and resolution through it.

States, after Linux's ``NUD_*`` (RFC 1122 2.3.2 describes the same ideas):

``incomplete``  a request is out; packets wait in a bounded queue; broadcast requests repeat
                every ``timeout`` seconds, ``retries`` in all, then ``failed``.
``reachable``   answered by a unicast reply within ``reachable_time``: packets go straight out.
``stale``       older than that (or learned from someone's request): still used, but the first
                packet sent through it moves it to ``delay``. Removed after ``stale_time``
                seconds without use.
``delay``       used while stale: packets go out; after ``delay_first_probe`` seconds, ``probe``.
``probe``       packets still go out; unicast requests to the cached MAC every ``timeout``
                seconds, ``unicast_probes`` of them; a reply makes it reachable again, silence
                deletes the entry (RFC 1122's unicast poll), so the next packet resolves afresh.
``failed``      resolution failed; kept ``failed_time`` seconds, during which packets to it fail
                at once (reported through ``stack.neighbour_unreachable``) instead of sending
                more requests: a flood of packets to a dead host cannot become a flood of ARP.
``permanent``   a static entry (:meth:`ArpResolver.add_static`); never expires or changes.

Every entry has at most one timer, for the end of its current state, so an idle table costs
nothing and a stack with no neighbours has no ARP timers at all.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from layers.links.base import RX_BROADCAST, Gather, TxOffload
from layers.wire.addr import BROADCAST_MAC, ZERO_MAC, ip4, ip4_str, mac, mac_str, prefix_mask
from layers.wire.arp import ARPOP_REPLY, ARPOP_REQUEST, ARPPacket, build_arp
from layers.wire.ethernet import ETH_P_ARP

if TYPE_CHECKING:
    from layers.interface import Interface
    from layers.timers import Timer
    from layers_arp.protocol import ArpProtocol

REACHABLE = 1
PERMANENT = 2  # states up to here send without any bookkeeping (the fast path)
STALE = 3
DELAY = 4
PROBE = 5
INCOMPLETE = 6
FAILED = 7
STATE_NAMES = {
    REACHABLE: "reachable",
    PERMANENT: "permanent",
    STALE: "stale",
    DELAY: "delay",
    PROBE: "probe",
    INCOMPLETE: "incomplete",
    FAILED: "failed",
}
# Which entries go first when the table is full: lower first, then the least recently changed.
_EVICT_RANK = {FAILED: 0, STALE: 1, REACHABLE: 2, DELAY: 3, PROBE: 3}

#: (sequence number, ethertype, payload, offload) of one packet waiting for resolution
Queued = tuple[int, int, bytes, TxOffload | None]


class Neighbour:
    __slots__ = ("address", "changed", "deadline", "mac", "probes", "queue", "rank", "state",
                 "timer")

    def __init__(self, address: int, state: int, now: float) -> None:
        self.address = address
        self.state = state
        self.mac: bytes = ZERO_MAC
        #: when the state last changed (for eviction order)
        self.changed = now
        #: when the current state ends (None: never)
        self.deadline: float | None = None
        self.timer: Timer | None = None
        #: requests sent in the current incomplete/probe round
        self.probes = 0
        self.queue: deque[Queued] = deque()
        #: the eviction rank it is indexed under (None: not evictable, or not in a table)
        self.rank: int | None = None

    def __repr__(self) -> str:
        return f"<Neighbour {ip4_str(self.address)} {STATE_NAMES[self.state]} {mac_str(self.mac)}>"


def multicast_mac(address: int) -> bytes:
    """The Ethernet address of an IPv4 multicast group (RFC 1112 6.4)."""
    return bytes((0x01, 0x00, 0x5E, (address >> 16) & 0x7F, (address >> 8) & 0xFF, address & 0xFF))


class ArpResolver:
    """ARP for one Ethernet interface: implements :class:`layers.protocols.NeighbourResolver`."""

    #: packets may come in pieces (headers beside a view of the payload); they go to the
    #: link unjoined, and are joined only to wait in the queue of an unresolved neighbour
    accepts_gather = True

    def __init__(self, arp: ArpProtocol, iface: Interface) -> None:
        assert iface.mac is not None
        self.arp = arp
        self.stack = arp.stack
        self.iface = iface
        self.cfg = arp.cfg
        self._c = arp.counters
        self._mac: bytes = iface.mac
        self._send = iface.send_ethernet
        self.table: dict[int, Neighbour] = {}
        #: eviction rank -> its evictable entries, least recently changed first (a state
        #: change moves an entry to the end), so finding the next victim is O(1)
        self._evictable: dict[int, dict[int, Neighbour]] = {
            rank: {} for rank in sorted(set(_EVICT_RANK.values()))}
        #: incomplete entries holding packets (for the stack-wide queue bound)
        self.pending: dict[int, Neighbour] = {}
        self._timers: list[Timer] = []
        self._defended: dict[int, float] = {}

    # --- output: the per-packet path ---------------------------------------------------
    def output(
        self,
        next_hop: int,
        ethertype: int,
        payload: bytes | bytearray | memoryview | Gather,
        offload: TxOffload | None = None,
    ) -> None:
        n = self.table.get(next_hop)
        if n is not None and n.state <= PERMANENT:
            self._send(n.mac, ethertype, payload, offload)
            return
        self._output_slow(n, next_hop, ethertype, payload, offload)

    def _output_slow(
        self,
        n: Neighbour | None,
        next_hop: int,
        ethertype: int,
        payload: bytes | bytearray | memoryview | Gather,
        offload: TxOffload | None,
    ) -> None:
        if n is None:
            if next_hop in self.iface.broadcasts:
                self._send(BROADCAST_MAC, ethertype, payload, offload)
                return
            if next_hop >> 28 == 0xE:
                self._send(multicast_mac(next_hop), ethertype, payload, offload)
                return
            if next_hop == 0 or next_hop in self.stack.local_addresses:
                self._c.drop("bad_next_hop")
                return
            n = self._create(next_hop, INCOMPLETE)
            if n is None:
                self._c.drop("table_full")
                return
            self._enqueue(n, ethertype, payload, offload)
            n.probes = 1
            self._solicit(n, BROADCAST_MAC)
            self._arm(n, self.cfg.timeout, self._incomplete_expired)
            return
        state = n.state
        if state == STALE:
            self._set_state(n, DELAY)
            self._arm(n, self.cfg.delay_first_probe, self._delay_expired)
            self._send(n.mac, ethertype, payload, offload)
        elif state == DELAY or state == PROBE:
            self._send(n.mac, ethertype, payload, offload)
        elif state == INCOMPLETE:
            self._enqueue(n, ethertype, payload, offload)
        else:  # FAILED: fail at once, outside the sender's call stack
            self._c.drop("neighbour_failed")
            packet = b"".join(payload) if isinstance(payload, tuple) else bytes(payload)
            self.stack.call_soon(
                self.stack.neighbour_unreachable, self.iface, ethertype, packet
            )

    def _enqueue(
        self,
        n: Neighbour,
        ethertype: int,
        payload: bytes | bytearray | memoryview | Gather,
        offload: TxOffload | None,
    ) -> None:
        cfg, c, arp = self.cfg, self._c, self.arp
        q = n.queue
        if cfg.queue_len == 0 or cfg.queue_total == 0:
            c["queue_overflows"] += 1
            c.drop("queue_overflow")
            return
        if len(q) >= cfg.queue_len:
            q.popleft()
            arp.queued -= 1
            c["queue_overflows"] += 1
            c.drop("queue_overflow")
        elif arp.queued >= cfg.queue_total:
            arp.drop_oldest_queued()
        q.append((arp.next_seq(), ethertype,
                  b"".join(payload) if isinstance(payload, tuple) else bytes(payload), offload))
        arp.queued += 1
        self.pending[n.address] = n

    def _take_queue(self, n: Neighbour) -> deque[Queued]:
        q = n.queue
        n.queue = deque()
        self.arp.queued -= len(q)
        self.pending.pop(n.address, None)
        return q

    # --- requests -----------------------------------------------------------------------
    def _source_for(self, target: int) -> int:
        """Our address on the target's subnet, else the interface's first, else 0.0.0.0."""
        for addr, plen in self.iface.addresses:
            if not (addr ^ target) & prefix_mask(plen):
                return addr
        return self.iface.addresses[0][0] if self.iface.addresses else 0

    def _on_link(self, address: int) -> bool:
        return any(not (a ^ address) & prefix_mask(p) for a, p in self.iface.addresses if p)

    def _solicit(self, n: Neighbour, dst_mac: bytes) -> None:
        self._c["tx_requests"] += 1
        source = self._source_for(n.address)
        packet = build_arp(ARPOP_REQUEST, self._mac, source, ZERO_MAC, n.address)
        self._send(dst_mac, ETH_P_ARP, packet)

    def announce(self, address: int) -> None:
        """Broadcast one RFC 5227 announcement (gratuitous request) for our ``address``
        (none while the interface is down)."""
        if not self.iface.up:
            return
        self._c["tx_gratuitous"] += 1
        self._send(BROADCAST_MAC, ETH_P_ARP, build_arp(ARPOP_REQUEST, self._mac, address,
                                                       ZERO_MAC, address))

    def interface_up(self) -> None:
        """Announce every address: now, then ``gratuitous_count - 1`` more, spaced."""
        for address, _ in self.iface.addresses:
            self.announce_address(address)

    def announce_address(self, address: int) -> None:
        """Announce ``address`` (new on an up interface, or the interface just came up): now,
        then ``gratuitous_count - 1`` more, spaced."""
        cfg = self.cfg
        self._timers = [t for t in self._timers if not t.cancelled and t.queue is not None]
        for i in range(cfg.gratuitous_count):
            if i == 0:
                self.announce(address)
            else:
                self._timers.append(
                    self.stack.call_later(i * cfg.gratuitous_interval, self.announce, address)
                )

    # --- timers ---------------------------------------------------------------------------
    def _set_state(self, n: Neighbour, state: int) -> None:
        n.state = state
        n.changed = self.stack.now
        self._index(n)
        self.stack.egress_changed()  # a cached egress may hold this entry's MAC or state

    def _index(self, n: Neighbour) -> None:
        """File ``n`` under its eviction rank, as the most recently changed entry."""
        if n.rank is not None:
            self._evictable[n.rank].pop(n.address, None)
        n.rank = _EVICT_RANK.get(n.state) if self.table.get(n.address) is n else None
        if n.rank is not None:
            self._evictable[n.rank][n.address] = n

    def _arm(self, n: Neighbour, delay: float, callback: Callable[[Neighbour], None]) -> None:
        if n.timer is not None:
            n.timer.cancel()
        n.deadline = self.stack.now + delay
        n.timer = self.stack.call_at(n.deadline, callback, n)

    def _disarm(self, n: Neighbour) -> None:
        if n.timer is not None:
            n.timer.cancel()
            n.timer = None
        n.deadline = None

    def _incomplete_expired(self, n: Neighbour) -> None:
        if self.table.get(n.address) is not n or n.state != INCOMPLETE:
            return
        if n.probes < self.cfg.retries:
            n.probes += 1
            self._solicit(n, BROADCAST_MAC)
            self._arm(n, self.cfg.timeout, self._incomplete_expired)
            return
        self._c["resolution_failures"] += 1
        q = self._take_queue(n)
        self._set_state(n, FAILED)
        if self.cfg.failed_time > 0:
            self._arm(n, self.cfg.failed_time, self._remove_timer)
        else:
            self._remove(n)
        if q:
            self._c.drop("unresolved", len(q))
            for _, ethertype, payload, _ in q:
                self.stack.neighbour_unreachable(self.iface, ethertype, payload)

    def _reachable_expired(self, n: Neighbour) -> None:
        if self.table.get(n.address) is n and n.state == REACHABLE:
            self._become_stale(n)

    def _become_stale(self, n: Neighbour) -> None:
        self._set_state(n, STALE)
        if self.cfg.stale_time > 0:
            self._arm(n, self.cfg.stale_time, self._remove_timer)
        else:
            self._remove(n)

    def _delay_expired(self, n: Neighbour) -> None:
        if self.table.get(n.address) is not n or n.state != DELAY:
            return
        if self.cfg.unicast_probes == 0:
            self._c["probe_failures"] += 1
            self._remove(n)
            return
        self._set_state(n, PROBE)
        n.probes = 1
        self._solicit(n, n.mac)
        self._arm(n, self.cfg.timeout, self._probe_expired)

    def _probe_expired(self, n: Neighbour) -> None:
        if self.table.get(n.address) is not n or n.state != PROBE:
            return
        if n.probes < self.cfg.unicast_probes:
            n.probes += 1
            self._solicit(n, n.mac)
            self._arm(n, self.cfg.timeout, self._probe_expired)
            return
        self._c["probe_failures"] += 1
        self._remove(n)

    def _remove_timer(self, n: Neighbour) -> None:
        if self.table.get(n.address) is n:
            self._remove(n)

    # --- the table ------------------------------------------------------------------------
    def _create(self, address: int, state: int) -> Neighbour | None:
        if self.arp.entry_count() >= self.cfg.max_entries and not self.arp.evict_one():
            return None
        n = Neighbour(address, state, self.stack.now)
        self.table[address] = n
        self._index(n)
        return n

    def _remove(self, n: Neighbour) -> None:
        self.stack.egress_changed()
        self._disarm(n)
        if self.table.get(n.address) is n:
            del self.table[n.address]
        if n.rank is not None:
            self._evictable[n.rank].pop(n.address, None)
            n.rank = None
        if n.queue:
            q = self._take_queue(n)
            self._c.drop("evicted", len(q))

    def eviction_candidate(self) -> tuple[tuple[int, float], Neighbour] | None:
        """The entry this table would give up first, with its eviction key (lower goes first):
        failed, then stale, then the rest by age; never incomplete or permanent ones."""
        for rank, entries in self._evictable.items():  # ranks in ascending order
            for n in entries.values():
                return (rank, n.changed), n
        return None

    def evict(self, n: Neighbour) -> None:
        self._c["evictions"] += 1
        self._remove(n)

    def learn(self, address: int, hw: bytes, *, confirmed: bool, create: bool) -> Neighbour | None:
        """RFC 826's merge: update ``address`` if known; add it if ``create``.

        ``confirmed`` (a unicast reply to us) makes the entry reachable; otherwise a new or
        changed mapping is only stale, to be confirmed by a probe when it is used."""
        n = self.table.get(address)
        if n is None:
            if not create:
                return None
            n = self._create(address, STALE)
            if n is None:
                self._c.drop("table_full")
                return None
            n.mac = hw
            self._c["entries_learned"] += 1
            if confirmed:
                self._become_reachable(n)
            else:
                self._become_stale(n)
            return n
        old = n.state
        if old == PERMANENT:
            return n
        changed = n.mac != hw
        n.mac = hw
        if confirmed:
            self._become_reachable(n)
        elif changed or old == INCOMPLETE or old == FAILED:
            self._become_stale(n)
        if old == INCOMPLETE:
            for _, ethertype, payload, offload in self._take_queue(n):
                self.output(address, ethertype, payload, offload)
        return n

    def _become_reachable(self, n: Neighbour) -> None:
        self._set_state(n, REACHABLE)
        n.probes = 0
        self._arm(n, self.cfg.reachable_time, self._reachable_expired)

    # --- input ----------------------------------------------------------------------------
    def receive(self, p: ARPPacket, flags: int) -> None:
        c, stack = self._c, self.stack
        op = p.opcode
        if op == ARPOP_REQUEST:
            c["rx_requests"] += 1
        else:
            c["rx_replies"] += 1
        smac, sip, tip = p.sender_mac, p.sender_ip, p.target_ip
        if smac[0] & 1 or smac == ZERO_MAC:
            c.drop("bad_sender_mac")
            return
        if smac == self._mac:
            c.drop("looped")
            return
        top = sip >> 24
        if top >= 224 or top == 127 or (top == 0 and sip != 0):
            c.drop("bad_sender_ip")
            return
        owner = stack.local_addresses.get(sip)
        if owner is not None:
            # someone else claims an address of ours (RFC 5227 2.4)
            c["conflicts"] += 1
            c.drop("address_conflict")
            if owner is self.iface:
                self._defend(sip)
            return
        ours = stack.local_addresses.get(tip) is self.iface
        if sip == 0:  # an RFC 5227 probe: answer it if it asks for ours, never learn from it
            if op == ARPOP_REQUEST and ours:
                self._reply(p)
            else:
                c.drop("not_for_us")
            return
        gratuitous = sip == tip
        if gratuitous:
            c["rx_gratuitous"] += 1
        self.learn(
            sip,
            bytes(smac),
            confirmed=op == ARPOP_REPLY and ours and not flags & RX_BROADCAST,
            create=ours or (gratuitous and self.cfg.accept_gratuitous and self._on_link(sip)),
        )
        if ours:
            if op == ARPOP_REQUEST:
                self._reply(p)
        elif not gratuitous:
            c.drop("not_for_us")

    def _reply(self, p: ARPPacket) -> None:
        self._c["tx_replies"] += 1
        self._send(
            p.sender_mac,
            ETH_P_ARP,
            build_arp(ARPOP_REPLY, self._mac, p.target_ip, p.sender_mac, p.sender_ip),
        )

    def _defend(self, address: int) -> None:
        now = self.stack.now
        last = self._defended.get(address)
        if last is None or now - last >= self.cfg.defend_interval:
            self._defended[address] = now
            self._c["defences"] += 1
            self.announce(address)

    # --- administration and reports -------------------------------------------------------
    def add_static(self, address: int | str, hw: bytes | str) -> None:
        """A permanent entry (``arp -s``): never expires, never changed by received ARP."""
        addr, hw_b = ip4(address), mac(hw)
        n = self.table.get(addr)
        if n is None:
            n = Neighbour(addr, PERMANENT, self.stack.now)
            self.table[addr] = n
        queued = self._take_queue(n) if n.queue else deque()
        self._disarm(n)
        n.mac = hw_b
        self._set_state(n, PERMANENT)
        for _, ethertype, payload, offload in queued:
            self.output(addr, ethertype, payload, offload)

    def delete(self, address: int | str) -> bool:
        """Remove an entry (``arp -d``); queued packets for it are dropped. True if it existed."""
        n = self.table.get(ip4(address))
        if n is None:
            return False
        self._remove(n)
        return True

    def flush(self) -> None:
        """Remove every entry that is not permanent."""
        for n in [n for n in self.table.values() if n.state != PERMANENT]:
            self._remove(n)

    def resolved_mac(self, address: int) -> bytes | None:
        """The MAC of ``address`` when packets to it go straight out with no bookkeeping
        (reachable or permanent), else None. Valid until ``stack.egress_generation`` changes:
        every state change, MAC change and removal bumps it."""
        n = self.table.get(address)
        if n is not None and n.state <= PERMANENT:
            return n.mac
        return None

    def lookup(self, address: int) -> Neighbour | None:
        return self.table.get(address)

    def entries(self) -> list[Mapping[str, Any]]:
        now = self.stack.now
        rows: list[Mapping[str, Any]] = []
        for n in self.table.values():
            known = n.state not in (INCOMPLETE, FAILED)
            rows.append({
                "address": ip4_str(n.address),
                "mac": mac_str(n.mac) if known else None,
                "interface": self.iface.name,
                "state": STATE_NAMES[n.state],
                "expires": None if n.deadline is None else round(max(0.0, n.deadline - now), 3),
                "queued": len(n.queue),
            })
        return rows

    def stop(self) -> None:
        """Cancel every timer and drop what is queued (the stack is stopping)."""
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        for n in self.table.values():
            self._disarm(n)
            if n.queue:
                self._take_queue(n)
