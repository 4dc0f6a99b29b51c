"""The IPv4 routing table: longest-prefix match, connected routes, a default gateway."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from layers.errors import ConfigurationError
from layers.wire.addr import ip4_str, prefix_mask

if TYPE_CHECKING:
    from layers.interface import Interface


@attrs.frozen
class Route:
    network: int
    prefix_length: int
    interface: Interface
    gateway: int | None = None
    metric: int = 0
    origin: str = "static"  # "connected" for the subnet of an interface address

    def next_hop(self, dst: int) -> int:
        return self.gateway if self.gateway is not None else dst

    def describe(self) -> dict[str, object]:
        return {
            "destination": ip4_str(self.network),
            "prefix_length": self.prefix_length,
            "netmask": ip4_str(prefix_mask(self.prefix_length)),
            "gateway": ip4_str(self.gateway) if self.gateway is not None else "0.0.0.0",
            "interface": self.interface.name,
            "metric": self.metric,
            "origin": self.origin,
        }


class RoutingTable:
    """Routes grouped by prefix length; lookups try the longest length first (at most 33 dict
    probes) and are cached per destination until the table changes."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        #: called after every change (the stack's egress cache invalidation)
        self.on_change = on_change
        self._by_len: dict[int, dict[int, list[Route]]] = {}
        self._lengths: list[int] = []
        self._cache: dict[int, Route | None] = {}

    def add(
        self,
        network: int,
        prefix_length: int,
        interface: Interface,
        *,
        gateway: int | None = None,
        metric: int = 0,
        origin: str = "static",
    ) -> Route:
        if not 0 <= prefix_length <= 32:
            raise ConfigurationError(f"prefix length {prefix_length} is not in 0..32")
        network &= prefix_mask(prefix_length)
        route = Route(network, prefix_length, interface, gateway, metric, origin)
        bucket = self._by_len.setdefault(prefix_length, {}).setdefault(network, [])
        if any(r.gateway == gateway and r.interface is interface for r in bucket):
            raise ConfigurationError(
                f"route {ip4_str(network)}/{prefix_length} via "
                f"{ip4_str(gateway) if gateway is not None else 'link'} exists already"
            )
        bucket.append(route)
        bucket.sort(key=lambda r: r.metric)
        self._lengths = sorted(self._by_len, reverse=True)
        self._cache.clear()
        if self.on_change is not None:
            self.on_change()
        return route

    def add_default(self, gateway: int, interface: Interface, metric: int = 0) -> Route:
        return self.add(0, 0, interface, gateway=gateway, metric=metric)

    def remove(self, route: Route) -> None:
        bucket = self._by_len.get(route.prefix_length, {}).get(route.network, [])
        if route in bucket:
            bucket.remove(route)
            if not bucket:
                del self._by_len[route.prefix_length][route.network]
                if not self._by_len[route.prefix_length]:
                    del self._by_len[route.prefix_length]
            self._lengths = sorted(self._by_len, reverse=True)
            self._cache.clear()
            if self.on_change is not None:
                self.on_change()

    def remove_interface(self, interface: Interface) -> None:
        for route in [r for r in self if r.interface is interface]:
            self.remove(route)

    def lookup(self, dst: int) -> Route | None:
        try:
            return self._cache[dst]
        except KeyError:
            pass
        found: Route | None = None
        for plen in self._lengths:
            bucket = self._by_len[plen].get(dst & prefix_mask(plen))
            if bucket:
                found = bucket[0]
                break
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[dst] = found
        return found

    def __iter__(self):  # type: ignore[no-untyped-def]
        for plen in self._lengths:
            for bucket in self._by_len[plen].values():
                yield from bucket

    def __len__(self) -> int:
        return sum(1 for _ in self)
