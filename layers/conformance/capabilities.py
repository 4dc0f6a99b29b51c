"""Capabilities and requirements, in the style of SQLAlchemy's third-party test suite.

A test names what it needs with :func:`requires`; the device under test (DUT) says what it
supports. An unsupported requirement skips the test with a reason naming the capability; a
capability declared as a *known divergence* (a string reason instead of ``True``) makes the
test a strict xfail with that reason, so the day the divergence is fixed the suite says so.

Where a DUT's capabilities come from:

* **Linux** supports everything: it is the reference.
* **The layers DUT** (a composed :class:`~layers.stack.Stack`) has, in order of precedence
  (later wins):

  1. the *implied* capabilities of the protocols it carries. A stack with an IPv4 network
     protocol implies ``ipv4`` and every capability registered below with
     ``implied_by="ipv4"`` (the RFC's MUSTs, like reassembly); optional features
     (``implied_by=None``: SACK, timestamps...) are never implied;
  2. what its plugins declare through the ``layers_capabilities`` hook (see
     :mod:`layers.hookspecs`), which can add optional features, withdraw an implied one
     (``False``) or mark it a known divergence (``"reason"``);
  3. what the test run declares: ``--capabilities=NAME,-NAME,NAME=reason`` on the command line
     or the ``conformance_capabilities`` fixture overridden in a conftest.py (SQLAlchemy keeps
     its requirements class in the test project in the same way).

Capability names are dotted: the protocol, then the feature. A requirement on a name that is
not registered is an error in the test (a typo would otherwise skip it silently). A plugin
that brings a protocol of its own registers its capabilities with
:func:`register_capability` (before the ``@requires`` that names them), saying whether Linux,
the reference, has them too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import pytest

#: value of a capability: True supported, False unsupported, str a known divergence (reason)
CapabilityValue = bool | str


@attrs.frozen
class Capability:
    name: str
    description: str
    #: a base capability whose presence implies this one, or None for an optional feature
    implied_by: str | None
    #: what the Linux DUT has: True, False (its tests skip there) or a known divergence
    linux: bool | str = True


def _caps(*rows: tuple[str, str, str | None]) -> dict[str, Capability]:
    return {name: Capability(name, desc, implied) for name, desc, implied in rows}


#: every capability the suite knows, with what implies it
CAPABILITIES: dict[str, Capability] = _caps(
    # base capabilities: implied by the protocol tables of a composed stack
    ("arp", "ARP for IPv4 on Ethernet (RFC 826)", None),
    ("ipv4", "IPv4 for a host (RFC 791, RFC 1122 3.2)", None),
    ("icmp", "ICMP for IPv4 (RFC 792, RFC 1122 3.2.2)", None),
    ("udp", "UDP (RFC 768, RFC 1122 4.1)", None),
    ("tcp", "TCP (RFC 9293)", None),
    # ARP
    ("arp.learn_from_request", "a request that targets us creates an entry for its sender "
     "(RFC 826 merge)", "arp"),
    ("arp.gratuitous_update", "an announcement updates an existing entry (RFC 5227 2.3)", "arp"),
    ("arp.retransmit", "unanswered requests are retried about once a second, a bounded "
     "number of times (RFC 1122 2.3.2.1)", "arp"),
    ("arp.queue", "a datagram waiting for resolution is sent once it completes "
     "(RFC 1122 2.3.2.2)", "arp"),
    # IPv4
    ("ipv4.reassembly", "fragments are reassembled (RFC 791, RFC 1122 3.3.2)", "ipv4"),
    ("ipv4.reassembly_overlap_drop", "a fragment overlapping another (not an exact duplicate) "
     "discards the datagram (RFC 5722's rule, as Linux)", "ipv4"),
    ("ipv4.reassembly_timeout", "a partial datagram expires and ICMP time exceeded code 1 is "
     "sent when its first fragment had arrived (RFC 1122 3.3.2)", "ipv4"),
    ("ipv4.fragmentation", "datagrams larger than the MTU are fragmented on send", "ipv4"),
    ("ipv4.options", "datagrams with (ignorable) options are accepted", "ipv4"),
    # ICMP
    ("icmp.echo", "echo requests are answered (RFC 1122 3.2.2.6)", "icmp"),
    ("icmp.protocol_unreachable", "an unknown protocol gets destination unreachable code 2",
     "icmp"),
    ("icmp.error_rules", "no error about an error, a broadcast or a non-initial fragment "
     "(RFC 1122 3.2.2)", "icmp"),
    ("icmp.echo_ignore_broadcasts", "echo requests to a broadcast address are not answered "
     "(RFC 1122 3.2.2.6 allows either; Linux ignores them)", None),
    ("icmp.rate_limit", "ICMP errors are rate limited per destination (RFC 1812 4.3.2.8)",
     None),
    # UDP
    ("udp.port_unreachable", "a datagram to a closed port gets port unreachable "
     "(RFC 1122 4.1.3.1)", "udp"),
    ("udp.icmp_errors", "ICMP errors reach a connected endpoint as ECONNREFUSED", "udp"),
    ("udp.short_length_trim", "a UDP length shorter than the IP payload trims the datagram "
     "(Linux; RFC 768 leaves it open)", None),
    # TCP
    ("tcp.mss", "the MSS option is sent and honoured (RFC 9293 3.7.1)", "tcp"),
    ("tcp.window_scaling", "window scale option (RFC 7323 2)", None),
    ("tcp.timestamps", "timestamps option (RFC 7323 3)", None),
    ("tcp.sack", "SACK-permitted and SACK blocks (RFC 2018)", None),
    ("tcp.ecn", "ECN (RFC 3168) with setting tcp.ecn=1: ECN-setup SYN and SYN-ACK, ECT(0) on "
     "new data only, CE echoed with ECE until CWR", None),
    ("tcp.rst_rules", "reset generation and processing per state (RFC 9293 3.10.7)", "tcp"),
    ("tcp.challenge_ack", "challenge ACKs for in-window RST and SYN (RFC 5961)", "tcp"),
    ("tcp.retransmission", "RTO retransmission with exponential backoff (RFC 6298)", "tcp"),
    ("tcp.fast_retransmit", "fast retransmit after three duplicate ACKs (RFC 5681)", "tcp"),
    ("tcp.zero_window_probe", "zero-window probing (RFC 9293 3.8.6.1)", "tcp"),
    ("tcp.time_wait", "TIME-WAIT holds the connection and ACKs a retransmitted FIN", "tcp"),
    ("tcp.out_of_order", "out-of-order and overlapping segments are queued and delivered "
     "in order", "tcp"),
    ("tcp.state", "the DUT reports connection states", "tcp"),
    # IPv6 (the IPv6 family: a test requiring any of these runs with the DUT's IPv6 address)
    ("ipv6", "IPv6 for a host (RFC 8200, RFC 4291)", None),
    ("icmpv6", "ICMPv6 (RFC 4443)", None),
    ("ndp", "Neighbor Discovery for IPv6 on Ethernet (RFC 4861)", None),
    ("udp6", "UDP over IPv6 (RFC 8200 8.1: checksum mandatory)", None),
    ("tcp6", "TCP over IPv6 (RFC 9293 with RFC 8200 8.1's pseudo-header)", None),
    ("ipv6.reassembly", "fragments are reassembled, in any order (RFC 8200 4.5)", "ipv6"),
    ("ipv6.reassembly_overlap_drop", "overlapping fragments discard the packet (RFC 5722)",
     "ipv6"),
    ("ipv6.reassembly_timeout", "a partial packet expires and ICMPv6 time exceeded code 1 is "
     "sent when its first fragment had arrived (RFC 8200 4.5)", "ipv6"),
    ("ipv6.atomic_fragment", "a fragment header with offset 0 and M clear is processed as "
     "the whole packet (RFC 6946)", "ipv6"),
    ("ipv6.fragmentation", "packets larger than the path MTU are fragmented by the source "
     "(RFC 8200 4.5)", "ipv6"),
    ("ipv6.extension_headers", "hop-by-hop and destination options are walked; unknown "
     "options handled by their two high bits (RFC 8200 4.2-4.3, 4.6)", "ipv6"),
    ("ipv6.routing_type0_refused", "a type 0 routing header with segments left gets "
     "parameter problem (RFC 5095)", "ipv6"),
    ("icmpv6.echo", "echo requests are answered (RFC 4443 4.1)", "icmpv6"),
    ("icmpv6.parameter_problem", "parameter problem for an unknown next header or option "
     "(RFC 4443 3.4)", "icmpv6"),
    ("icmpv6.packet_too_big", "packet too big lowers the path MTU, never below 1280 "
     "(RFC 8201); TCP's segments follow", "icmpv6"),
    ("ndp.advertise", "solicitations for our addresses are answered with solicited, "
     "override advertisements carrying our link-layer address (RFC 4861 7.2.4)", "ndp"),
    ("ndp.resolve", "neighbours are resolved by multicast solicitation; an advertisement's "
     "target link-layer address is used (RFC 4861 7.2.2, 7.2.5)", "ndp"),
    ("ndp.validation", "neighbour discovery messages with a hop limit other than 255 are "
     "ignored (RFC 4861 7.1)", "ndp"),
    ("ndp.nud", "a stale entry in use is probed by unicast solicitation after the delay "
     "(RFC 4861 7.3.3)", "ndp"),
    ("udp6.port_unreachable", "a datagram to a closed port gets ICMPv6 port unreachable "
     "(RFC 4443 3.1)", "udp6"),
    ("udp6.icmp_errors", "ICMPv6 errors reach a connected endpoint as ECONNREFUSED", "udp6"),
)

#: the base capabilities of the IPv6 family: a test requiring one of them (or a feature of
#: one) belongs to family ``ipv6`` (marker and per-family counts); every other test, ``ipv4``
FAMILY6_BASES = frozenset({"ipv6", "icmpv6", "ndp", "udp6", "tcp6"})


def family_of(required: Iterable[str]) -> str:
    """``"ipv6"`` when any required capability is of the IPv6 family, else ``"ipv4"``."""
    for name in required:
        if name.partition(".")[0] in FAMILY6_BASES:
            return "ipv6"
    return "ipv4"


def register_capability(
    name: str, description: str, implied_by: str | None = None, *, linux: bool | str = True
) -> Capability:
    """Register a capability a plugin brings (its own protocol, or a feature of it), so that
    tests can :func:`requires` it and plugins can declare it.

    ``implied_by``: a base capability whose presence implies this one (None: declared only);
    ``linux``: whether the reference kernel has it (False: the tests skip against Linux
    instead of failing there; a string: a known divergence). Registering the same name again
    with the same definition is harmless; with another one, an error."""
    cap = Capability(name, description, implied_by, linux)
    old = CAPABILITIES.get(name)
    if old is not None and old != cap:
        raise ValueError(f"capability {name!r} is registered already, as {old}")
    CAPABILITIES[name] = cap
    return cap


def requires(*names: str) -> pytest.MarkDecorator:
    """Mark a test as needing these capabilities (``@requires("tcp.sack")``)."""
    for name in names:
        if name not in CAPABILITIES:
            raise ValueError(
                f"unknown capability {name!r}; a plugin's own capability is registered first "
                f"with layers.conformance.register_capability({name!r}, ...) (known: "
                f"{', '.join(sorted(CAPABILITIES))})"
            )
    return pytest.mark.layers_requires(*names)


def parse_capability_option(text: str | None) -> dict[str, CapabilityValue]:
    """``"tcp.sack,-icmp.rate_limit,tcp.mss=clamps to 536"`` -> ``{"tcp.sack": True, ...}``."""
    out: dict[str, CapabilityValue] = {}
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        if "=" in item:
            name, _, reason = item.partition("=")
            out[name.strip()] = reason.strip() or "known divergence"
        elif item.startswith("-"):
            out[item[1:].strip()] = False
        else:
            out[item.lstrip("+")] = True
    for name in out:
        _check_known(name, "--capabilities")
    return out


def _check_known(name: str, where: str) -> None:
    if name not in CAPABILITIES:
        raise pytest.UsageError(
            f"{where} names an unknown capability {name!r}; known: "
            f"{', '.join(sorted(CAPABILITIES))}"
        )


def normalise(declared: Any, where: str) -> dict[str, CapabilityValue]:
    """A hook's answer (an iterable of names, or a mapping name -> bool/reason) as a dict."""
    if declared is None:
        return {}
    if isinstance(declared, Mapping):
        items: Iterable[tuple[str, Any]] = declared.items()
    elif isinstance(declared, str):
        items = [(declared, True)]
    else:
        items = ((name, True) for name in declared)
    out: dict[str, CapabilityValue] = {}
    for name, value in items:
        if not isinstance(name, str):
            raise pytest.UsageError(f"{where} declared a capability that is not a string: {name!r}")
        if not isinstance(value, bool | str):
            raise pytest.UsageError(
                f"{where} declared {name}={value!r}; use True, False or a reason string"
            )
        out[name] = value
    return out


def resolve(
    base: Iterable[str], *declarations: Mapping[str, CapabilityValue]
) -> dict[str, CapabilityValue]:
    """Implied capabilities of ``base`` names, overridden by each declaration in turn."""
    caps: dict[str, CapabilityValue] = {}
    base = set(base)
    for name in base:
        caps[name] = True
    for cap in CAPABILITIES.values():
        if cap.implied_by is not None and cap.implied_by in base:
            caps[cap.name] = True
    for declared in declarations:
        caps.update(declared)
    return caps


class Everything(dict[str, CapabilityValue]):
    """The capabilities of the reference: every name is supported, except those a plugin
    registered as not (or differently) found in Linux."""

    def get(self, key: str, default: Any = None) -> CapabilityValue:
        cap = CAPABILITIES.get(key)
        return cap.linux if cap is not None else True

    def __contains__(self, key: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "<every capability>"


def verdict(
    caps: Mapping[str, CapabilityValue], required: Iterable[str], dut_name: str
) -> tuple[str, str] | None:
    """``("skip", reason)``, ``("xfail", reason)`` or None when every requirement holds."""
    divergences: list[str] = []
    for name in required:
        value = caps.get(name, False)
        if value is False:
            cap = CAPABILITIES.get(name)
            what = f" ({cap.description})" if cap is not None else ""
            return "skip", f"DUT {dut_name} lacks capability {name}{what}"
        if isinstance(value, str):
            divergences.append(f"{name}: {value}")
    if divergences:
        return "xfail", f"known divergence of DUT {dut_name}: " + "; ".join(divergences)
    return None
