"""Router discovery and stateless address autoconfiguration (RFC 4861 6.3, RFC 4862 5.5).

When an Ethernet interface comes up, a router solicitation goes to all-routers after a random
delay of up to ``ndp.router_solicitation_delay`` seconds (MAX_RTR_SOLICITATION_DELAY), then
every ``ndp.router_solicitation_interval`` seconds, ``ndp.router_solicitations`` in all
(MAX_RTR_SOLICITATIONS), until an advertisement arrives. It leaves from the link-local address
with our source link-layer option once that address is preferred, from ``::`` without the
option before (RFC 4861 6.3.7).

A router advertisement is accepted (RFC 4861 6.1.2) with hop limit 255, a link-local source,
code 0, at least 16 bytes and well-formed options (the checksum is checked by icmpv6 first:
its ``bad_checksum``); anything else is dropped and counted by reason (``ra_*``). Then:

* non-zero Cur Hop Limit, Reachable Time and Retrans Timer (RFC 4861 6.3.4): the hop limit
  of our packets, the neighbour cache's ReachableTime (times a random 0.5..1.5) and
  RetransTimer on that interface;
* router lifetime > 0: the router becomes a default router, the route ``::/0`` through it
  (origin ``ra``, metric 1024, so a static default route wins) until the lifetime ends;
  lifetime 0 removes it;
* source link-layer option: the router's neighbour entry (stale, flagged router);
* MTU option: the interface's IPv6 MTU (1280 up to the link MTU);
* prefix information with the A flag, a /64 and valid >= preferred lifetime (RFC 4862 5.5.3):
  an ``autoconf`` address from the prefix and the interface identifier the link-local address
  uses (``ipv6.addr_gen_mode``: modified EUI-64 or RFC 7217), through duplicate address
  detection like any other; it is deprecated when its preferred lifetime ends and removed
  when its valid lifetime ends. A later advertisement refreshes both, the valid lifetime by
  the two-hour rule of 5.5.3 e). With the L flag the prefix is on-link: the address carries
  the prefix length (its connected route), or without an address a route ``origin ra`` lives
  for the valid lifetime. Link-local prefixes are ignored. At most 16 prefixes and 16
  default routers per interface (``prefix_too_many``, ``ra_too_many_routers``), as Linux
  bounds its addresses.

``ndp.accept_ra=false`` (Linux's accept_ra=0) drops advertisements (``ra_disabled``) and sends
no solicitation; ``ndp.autoconf=false`` keeps routers and MTU but forms no address.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

from layers.links.base import Medium
from layers.protocols import IPDatagram, IPv6Configuration
from layers.wire.ipv6 import (
    ALL_ROUTERS,
    IPV6_MIN_MTU,
    ND_OPT_MTU,
    ND_OPT_PREFIX_INFO,
    ND_OPT_SOURCE_LLADDR,
    ND_ROUTER_SOLICIT,
    NH_ICMPV6,
    build_icmpv6,
    ip6_str,
    is_link_local6,
    is_multicast6,
    nd_lladdr_option,
    nd_options,
    prefix_mask6,
)

if TYPE_CHECKING:
    from layers.interface import Interface
    from layers.timers import Timer
    from layers_ndp.neighbour import Ndp

log = logging.getLogger("layers.ndp")
INFINITE = 0xFFFFFFFF
TWO_HOURS = 7200.0
#: the metric of routes learned from advertisements (Linux's 1024): static ones win
RA_METRIC = 1024
PI_ONLINK = 0x80
PI_AUTO = 0x40
#: per interface, as Linux's max_addresses (16): a flood of advertisements with new prefixes
#: or from new routers cannot grow the address list or routing table without bound
MAX_PREFIXES = 16
MAX_ROUTERS = 16


class _Prefix:
    """An autoconfigured address or an on-link prefix with its lifetimes."""

    __slots__ = ("address", "iface", "plen", "preferred_timer", "prefix", "valid_timer",
                 "valid_until")

    def __init__(self, iface: Interface, prefix: int, plen: int, address: int | None) -> None:
        self.iface = iface
        self.prefix = prefix
        self.plen = plen
        self.address = address
        self.valid_until = 0.0
        self.valid_timer: Timer | None = None
        self.preferred_timer: Timer | None = None

    def cancel(self) -> None:
        for t in (self.valid_timer, self.preferred_timer):
            if t is not None:
                t.cancel()
        self.valid_timer = self.preferred_timer = None


class RouterDiscovery:
    """Router solicitations, advertisements, default routers and SLAAC for one stack."""

    def __init__(self, ndp: Ndp) -> None:
        self.ndp = ndp
        self.stack = ndp.stack
        self.cfg = ndp.cfg
        self.c = ndp.counters
        self._rng = random.Random()
        #: interface -> (solicitations sent, timer) while soliciting
        self.soliciting: dict[Interface, tuple[int, Timer | None]] = {}
        #: (interface, router) -> the timer that ends its lifetime
        self.routers: dict[tuple[Interface, int], Timer] = {}
        #: (interface, prefix, prefix length, autoconf?) -> state
        self.prefixes: dict[tuple[Interface, int, int, bool], _Prefix] = {}

    def _config(self) -> IPv6Configuration | None:
        ip6 = self.stack.ip6
        return ip6 if isinstance(ip6, IPv6Configuration) else None

    # --- solicitations --------------------------------------------------------------------
    def interface_up(self, iface: Interface) -> None:
        cfg = self.cfg
        if (not cfg.accept_ra or cfg.router_solicitations == 0 or iface.mac is None
                or iface.medium is not Medium.ETHERNET or self.stack.ip6 is None):
            return
        old = self.soliciting.pop(iface, None)
        if old is not None and old[1] is not None:
            old[1].cancel()
        delay = self._rng.uniform(0.0, cfg.router_solicitation_delay)
        self.soliciting[iface] = (0, self.stack.call_later(delay, self._solicit, iface))

    def _solicit(self, iface: Interface) -> None:
        state = self.soliciting.get(iface)
        if state is None:
            return
        sent = state[0]
        if sent >= self.cfg.router_solicitations:
            del self.soliciting[iface]
            return
        self.send_rs(iface)
        timer = self.stack.call_later(self.cfg.router_solicitation_interval, self._solicit, iface)
        self.soliciting[iface] = (sent + 1, timer)

    def send_rs(self, iface: Interface) -> None:
        ip6 = self.stack.ip6
        if ip6 is None or iface.mac is None:
            return
        src = self.ndp.link_local(iface) or 0
        body = b"\x00\x00\x00\x00"
        if src:  # never a source link-layer option from :: (RFC 4861 4.1)
            body += nd_lladdr_option(ND_OPT_SOURCE_LLADDR, iface.mac)
        msg = build_icmpv6(src, ALL_ROUTERS, ND_ROUTER_SOLICIT, 0, body)
        self.c["tx_router_solicitations"] += 1
        send: Any = ip6.send
        send(ALL_ROUTERS, NH_ICMPV6, msg, src=src, ttl=255, interface=iface)

    def _stop_soliciting(self, iface: Interface) -> None:
        state = self.soliciting.pop(iface, None)
        if state is not None and state[1] is not None:
            state[1].cancel()

    # --- advertisements -------------------------------------------------------------------
    def advertisement(self, iface: Interface, dg: IPDatagram, msg: memoryview) -> None:
        c = self.c
        c["rx_router_advertisements"] += 1
        if not self.cfg.accept_ra:
            c.drop("ra_disabled")
            return
        if not is_link_local6(dg.src):  # RFC 4861 6.1.2: routers speak from link-local
            c.drop("ra_source_not_link_local")
            return
        if len(msg) < 16:
            c.drop("ra_truncated")
            return
        options = nd_options(msg[16:])
        if options is None:
            c.drop("ra_bad_option")
            return
        config = self._config()
        if config is None:
            c.drop("ra_no_ipv6")
            return
        c["ra_accepted"] += 1
        self._stop_soliciting(iface)
        lifetime = int.from_bytes(msg[6:8], "big")
        # RFC 4861 6.3.4: non-zero Cur Hop Limit, Reachable Time and Retrans Timer are taken
        if msg[4]:
            config.set_hop_limit6(msg[4])
        res = self.ndp.resolvers.get(iface)
        reachable_ms = int.from_bytes(msg[8:12], "big")
        retrans_ms = int.from_bytes(msg[12:16], "big")
        if res is not None and reachable_ms and reachable_ms <= 3_600_000:  # MAX_REACHABLE_TIME
            # ReachableTime: a random factor of 0.5..1.5 on the router's BaseReachableTime
            res.reachable_time = reachable_ms / 1000.0 * self._rng.uniform(0.5, 1.5)
        if res is not None and retrans_ms:
            res.retrans_timer = retrans_ms / 1000.0
        router = dg.src
        for kind, body in options:
            if kind == ND_OPT_SOURCE_LLADDR and len(body) >= 6:
                res = self.ndp.resolvers.get(iface)
                if res is not None:
                    res.learn_from_solicitation(router, body[:6])
                    res.mark_router(router)
            elif kind == ND_OPT_MTU and len(body) >= 6:
                mtu = int.from_bytes(body[2:6], "big")
                if IPV6_MIN_MTU <= mtu <= iface.mtu:
                    config.set_link_mtu6(iface, mtu)
                    c["ra_mtu_updates"] += 1
                else:
                    c["ra_mtu_ignored"] += 1
            elif kind == ND_OPT_PREFIX_INFO and len(body) >= 30:
                self._prefix(config, iface, body)
        self._default_router(config, iface, router, lifetime)

    def _default_router(self, config: IPv6Configuration, iface: Interface, router: int,
                        lifetime: int) -> None:
        key = (iface, router)
        timer = self.routers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if lifetime == 0:
            if timer is not None:
                config.remove_route6(0, 0, iface, gateway=router, origin="ra")
                self.c["default_routers_removed"] += 1
            return
        if timer is None:
            if sum(1 for i, _ in self.routers if i is iface) >= MAX_ROUTERS:
                self.c["ra_too_many_routers"] += 1
                return
            config.add_route6(0, 0, iface, gateway=router, metric=RA_METRIC, origin="ra")
            self.c["default_routers_added"] += 1
        self.routers[key] = self.stack.call_later(float(lifetime), self._router_expired, key)

    def _router_expired(self, key: tuple[Interface, int]) -> None:
        self.routers.pop(key, None)
        config = self._config()
        if config is not None:
            config.remove_route6(0, 0, key[0], gateway=key[1], origin="ra")
        self.c["default_routers_expired"] += 1

    # --- prefixes (RFC 4862 5.5.3) --------------------------------------------------------
    def _prefix(self, config: IPv6Configuration, iface: Interface, body: bytes) -> None:
        c = self.c
        plen, flags = body[0], body[1]
        valid = int.from_bytes(body[2:6], "big")
        preferred = int.from_bytes(body[6:10], "big")
        prefix = int.from_bytes(body[14:30], "big")
        if plen > 128:
            c["prefix_bad_length"] += 1
            return
        prefix &= prefix_mask6(plen)
        if is_link_local6(prefix) or is_multicast6(prefix):
            c["prefix_ignored_link_local"] += 1
            return
        if preferred > valid:
            c["prefix_bad_lifetimes"] += 1
            return
        formed = False
        if flags & PI_AUTO and self.cfg.autoconf:
            if plen != 64:  # prefix + a 64-bit interface identifier must make 128 bits
                c["prefix_bad_length"] += 1
            else:
                formed = self._autoconf(config, iface, prefix, plen, bool(flags & PI_ONLINK),
                                        valid, preferred)
        if flags & PI_ONLINK and not formed:
            self._onlink(config, iface, prefix, plen, valid)

    def _autoconf(self, config: IPv6Configuration, iface: Interface, prefix: int, plen: int,
                  onlink: bool, valid: int, preferred: int) -> bool:
        key = (iface, prefix, plen, True)
        entry = self.prefixes.get(key)
        now = self.stack.now
        if entry is None:
            if valid == 0:
                return False
            iid = config.interface_id(iface, prefix)
            if iid is None:
                return False
            address = prefix | iid
            if any(a == address for a, _ in iface.addresses6):
                return True  # configured by hand: leave it alone
            if self._count(iface) >= MAX_PREFIXES:
                self.c["prefix_too_many"] += 1
                return True
            entry = self.prefixes[key] = _Prefix(iface, prefix, plen, address)
            iface.add_address6(address, plen if onlink else 128, "autoconf")
            self.c["slaac_addresses"] += 1
            log.info("ndp: %s on %s from a router advertisement", ip6_str(address), iface.name)
            valid_for = float(valid)
        else:
            # 5.5.3 e): a short valid lifetime cannot cut a long-lived address short
            remaining = entry.valid_until - now
            if valid == INFINITE or valid > TWO_HOURS or valid > remaining:
                valid_for = float(valid)
            elif remaining <= TWO_HOURS:
                valid_for = remaining
            else:
                valid_for = TWO_HOURS
            assert entry.address is not None
            config.deprecate_address6(entry.address, preferred == 0)
        self._set_lifetimes(config, key, entry, valid_for, float(preferred))
        return True

    def _set_lifetimes(self, config: IPv6Configuration, key: tuple[Interface, int, int, bool],
                       entry: _Prefix, valid: float, preferred: float) -> None:
        entry.cancel()
        stack = self.stack
        if valid < INFINITE:
            entry.valid_until = stack.now + valid
            entry.valid_timer = stack.call_later(valid, self._valid_ended, key)
        else:
            entry.valid_until = float("inf")
        if entry.address is not None and preferred < INFINITE:
            entry.preferred_timer = stack.call_later(preferred, self._preferred_ended, key)

    def _preferred_ended(self, key: tuple[Interface, int, int, bool]) -> None:
        entry = self.prefixes.get(key)
        config = self._config()
        if entry is None or entry.address is None or config is None:
            return
        entry.preferred_timer = None
        config.deprecate_address6(entry.address)
        self.c["slaac_deprecated"] += 1

    def _valid_ended(self, key: tuple[Interface, int, int, bool]) -> None:
        entry = self.prefixes.pop(key, None)
        config = self._config()
        if entry is None or config is None:
            return
        entry.cancel()
        if entry.address is not None:
            entry.iface.remove_address6(entry.address)
            self.c["slaac_expired"] += 1
        else:
            config.remove_route6(entry.prefix, entry.plen, entry.iface, origin="ra")
            self.c["onlink_expired"] += 1

    def _onlink(self, config: IPv6Configuration, iface: Interface, prefix: int, plen: int,
                valid: int) -> None:
        key = (iface, prefix, plen, False)
        entry = self.prefixes.get(key)
        if valid == 0:
            if entry is not None:
                self._valid_ended(key)
            return
        if entry is None:
            if self._count(iface) >= MAX_PREFIXES:
                self.c["prefix_too_many"] += 1
                return
            entry = self.prefixes[key] = _Prefix(iface, prefix, plen, None)
            config.add_route6(prefix, plen, iface, origin="ra", metric=RA_METRIC)
        self._set_lifetimes(config, key, entry, float(valid), 0.0)

    def _count(self, iface: Interface) -> int:
        return sum(1 for key in self.prefixes if key[0] is iface)

    # --- lifecycle and reports ------------------------------------------------------------
    def stop(self) -> None:
        for _, timer in self.soliciting.values():
            if timer is not None:
                timer.cancel()
        self.soliciting.clear()
        for timer in self.routers.values():
            timer.cancel()
        self.routers.clear()
        for entry in self.prefixes.values():
            entry.cancel()

    def report(self) -> list[dict[str, Any]]:
        now = self.stack.now
        rows: list[dict[str, Any]] = []
        for (iface, router), timer in self.routers.items():
            rows.append({"interface": iface.name, "router": ip6_str(router),
                         "expires": round(timer.when - now, 1)})
        return rows
