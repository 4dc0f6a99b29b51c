"""The composed stack: dispatch tables, interfaces, routes, timers and counters.

A :class:`Stack` is sans-IO. It never reads a real clock or a descriptor: a runner feeds it
frames (:meth:`Stack.receive`), tells it the time (the ``clock`` callable it was given) and runs
its due timers (:meth:`Stack.poll`). The same stack therefore runs on asyncio against a TAP and
on a :class:`~layers.timers.VirtualClock` in a test that jumps through a minute of
retransmission backoff in microseconds.

Composition happens in the constructor: every plugin's composition hooks are called once and
the results compiled into dicts, so the per-packet path is
``link -> network_by_ethertype[type] -> transports[proto]`` without pluggy.
"""

from __future__ import annotations

import errno as _errno
import logging
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar

import attrs
import pluggy

from layers.counters import Counters
from layers.errors import CompositionError, ConfigurationError, MalformedPacket
from layers.frame import Frame
from layers.interface import Interface
from layers.links.base import RX_BROADCAST, Clock, Link, Medium, TxOffload
from layers.loader import make_plugin_manager, plugin_error
from layers.protocols import (
    ErrorReporter,
    IPDatagram,
    IPv4Service,
    IPv6Service,
    NetworkProtocol,
    TransportProtocol,
)
from layers.routing import RoutingTable
from layers.settings import SettingsRegistry, convert_setting
from layers.telemetry import Telemetry
from layers.timers import Timer, TimerQueue
from layers.wire.addr import ip4, ip4_network, ip4_str

log = logging.getLogger("layers")
T = TypeVar("T")
_MAX_TIMERS_PER_POLL = 100_000
#: an Ethernet header's destination MAC and ethertype (the source skipped)
_ETH_DST_TYPE = struct.Struct("!6s6xH").unpack_from

#: called with every :class:`Stack` as it is created (see :func:`watch_stacks`)
_stack_watchers: list[Callable[[Stack], None]] = []


@contextmanager
def watch_stacks() -> Iterator[list[Stack]]:
    """The stacks created inside the ``with`` block, in a list filled as they are made (held
    until the block's list is dropped). Tests use it to fail when any stack of theirs caught
    an internal error (``stack.internal_failures``)."""
    made: list[Stack] = []
    _stack_watchers.append(made.append)
    try:
        yield made
    finally:
        _stack_watchers.remove(made.append)


@attrs.define
class PluginFailure:
    """A plugin that raised where the stack goes on (a per-frame hook, a report, stopping)."""

    plugin: str
    distribution: str
    #: what it was doing: "its layers_frame_received hook"
    doing: str
    #: the one-line message logged the first time (names the fix)
    message: str
    count: int = 0

    def describe(self) -> dict[str, object]:
        return {"plugin": self.plugin, "distribution": self.distribution, "doing": self.doing,
                "count": self.count, "message": self.message}


class _CountingReporter:
    """Stands in when no plugin reports ICMP errors: the errors are counted, not sent."""

    def __init__(self, counters: Counters) -> None:
        self._c = counters

    def destination_unreachable(self, datagram: IPDatagram, code: int) -> None:
        self._c.drop("no_error_reporter")

    def time_exceeded(self, datagram: IPDatagram, code: int) -> None:
        self._c.drop("no_error_reporter")

    def parameter_problem(self, datagram: IPDatagram, pointer: int) -> None:
        self._c.drop("no_error_reporter")


class Stack:
    """A composed stack.

    ``plugins`` selects plugins by entry-point name (None: all installed, minus
    ``LAYERS_DISABLE_PLUGINS``); modules or objects in the list are registered as ad-hoc plugins.
    ``settings`` are per-plugin options (``{"arp.timeout": 2.0}``), documented by each plugin.
    """

    def __init__(
        self,
        plugins: Sequence[str | ModuleType | object] | None = None,
        *,
        block: Iterable[str] | None = None,
        clock: Clock = time.monotonic,
        settings: Mapping[str, Any] | None = None,
        pm: pluggy.PluginManager | None = None,
        name: str = "layers",
    ) -> None:
        self.name = name
        self.pm = pm if pm is not None else make_plugin_manager(plugins, block=block)
        self.hook = self.pm.hook
        self._clock = clock
        self.settings: dict[str, Any] = dict(settings or {})
        #: the settings each composed plugin declared (see :mod:`layers.settings`)
        self.settings_registry = SettingsRegistry(self.settings)
        self.timers = TimerQueue()
        self.counters: dict[str, Counters] = {}
        self.interfaces: list[Interface] = []
        #: bumped by every change that could alter where or how a packet to some destination
        #: leaves (routes, addresses, interfaces up/down, neighbours, path MTUs): the network
        #: layers' per-destination egress caches are valid while it stays the same
        self.egress_generation = 0
        self.routes = RoutingTable(on_change=self.egress_changed)
        #: local address -> interface holding it
        self.local_addresses: dict[int, Interface] = {}
        #: set by a runner: called with a deadline earlier than any timer it knew of
        self.on_deadline_change: Callable[[float], None] | None = None
        self.running = False
        self._c = self.counter("stack")
        #: (plugin, what it was doing) -> its failures where the stack went on
        self.plugin_failures: dict[tuple[str, str], PluginFailure] = {}
        #: (plugin or "core", where) -> the internal errors caught there (bugs, each one)
        self.internal_failures: dict[tuple[str, str], PluginFailure] = {}
        #: per-connection telemetry subscribers (see layers.telemetry)
        self.telemetry = Telemetry()
        #: the loopback interface ``lo`` (127.0.0.1/8), or None (no IPv4, or
        #: ``ipv4.loopback=false``); it is not in ``interfaces``, which holds the links
        #: runners poll: nothing crosses it but packets to ourselves, delivered on the next poll
        self.loopback: Interface | None = None
        self._compose()
        self.settings_registry.check(self._installed_plugin_names())
        if self.ip is not None and getattr(self.ip, "wants_loopback", False):
            self._add_loopback()
        for watcher in list(_stack_watchers):
            watcher(self)

    # --- composition ------------------------------------------------------------------
    def _installed_plugin_names(self) -> list[str]:
        from layers.loader import installed_entry_points

        try:
            return list(installed_entry_points())
        except CompositionError:
            return []

    def _declare_settings(self) -> None:
        from layers.congestion import collect_congestion_controls

        registry = self.settings_registry
        for plugin, answer in self.call_plugins("layers_settings", stack=self):
            for prefix, spec in answer.items():
                registry.declare(prefix, spec, owner=plugin)
        # each congestion control's own settings: NAME.KEY
        for plugin, offered in self.call_plugins("layers_congestion_controls"):
            for info in collect_congestion_controls([offered]).values():
                registry.declare(info.name, info.settings, owner=plugin)
                if info.check is None:
                    continue
                given = {key: self.setting(f"{info.name}.{key}", default)
                         for key, default in info.settings.items()
                         if f"{info.name}.{key}" in self.settings}
                try:
                    info.check(given)
                except ConfigurationError:
                    raise
                except Exception as exc:
                    raise plugin_error(plugin, f"checking the {info.name} settings",
                                       exc) from exc

    def call_plugins(
        self, hook_name: str, *, firstresult: bool = False, **kwargs: Any
    ) -> list[tuple[str, Any]]:
        """``(plugin name, answer)`` from each implementation of the composition or lifecycle
        hook ``hook_name``, in pluggy's order, None answers left out (only the first answer
        with ``firstresult``). A :class:`ConfigurationError` a plugin raises passes unchanged
        (its message names the fix); any other exception becomes a
        :class:`~layers.errors.PluginError` naming the plugin, its distribution, what it
        raised and how to run without it."""
        caller = getattr(self.hook, hook_name)
        impls = caller.get_hookimpls()
        if any(impl.wrapper or impl.hookwrapper for impl in impls):
            answers = caller(**kwargs)
            if firstresult:
                return [("?", answers)] if answers is not None else []
            return [("?", a) for a in answers if a is not None]
        found: list[tuple[str, Any]] = []
        for impl in reversed(impls):
            try:
                answer = impl.function(*[kwargs[a] for a in impl.argnames])
            except ConfigurationError:
                raise
            except Exception as exc:
                raise plugin_error(impl.plugin_name, f"its {hook_name} hook", exc) from exc
            if answer is not None:
                found.append((impl.plugin_name, answer))
                if firstresult:
                    break
        return found

    def _compose(self) -> None:
        self._declare_settings()
        self.link_drivers: dict[str, Callable[..., Link]] = {}
        for _plugin, drivers in self.call_plugins("layers_link_drivers"):
            for scheme, factory in drivers.items():
                if scheme in self.link_drivers:
                    raise CompositionError(f"two plugins provide the link driver {scheme!r}")
                self.link_drivers[scheme] = factory

        self.protocols: dict[str, object] = {}
        self.network_by_ethertype: dict[int, NetworkProtocol] = {}
        self.network_by_version: dict[int, NetworkProtocol] = {}
        for _plugin, group in self.call_plugins("layers_network_protocols", stack=self):
            for proto in group:
                self._register_name(proto)
                if proto.ethertype is not None:
                    other = self.network_by_ethertype.get(proto.ethertype)
                    if other is not None:
                        raise CompositionError(
                            f"{proto.name} and {other.name} both claim ethertype "
                            f"0x{proto.ethertype:04x}; select only one with --plugins"
                        )
                    self.network_by_ethertype[proto.ethertype] = proto
                if proto.ip_version is not None:
                    other = self.network_by_version.get(proto.ip_version)
                    if other is not None:
                        raise CompositionError(
                            f"{proto.name} and {other.name} both claim IP version "
                            f"{proto.ip_version}; select only one with --plugins"
                        )
                    self.network_by_version[proto.ip_version] = proto

        ip = self.network_by_version.get(4)
        if ip is not None and not isinstance(ip, IPv4Service):
            raise CompositionError(f"{ip.name} claims IP version 4 but lacks IPv4Service methods")
        #: the IPv4 output service transports send through, or None
        self.ip: IPv4Service | None = ip
        ip6 = self.network_by_version.get(6)
        if ip6 is not None and not isinstance(ip6, IPv6Service):
            raise CompositionError(f"{ip6.name} claims IP version 6 but lacks IPv6Service methods")
        #: the IPv6 output service (128-bit int addresses), or None
        self.ip6: IPv6Service | None = ip6

        self.transports: dict[int, TransportProtocol] = {}
        for _plugin, group in self.call_plugins("layers_transport_protocols", stack=self):
            for tproto in group:
                self._register_name(tproto)
                other_t = self.transports.get(tproto.protocol)
                if other_t is not None:
                    raise CompositionError(
                        f"{tproto.name} and {other_t.name} both claim IP protocol "
                        f"{tproto.protocol}; select only one with --plugins"
                    )
                self.transports[tproto.protocol] = tproto
        if self.transports and self.ip is None and self.ip6 is None:
            names = ", ".join(t.name for t in self.transports.values())
            raise CompositionError(
                f"{names} need an IPv4 network layer; add ipv4 to --plugins "
                f"(or remove it from LAYERS_DISABLE_PLUGINS)"
            )
        reporters = self.call_plugins("layers_error_reporter", firstresult=True, stack=self)
        self.errors: ErrorReporter = (
            reporters[0][1] if reporters else _CountingReporter(self._c)
        )
        # Per-frame hooks: the core's own implementation is always there; only route frames
        # through pluggy when some other plugin hooks in.
        self._rx_hooked = len(self.hook.layers_frame_received.get_hookimpls()) > 1
        self._tx_hooked = len(self.hook.layers_frame_sending.get_hookimpls()) > 1
        #: code object of each per-frame hook implementation -> its plugin, to name the one
        #: that raised
        self._frame_hook_owners = {
            getattr(impl.function, "__func__", impl.function).__code__: impl.plugin_name
            for caller in (self.hook.layers_frame_received, self.hook.layers_frame_sending)
            for impl in caller.get_hookimpls()
            if impl.plugin_name != "core"
        }
        #: top-level package of each plugin's module -> the plugin's name, to name the
        #: plugin whose code raised an internal error
        self._plugin_packages: dict[str, str] = {}
        for pname, plugin in self.pm.list_name_plugin():
            if plugin is None or pname == "core":
                continue
            module = plugin.__name__ if isinstance(plugin, ModuleType) else type(
                plugin).__module__
            self._plugin_packages.setdefault(module.split(".")[0], pname)

    def _register_name(self, proto: Any) -> None:
        name = getattr(proto, "name", None)
        if not isinstance(name, str):
            raise CompositionError(f"protocol object {proto!r} has no 'name' attribute")
        if name in self.protocols:
            raise CompositionError(f"two protocols are named {name!r}")
        self.protocols[name] = proto

    @property
    def plugin_names(self) -> list[str]:
        """The names of the plugins composed into this stack, sorted (the core not included)."""
        return sorted(n for n, p in self.pm.list_name_plugin() if p is not None and n != "core")

    def protocol(self, name: str) -> Any:
        """The protocol object registered under ``name`` (``"tcp"``, ``"arp"``...)."""
        try:
            return self.protocols[name]
        except KeyError:
            have = ", ".join(sorted(self.protocols)) or "none"
            raise CompositionError(
                f"no protocol named {name!r} in this stack (it has: {have}); add its plugin "
                f"to --plugins"
            ) from None

    def find(self, kind: type[T]) -> T | None:
        """The first protocol object implementing the runtime-checkable Protocol ``kind``."""
        for proto in self.protocols.values():
            if isinstance(proto, kind):
                return proto
        return None

    def require(self, kind: type[T], *, what: str, plugin: str) -> T:
        """The protocol object providing the service ``kind`` (a runtime-checkable Protocol,
        e.g. :class:`layers.streams.StreamService`), or a :class:`CompositionError` saying
        that this stack has no ``what`` and to add ``plugin`` (the usual provider). This is
        the one way to require a service: every caller gets the same error type and fix."""
        found = self.find(kind)
        if found is None:
            have = ", ".join(sorted(self.protocols)) or "none"
            raise CompositionError(
                f"this stack has no {what} (its protocols: {have}); add {plugin} to --plugins "
                f"(or remove it from LAYERS_DISABLE_PLUGINS), or compose another plugin "
                f"providing {kind.__name__}"
            )
        return found

    def counter(self, name: str) -> Counters:
        """The counters of ``name`` (a protocol or subsystem), created on first use."""
        c = self.counters.get(name)
        if c is None:
            c = self.counters[name] = Counters(name)
        return c

    def setting(self, key: str, default: T) -> T:
        """``settings[key]`` converted to the type of ``default``, or ``default``. Plugins
        declare their keys through ``layers_settings``; :func:`layers.settings.read_settings`
        reads a whole declared group at once."""
        if key not in self.settings:
            return default
        converted: T = convert_setting(key, self.settings[key], default)
        return converted

    # --- links and interfaces --------------------------------------------------------
    def open_link(self, spec: str, **options: Any) -> Link:
        """Open a link from a spec such as ``tap:tap0`` or ``tun:tun0``."""
        scheme, sep, name = spec.partition(":")
        if not sep or not name:
            raise ConfigurationError(
                f"link spec {spec!r} should be SCHEME:NAME, for example tap:tap0 or tun:tun0"
            )
        factory = self.link_drivers.get(scheme)
        if factory is None:
            known = ", ".join(sorted(self.link_drivers))
            raise ConfigurationError(f"unknown link type {scheme!r} in {spec!r}; known: {known}")
        return factory(name, **options)

    def add_interface(
        self,
        link: Link | str,
        *,
        address: str | None = None,
        name: str | None = None,
        **link_options: Any,
    ) -> Interface:
        """Attach a link (or open one from a spec) and optionally give it ``a.b.c.d/n``."""
        if isinstance(link, str):
            link = self.open_link(link, **link_options)
        elif link_options:
            raise ConfigurationError("link options are only for link specs, not Link objects")
        for impl in reversed(self.hook.layers_wrap_link.get_hookimpls()):
            kwargs: dict[str, object] = {"stack": self, "link": link}
            try:
                wrapped = impl.function(*[kwargs[a] for a in impl.argnames])
            except ConfigurationError:
                raise
            except Exception as exc:
                raise plugin_error(impl.plugin_name, "its layers_wrap_link hook", exc) from exc
            if isinstance(wrapped, Link):
                link = wrapped
        link.attach(self._clock)
        iface = Interface(self, link, name or link.name, len(self.interfaces) + 1)
        if any(i.name == iface.name for i in self.interfaces) or (
            self.loopback is not None and iface.name == self.loopback.name
        ):
            raise ConfigurationError(f"an interface named {iface.name!r} exists already")
        if iface.medium is Medium.ETHERNET:
            if iface.mac is None:
                raise ConfigurationError(f"Ethernet link {link.name} has no MAC address")
            resolvers = self.call_plugins(
                "layers_neighbour_resolver", firstresult=True, stack=self, interface=iface
            )
            iface.resolver = resolvers[0][1] if resolvers else None
            for plugin, answer in self.call_plugins(
                "layers_neighbour_resolvers", stack=self, interface=iface
            ):
                for ethertype, resolver in answer.items():
                    if ethertype in iface.resolvers:
                        raise CompositionError(
                            f"two plugins resolve neighbours for ethertype 0x{ethertype:04x} "
                            f"(one is {plugin}); select only one with --plugins"
                        )
                    iface.resolvers[ethertype] = resolver
            needy = [
                p.name for t, p in self.network_by_ethertype.items()
                if p.needs_neighbour_resolver
                and (iface.resolver if t == 0x0800 else iface.resolvers.get(t)) is None
            ]
            if needy:
                raise CompositionError(
                    f"{', '.join(needy)} on an Ethernet link ({link.name}) needs a neighbour "
                    f"resolver such as arp (ndp for IPv6); add it to --plugins (or remove it from "
                    f"LAYERS_DISABLE_PLUGINS), or use a TUN link"
                )
            iface.dispatch = self._rx_ethernet
        else:
            iface.dispatch = self._rx_ip
        self.interfaces.append(iface)
        if address is not None:
            self.add_address(iface, address)
        if self.running:
            self._bring_up(iface)
        return iface

    def _add_loopback(self) -> None:
        """Linux's ``lo``: an IP-medium device holding 127.0.0.1/8 and the local route
        127.0.0.0/8 (see :mod:`layers.links.loopback`)."""
        from layers.links.loopback import LoopbackLink

        link = LoopbackLink("lo")
        link.attach(self._clock)
        lo = Interface(self, link, "lo", 0)
        lo.dispatch = self._rx_ip
        link.set_wakeup(self._loopback_wakeup)
        self.loopback = lo
        lo.add_address(0x7F000001, 8)

    def _loopback_wakeup(self) -> None:
        """A frame was written on lo: receive it on the next poll, never re-entrantly."""
        self.call_soon(self._drain_loopback)

    def _drain_loopback(self) -> None:
        lo = self.loopback
        if lo is None:
            return
        while (got := lo.link.recv()) is not None:
            self.receive(lo, got[0], got[1])

    def interface(self, name: str) -> Interface:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        if self.loopback is not None and name == self.loopback.name:
            return self.loopback
        raise ConfigurationError(f"no interface named {name!r}")

    def add_address(self, iface: Interface, address: str) -> None:
        """Give ``iface`` the address ``a.b.c.d/n`` or ``2001:db8::2/64``."""
        from layers.wire.ipv6 import ip6_network, is_ip6_text

        if is_ip6_text(address):
            if self.ip6 is None:
                raise ConfigurationError(
                    f"{address} is IPv6 but no plugin provides IPv6; add ipv6 to --plugins"
                )
            iface.add_address6(*ip6_network(address))
        else:
            iface.add_address(*ip4_network(address))

    def _address6_added(self, iface: Interface, address: int, prefix_length: int,
                        origin: str = "static") -> None:
        if self.ip6 is not None:
            added = getattr(self.ip6, "address_added", None)
            if added is not None:
                added(iface, address, prefix_length, origin)

    def _address6_removed(self, iface: Interface, address: int) -> None:
        if self.ip6 is not None:
            removed = getattr(self.ip6, "address_removed", None)
            if removed is not None:
                removed(iface, address)

    def _address_added(self, iface: Interface, address: int, prefix_length: int) -> None:
        self.local_addresses[address] = iface
        self.egress_changed()  # a new local address or broadcast, another source choice
        if prefix_length < 32:
            try:
                self.routes.add(address, prefix_length, iface,
                                origin="local" if iface is self.loopback else "connected")
            except ConfigurationError:
                pass  # a second address in the same subnet shares the connected route
        if self.running and iface.up:
            self.call_plugins("layers_address_added", stack=self, interface=iface,
                              address=address, prefix_length=prefix_length)

    def set_interface_up(self, name: str, up: bool) -> None:
        """``ip link set NAME up/down``: IPv4 output through a down interface fails with
        ENETDOWN, as Linux's; bringing it up again runs the ``layers_interface_up`` hooks
        (ARP announces its addresses)."""
        iface = self.interface(name)
        self.egress_changed()
        if up and not iface.up:
            if self.running:
                self._bring_up(iface)
            else:
                iface.up = True
        elif not up:
            iface.up = False

    def add_route(
        self,
        destination: str,
        *,
        gateway: str | None = None,
        interface: str | None = None,
        metric: int = 0,
    ) -> None:
        """``add_route("default", gateway="10.0.0.1")`` or ``add_route("10.9.0.0/16", ...)``;
        IPv6 alike (``add_route("default", gateway="2001:db8::1")``, ``"2001:db8:9::/48"``):
        the family is the gateway's or the destination's, and ``default`` is ``::/0`` for an
        IPv6 gateway. A link-local IPv6 gateway needs ``interface`` unless there is one."""
        from layers.wire.ipv6 import is_ip6_text

        if (gateway is not None and is_ip6_text(gateway)) or is_ip6_text(destination):
            self._add_route6(destination, gateway, interface, metric)
            return
        if destination == "default":
            network, plen = 0, 0
        else:
            network, plen = ip4_network(destination)
        gw = ip4(gateway) if gateway is not None else None
        if interface is not None:
            iface = self.interface(interface)
        elif gw is not None:
            route = self.routes.lookup(gw)
            if route is None or route.gateway is not None:
                raise ConfigurationError(
                    f"gateway {gateway} is not on any connected subnet; give the interface an "
                    f"address in the gateway's subnet first"
                )
            iface = route.interface
        elif len(self.interfaces) == 1:
            iface = self.interfaces[0]
        else:
            raise ConfigurationError("say which interface the route uses")
        self.routes.add(network, plen, iface, gateway=gw, metric=metric, origin="static")

    def _add_route6(self, destination: str, gateway: str | None, interface: str | None,
                    metric: int) -> None:
        from layers.protocols import IPv6Configuration
        from layers.wire.ipv6 import ip6, ip6_network, is_ip6_text, is_link_local6, prefix_mask6

        if not isinstance(self.ip6, IPv6Configuration):
            raise ConfigurationError(
                "an IPv6 route needs a plugin that provides IPv6 routes; add ipv6 to --plugins")
        if destination == "default":
            network, plen = 0, 0
        elif not is_ip6_text(destination):
            raise ConfigurationError(
                f"route {destination} is IPv4 but its gateway {gateway} is IPv6; give both in "
                f"one family")
        else:
            network, plen = ip6_network(destination)
            network &= prefix_mask6(plen)
        gw = None
        if gateway is not None:
            if not is_ip6_text(gateway):
                raise ConfigurationError(
                    f"route {destination} is IPv6 but its gateway {gateway} is IPv4; give both "
                    f"in one family")
            gw = ip6(gateway)
        if interface is not None:
            iface = self.interface(interface)
        elif gw is not None and not is_link_local6(gw):
            found = [i for i in self.interfaces if any(
                (gw ^ a) & prefix_mask6(p) == 0 for a, p in i.addresses6 if p < 128)]
            if not found:
                raise ConfigurationError(
                    f"gateway {gateway} is not on any connected IPv6 prefix; give the interface "
                    f"an address in the gateway's prefix first (or use its link-local address)")
            iface = found[0]
        elif len(self.interfaces) == 1:
            iface = self.interfaces[0]
        else:
            raise ConfigurationError(f"say which interface the route to {destination} uses")
        self.ip6.add_route6(network, plen, iface, gateway=gw, metric=metric, origin="static")

    def is_local(self, address: int) -> bool:
        """One of our usable addresses, of either family (IPv6 ones once DAD is done), or
        any of 127/8 when the stack has ``lo`` (Linux's local route ``127.0.0.0/8 dev lo``:
        binding 127.0.0.2 works there too)."""
        if address in self.local_addresses:
            return True
        if address >> 24 == 127 and address <= 0xFFFFFFFF:
            return self.loopback is not None
        return (address > 0xFFFFFFFF and self.ip6 is not None
                and self.ip6.address_state(address) in ("preferred", "deprecated"))

    def ip_for(self, address: int) -> IPv4Service | IPv6Service | None:
        """The network service that sends to ``address``: ``stack.ip6`` for an IPv6 address
        (an int above 2**32), ``stack.ip`` otherwise. The one call a transport needs to
        work over every network protocol; its checksum uses
        :func:`layers.wire.ipv6.pseudo_sum` on the same addresses."""
        return self.ip6 if address > 0xFFFFFFFF else self.ip

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return
        self.running = True
        if self.loopback is not None:
            self.loopback.up = True
        for iface in self.interfaces:
            self._bring_up(iface)
        self.call_plugins("layers_stack_started", stack=self)

    def _bring_up(self, iface: Interface) -> None:
        iface.up = True
        self.egress_changed()
        self.call_plugins("layers_interface_up", stack=self, interface=iface)

    def stop(self, *, close_links: bool = True) -> None:
        if self.running:
            # every plugin gets to stop, even when one of them fails
            for impl in reversed(self.hook.layers_stack_stopping.get_hookimpls()):
                try:
                    impl.function(*[{"stack": self}[a] for a in impl.argnames])
                except Exception as exc:
                    self.plugin_failed(impl.plugin_name, "its layers_stack_stopping hook", exc)
            self.running = False
        self.timers.clear()
        self.egress_changed()
        if self.loopback is not None:
            self.loopback.up = False
        if close_links:
            for iface in self.interfaces:
                iface.up = False
                iface.link.close()

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def egress_changed(self) -> None:
        """Invalidate every cached egress decision (see ``egress_generation``): called on
        any change to routes, addresses, interfaces, neighbours or path MTUs."""
        self.egress_generation += 1

    # --- time -------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self._clock()

    @property
    def clock(self) -> Clock:
        return self._clock

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` at stack time ``when``; returns a cancellable :class:`Timer`."""
        top = self.timers.next_deadline()
        timer = Timer(when, callback, args)
        self.timers.push(timer)
        if (top is None or when < top) and self.on_deadline_change is not None:
            self.on_deadline_change(when)
        return timer

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        return self.call_at(self._clock() + delay, callback, *args)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run at the next :meth:`poll`, outside the current call stack (no re-entrancy)."""
        return self.call_at(self._clock(), callback, *args)

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def poll(self) -> None:
        """Run every timer due at the current time."""
        heap = self.timers._heap
        if not heap:
            return
        now = self._clock()
        if heap[0][0] > now:
            return  # nothing due (a runner polls after every burst: this is the usual answer)
        pop = self.timers.pop_due
        for _ in range(_MAX_TIMERS_PER_POLL):
            timer = pop(now)
            if timer is None:
                return
            try:
                timer.callback(*timer.args)
            except Exception:
                self.internal_error("timer", timer.callback)

    # --- the per-frame path ----------------------------------------------------------
    def receive(self, iface: Interface, frame: bytes | memoryview, flags: int = 0) -> None:
        """One frame from ``iface``'s link. Never raises: bad frames are dropped and counted."""
        c = iface.counters
        c["rx_frames"] += 1
        c["rx_bytes"] += len(frame)
        if self._rx_hooked:
            hooked = Frame(iface, frame, "rx", flags)
            try:
                self.hook.layers_frame_received(stack=self, frame=hooked)
            except Exception as exc:
                self._frame_hook_failed("layers_frame_received", hooked, exc)
            return
        # dispatch(), inlined: this is every received frame's path
        try:
            iface.dispatch(iface, frame, flags)
        except MalformedPacket as exc:
            iface.counters.drop(exc.reason)
        except Exception:
            self.internal_error("receive", iface)

    def dispatch(
        self, iface: Interface, frame: bytes | bytearray | memoryview, flags: int
    ) -> None:
        """Hand one received frame to the network layer (after the per-frame hooks; the
        core's own ``layers_frame_received`` calls this). Never raises."""
        try:
            iface.dispatch(iface, frame, flags)
        except MalformedPacket as exc:
            iface.counters.drop(exc.reason)
        except Exception:
            self.internal_error("receive", iface)

    def _rx_ethernet(
        self, iface: Interface, frame: bytes | bytearray | memoryview, flags: int
    ) -> None:
        if len(frame) < 14:
            iface.counters.drop("truncated")
            return
        dst, ethertype = _ETH_DST_TYPE(frame)  # one C call: bytes to compare, an int
        if dst != iface.mac:
            if not dst[0] & 1:
                iface.counters.drop("other_host")
                return
            flags |= RX_BROADCAST
        proto = self.network_by_ethertype.get(ethertype)
        if proto is None:
            iface.counters.drop("unknown_ethertype")
            return
        # a TAP hands over a view already (of its read buffer): slice it, no second view
        proto.receive(iface, (frame if type(frame) is memoryview else memoryview(frame))[14:],
                      flags)

    def _rx_ip(self, iface: Interface, frame: bytes | bytearray | memoryview, flags: int) -> None:
        if not frame:
            iface.counters.drop("truncated")
            return
        proto = self.network_by_version.get(frame[0] >> 4)
        if proto is None:
            iface.counters.drop("unknown_ip_version")
            return
        proto.receive(iface, memoryview(frame), flags)

    def _transmit(
        self, iface: Interface, frame: bytes | bytearray | memoryview, offload: TxOffload | None
    ) -> None:
        if self._tx_hooked:
            hooked = Frame(iface, frame, "tx", 0, offload)
            try:
                self.hook.layers_frame_sending(stack=self, frame=hooked)
            except Exception as exc:
                self._frame_hook_failed("layers_frame_sending", hooked, exc)
        else:
            iface.link.send(frame, offload)

    def _frame_hook_failed(self, hook_name: str, frame: Frame, exc: Exception) -> None:
        """A per-frame hook raised: name the plugin once, count it, and let the frame go
        on as if the plugin were not there (a broken tap must not cut the link)."""
        plugin = "?"
        tb = exc.__traceback__
        while tb is not None:  # the innermost hook implementation on the way is the culprit
            plugin = self._frame_hook_owners.get(tb.tb_frame.f_code, plugin)
            tb = tb.tb_next
        if plugin == "?":
            plugin = ",".join(sorted(set(self._frame_hook_owners.values()))) or "?"
        self.plugin_failed(plugin, f"its {hook_name} hook", exc)
        if frame.handled:
            return
        frame.handled = True
        if frame.drop_reason is not None:
            frame.interface.counters.drop(frame.drop_reason)
        elif frame.direction == "rx":
            self.dispatch(frame.interface, frame.data, frame.flags)
        else:
            frame.interface.link.send(frame.data, frame.offload)

    def plugin_failed(self, plugin: str, doing: str, exc: BaseException) -> None:
        """The plugin ``plugin`` raised ``exc`` while ``doing`` something where the stack goes
        on (a per-frame hook, a report, stopping). Counted per plugin and activity (``stack``
        counter ``plugin_errors``; ``report()["plugin_errors"]``); the first time only, one
        log line names the plugin, its distribution and how to run without it."""
        key = (plugin, doing)
        failure = self.plugin_failures.get(key)
        if failure is None:
            err = plugin_error(plugin, doing, exc)
            failure = PluginFailure(plugin, err.distribution, doing, str(err))
            self.plugin_failures[key] = failure
            log.error("%s (the stack goes on; reported once, counted in layers netstat)", err)
        failure.count += 1
        self._c["plugin_errors"] += 1

    def internal_error(self, where: str, what: object) -> None:
        """Call from an ``except`` block when code that must not raise did (a protocol's
        receive path, a timer, an application callback). Every such error is a bug: it is
        counted (``stack`` drop ``internal_error``; ``report()["internal_errors"]`` per plugin
        and place, shown by ``layers netstat -s``) and logged once per plugin and place with
        the traceback and the plugin's name (found from the traceback: the innermost frame in
        a plugin's package, else the core); the stack goes on."""
        self._c.drop("internal_error")
        exc = sys.exc_info()[1]
        plugin = self._culprit(exc)
        key = (plugin, where)
        failure = self.internal_failures.get(key)
        if failure is None:
            if exc is None:
                exc = RuntimeError(f"internal error in {where}")
            if plugin == "core":
                distribution = "layers (the core)"
                message = (f"internal error in the core during {where} ({what!r}): "
                           f"{type(exc).__name__}: {exc}")
            else:
                err = plugin_error(plugin, f"{where} ({what!r})", exc)
                distribution, message = err.distribution, f"internal error: {err}"
            failure = PluginFailure(plugin, distribution, where, message)
            self.internal_failures[key] = failure
            log.error("%s (the packet or event was dropped; the stack goes on; reported once, "
                      "counted in layers netstat -s)", message, exc_info=exc)
        failure.count += 1

    def _culprit(self, exc: BaseException | None) -> str:
        """The plugin whose code raised ``exc``: its innermost frame in a plugin's package."""
        plugin = "core"
        tb = exc.__traceback__ if exc is not None else None
        packages = self._plugin_packages
        while tb is not None:
            module = tb.tb_frame.f_globals.get("__name__", "")
            found = packages.get(module.split(".")[0]) if isinstance(module, str) else None
            if found is not None:
                plugin = found
            tb = tb.tb_next
        return plugin

    # --- upcalls used by plugins -----------------------------------------------------
    def neighbour_unreachable(
        self,
        iface: Interface,
        ethertype: int,
        payload: bytes | bytearray | memoryview,
        errno: int = _errno.EHOSTUNREACH,
    ) -> None:
        """A resolver gave up on a packet: tell the network protocol that sent it."""
        proto = self.network_by_ethertype.get(ethertype)
        handler = getattr(proto, "unreachable", None)
        if handler is None:
            self._c.drop("neighbour_unreachable")
            return
        try:
            handler(iface, bytes(payload), errno)
        except Exception:
            self.internal_error("neighbour_unreachable", proto)

    # --- the application API (asyncio; the stack must run on this loop) ----------------
    async def open_connection(self, host: str | int, port: int, **kwargs: Any) -> Any:
        """``asyncio.open_connection`` through this stack: see :func:`layers.streams.
        open_connection` (returns the stdlib's StreamReader and StreamWriter)."""
        from layers.streams import open_connection

        return await open_connection(self, host, port, **kwargs)

    async def start_server(
        self, client_connected_cb: Callable[..., Any], host: str | int | None = None,
        port: int = 0, **kwargs: Any,
    ) -> Any:
        """``asyncio.start_server`` on this stack: see :func:`layers.streams.start_server`."""
        from layers.streams import start_server

        return await start_server(self, client_connected_cb, host, port, **kwargs)

    async def create_datagram_endpoint(
        self, protocol_factory: Callable[[], Any], **kwargs: Any
    ) -> Any:
        """``loop.create_datagram_endpoint`` on this stack: see
        :func:`layers.datagrams.create_datagram_endpoint`."""
        from layers.datagrams import create_datagram_endpoint

        return await create_datagram_endpoint(self, protocol_factory, **kwargs)

    # --- reports ----------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """Everything ``layers netstat``/``routes``/``arp`` show, as JSON-able data."""
        tables: dict[str, Any] = {
            "name": self.name,
            "interfaces": [i.describe() for i in ([self.loopback] if self.loopback else [])
                           + self.interfaces],
            "routes": [r.describe() for r in self.routes],
            "counters": {n: c.snapshot() for n, c in sorted(self.counters.items())},
            "plugins": self.plugin_names,
        }
        for impl in reversed(self.hook.layers_report.get_hookimpls()):
            try:
                part: Any = impl.function(*[{"stack": self}[a] for a in impl.argnames])
            except Exception as exc:  # the other plugins' tables still show
                self.plugin_failed(impl.plugin_name, "its layers_report hook", exc)
                continue
            if part:
                for key, rows in part.items():
                    if isinstance(rows, list) and isinstance(tables.get(key), list):
                        tables[key].extend(rows)
                    else:
                        tables[key] = rows
        if self.plugin_failures:
            tables["plugin_errors"] = [f.describe() for f in self.plugin_failures.values()]
        if self.internal_failures:
            tables["internal_errors"] = [f.describe() for f in self.internal_failures.values()]
        return tables

    def __repr__(self) -> str:
        addrs = [ip4_str(a) for a in self.local_addresses]
        return f"<Stack {self.name} {sorted(self.protocols)} {addrs}>"
