"""What every ``layers`` subcommand shares: the stack options, composing a stack from them,
the options that pick a running stack, and :class:`Commands`, through which a command module
adds its subcommand.

A subcommand lives in its own module under ``layers/cli/`` with one function::

    def add_commands(commands: Commands) -> None:
        p = commands.add("ping", run, help="...", stack=True)   # stack=True: the stack options
        p.add_argument("destination")

and one line in ``layers/cli/__init__.py``'s ``COMMAND_MODULES``. ``run(args) -> int`` returns
the exit status; a :class:`~layers.errors.ConfigurationError` it raises becomes one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import errno
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from layers.control import find_socket, request
from layers.errors import ConfigurationError
from layers.interface import Interface
from layers.links.base import MAX_MTU, MIN_MTU, Link
from layers.loader import BLOCK_ENV, parse_plugin_list
from layers.stack import Stack
from layers.wire.addr import ip4, ip4_network
from layers.wire.ipv6 import ip6, ip6_network, is_ip6_text

PROG = "layers"

#: ``run(args)`` of a subcommand: the exit status
Run = Callable[[argparse.Namespace], int]


class Commands:
    """The subcommands of the ``layers`` parser being built."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
        #: the options that compose a stack (``--link``, ``--address``, ``--set``...)
        self.stack_options = stack_options()
        #: the options that pick a running ``layers up`` (``--name``, ``--control``)
        self.client_options = client_options()

    def add(self, name: str, run: Run, *, help: str, stack: bool = False,
            client: bool = False, **kwargs: Any) -> argparse.ArgumentParser:
        """A new subcommand ``name`` calling ``run(args)``; ``stack=True`` gives it the stack
        options (use :func:`compose` on its args), ``client=True`` the running-stack options
        (use :func:`query`). ``kwargs`` go to ``ArgumentParser`` (description, epilog...)."""
        parents = [self.stack_options] if stack else []
        if client:
            parents.append(self.client_options)
        parser: argparse.ArgumentParser = self._sub.add_parser(
            name, parents=parents, help=help, **kwargs)
        parser.set_defaults(func=run)
        return parser


# --- composing a stack from the common options -------------------------------------------


def stack_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("stack options")
    g.add_argument("--link", metavar="tap:NAME|tun:NAME",
                   help="the device to attach: a TAP (Ethernet) or TUN (IP) interface, made "
                        "if absent and left as found on exit, or SCHEME:NAME of a link type "
                        "a plugin adds")
    g.add_argument("--address", metavar="A/N", action="append",
                   help="the stack's address, e.g. 10.0.0.2/24 or 2001:db8::2/64 (repeatable: "
                        "IPv4 and IPv6 side by side)")
    g.add_argument("--gateway", metavar="IP", action="append",
                   help="default route via this neighbour, IPv4 or IPv6 (repeatable: one of "
                        "each family; a link-local IPv6 router such as fe80::1 works)")
    g.add_argument("--mtu", type=int, metavar="N", help="link MTU (default: the device's)")
    g.add_argument("--mac", metavar="MAC", help="the stack's MAC on a TAP (default: random)")
    g.add_argument("--plugins", metavar="LIST",
                   help=f"comma list of plugins to compose (default: all installed minus "
                        f"{BLOCK_ENV})")
    g.add_argument("--pcap", metavar="FILE", help="write every frame to FILE (tcpdump -r FILE)")
    g.add_argument("--faults", metavar="SPEC",
                   help="inject faults on the link, e.g. loss=5%%,delay=10ms,seed=1")
    g.add_argument("--shape", metavar="SPEC",
                   help="a bottleneck on the link: rate, delay and queue discipline, e.g. "
                        "rate=100mbit,delay=20ms,queue=codel,limit=1000p,ecn=1,dir=tx")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="a stack setting such as arp.timeout=2 (repeatable)")
    g.add_argument("--no-offload", action="store_true",
                   help="do not negotiate checksum/segmentation offload with a TAP")
    g.add_argument("--pi", action="store_true",
                   help="use the 4-byte packet-information header on the device")
    return p


def client_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("which stack")
    g.add_argument("--name", help="the interface of the `layers up` to ask (default: the only "
                                  "one running)")
    g.add_argument("--link", metavar="tap:NAME|tun:NAME", help="same as --name NAME")
    g.add_argument("--control", metavar="PATH", help="the control socket to ask")
    return p


def parse_settings(items: Iterable[str]) -> dict[str, str]:
    """``["arp.timeout=2"]`` -> ``{"arp.timeout": "2"}`` (``--set``, repeatable)."""
    settings: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(
                f"--set {item!r} should be KEY=VALUE, e.g. --set arp.timeout=2"
            )
        settings[key.strip()] = value.strip()
    return settings


def link_name(spec: str) -> str:
    """The interface name of a ``--link SCHEME:NAME`` spec (checked as Linux would)."""
    scheme, sep, name = spec.partition(":")
    if not sep or not name or not scheme:
        raise ConfigurationError(
            f"--link {spec!r} should be tap:NAME or tun:NAME (or SCHEME:NAME of a link type a "
            f"plugin adds), for example --link tap:tap0"
        )
    if len(name) > 15:
        raise ConfigurationError(f"interface name {name!r} is longer than Linux's 15 characters")
    return name


def require(args: argparse.Namespace, what: str) -> str:
    """``args.<what>`` (``link`` or ``address``), or an error naming the option to give."""
    value = getattr(args, what)
    if isinstance(value, list):  # --address is repeatable: the first IPv4 one, else the first
        value = next((v for v in value if ":" not in v), value[0]) if value else None
    if not value:
        example = {"link": "--link tap:tap0", "address": "--address 10.0.0.2/24"}[what]
        raise ConfigurationError(f"say which {what} the stack uses: {example}")
    return str(value)


def _open_error(spec: str, exc: OSError) -> ConfigurationError:
    """The link drivers' OSErrors already say what to do; keep that, add the spec."""
    why = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT and "tun" not in why:
        why += "; is /dev/net/tun there? (modprobe tun)"
    return ConfigurationError(f"--link {spec}: {why}")


def _unwraps_to(link: Link, target: Link) -> bool:
    seen: Link | None = link
    while seen is not None:
        if seen is target:
            return True
        seen = getattr(seen, "inner", None)
    return False


def gateway_list(args: argparse.Namespace) -> list[str]:
    """The ``--gateway`` values, checked: addresses, at most one per family."""
    given = getattr(args, "gateway", None) or []
    if isinstance(given, str):
        given = [given]
    seen: dict[bool, str] = {}
    for text in given:
        v6 = is_ip6_text(text)
        if v6:
            ip6(text)
        else:
            ip4(text)
        if v6 in seen:
            raise ConfigurationError(
                f"--gateway {seen[v6]} and --gateway {text}: give at most one default gateway "
                f"per family (one IPv4, one IPv6)")
        seen[v6] = text
    return list(given)


def compose(args: argparse.Namespace, clock: Callable[[], float]) -> tuple[Stack, Interface]:
    """A stack with one interface, from the common stack options. Nothing is left open on error."""
    spec = require(args, "link")
    link_name(spec)
    require(args, "address")
    addresses: list[str] = list(args.address)
    for text in addresses:  # validate before touching any device
        if is_ip6_text(text):
            ip6_network(text)
        else:
            ip4_network(text)
    gateways = gateway_list(args)
    shape = None
    if getattr(args, "shape", None):
        from layers.links.shaper import parse_shape

        shape = parse_shape(args.shape)
    settings = parse_settings(args.settings)
    stack = Stack(parse_plugin_list(args.plugins), clock=clock, settings=settings,
                  name=link_name(spec))
    options: dict[str, Any] = {}
    if args.mtu is not None:
        if not MIN_MTU <= args.mtu <= MAX_MTU:
            raise ConfigurationError(f"--mtu {args.mtu} must be in {MIN_MTU}..{MAX_MTU}")
        options["mtu"] = args.mtu
    if args.mac:
        from layers.wire.addr import mac

        options["mac"] = mac(args.mac)
    if args.pi:
        options["pi"] = True
    if args.no_offload:
        options["offload"] = False
    try:
        device = stack.open_link(spec, **options)
    except OSError as exc:
        raise _open_error(spec, exc) from None
    link = device
    try:
        # capture next to the device (what was on the wire), faults between capture and stack
        if args.pcap:
            from layers.links.pcap import PcapLink

            try:
                link = PcapLink(link, args.pcap)
            except OSError as exc:
                raise ConfigurationError(
                    f"--pcap {args.pcap}: {exc.strerror or exc}; pick a writable path"
                ) from None
        if shape is not None:  # the bottleneck between the wire and any random loss
            from layers.links.shaper import ShaperLink

            link = ShaperLink(link, shape, pm=stack.pm)
        if args.faults:
            from layers.links.faults import FaultLink, parse_faults

            link = FaultLink(link, **parse_faults(args.faults))
        iface = stack.add_interface(link, address=addresses[0])
        for text in addresses[1:]:
            stack.add_address(iface, text)
        for gateway in gateways:
            stack.add_route("default", gateway=gateway)
    except BaseException:
        if not any(_unwraps_to(i.link, device) for i in stack.interfaces):
            link.close()
        stack.stop()
        raise
    return stack, iface


def link_type(d: Mapping[str, Any]) -> str:
    """TAP, TUN, MEMORY, ETHERNET or IP, from an interface's ``describe()``."""
    kind = str((d.get("link") or {}).get("kind", "")).lower()
    for word in ("tap", "tun", "memory"):
        if word in kind:
            return word.upper()
    return "ETHERNET" if d.get("medium") == "ethernet" else "IP"


def describe_link(iface: Interface) -> str:
    """``TAP, MAC 02:..., MTU 1500``: one interface, for a status line."""
    d = iface.describe()
    mac = f", MAC {d['mac']}" if iface.mac else ""
    shaped = ""
    link = d.get("link")
    shaper = link.get("shaper") if isinstance(link, dict) else None
    if isinstance(shaper, dict) and shaper:  # "shaped tx+rx 4 Mbit/s 20 ms fq_codel"
        parts = {f"{p['rate'] / 1e6:g} Mbit/s {p['delay'] * 1e3:g} ms {p['queue']['name']}"
                 for p in shaper.values()}
        shaped = f", shaped {'+'.join(shaper)} {' / '.join(sorted(parts))}"
    return f"{link_type(d)}{mac}, MTU {iface.mtu}{shaped}"


def query(args: argparse.Namespace) -> dict[str, Any]:
    """The report of the running ``layers up`` that the client options pick."""
    name = args.name
    if not name and args.link:
        name = link_name(args.link)
    path = find_socket(control=args.control, name=name)
    return request(path, "report")
