"""ARP for layers: IPv4 neighbour resolution on Ethernet links (RFC 826, RFC 1122 2.3.2,
RFC 5227 announcements), modelled on Linux's neighbour table.

What it does
------------
* Answers requests for any address of the receiving interface, with a unicast reply.
* Learns by RFC 826's merge rule: a sender already in the table is updated; a sender whose
  request (or reply) targets us is added. Others' announcements add entries for addresses on
  our subnets when ``arp.accept_gratuitous`` is on. A sender claiming one of *our* addresses
  from another MAC is a conflict: counted, never learned, and answered by at most one
  defensive announcement per ``arp.defend_interval``.
* Resolves for the network layer (``iface.output(next_hop, ethertype, packet)``): resolved
  neighbours cost one dict lookup; unresolved ones queue packets (per neighbour and stack-wide
  bounds, the oldest dropped first), send a broadcast request every ``arp.timeout`` seconds,
  ``arp.retries`` in all, then report each queued packet to its network protocol through
  ``stack.neighbour_unreachable`` (IPv4 turns that into EHOSTUNREACH) and remember the failure
  for ``arp.failed_time`` seconds. See :mod:`layers_arp.neighbour` for the states
  (incomplete, reachable, stale, delay, probe, failed, permanent).
* Announces each address when an interface comes up (``arp.gratuitous_count`` requests of the
  form "who-has A tell A", ``arp.gratuitous_interval`` apart).
* Reports its table for ``layers arp`` and counts everything in ``stack.counters["arp"]``.

Settings (``Stack(settings={"arp.timeout": 0.5, ...})``)
--------------------------------------------------------
``arp.timeout``             1.0   seconds to wait for a reply before the next request
``arp.retries``             3     broadcast requests per resolution before it fails
``arp.unicast_probes``      3     unicast requests re-confirming a stale entry in use
``arp.reachable_time``      30.0  seconds an answered entry is used without re-confirmation
``arp.delay_first_probe``   5.0   seconds a stale entry in use waits before probing
``arp.stale_time``          60.0  seconds an unused stale entry is kept
``arp.failed_time``         3.0   seconds a failed resolution is remembered (packets fail fast)
``arp.queue_len``           101   packets queued per unresolved neighbour (Linux's unres_qlen)
``arp.queue_total``         1024  packets queued for all unresolved neighbours of the stack
``arp.max_entries``         1024  table entries per stack (the oldest unused are evicted)
``arp.gratuitous_count``    2     announcements per address at interface up (0: none)
``arp.gratuitous_interval`` 2.0   seconds between announcements
``arp.accept_gratuitous``   true  add entries from others' announcements on our subnets
``arp.defend_interval``     10.0  minimum seconds between defensive announcements

An unknown ``arp.*`` key or an out-of-range value raises ``ConfigurationError``.

Counters (``stack.counters["arp"]``)
------------------------------------
``rx_requests``, ``rx_replies``, ``rx_gratuitous``, ``tx_requests``, ``tx_replies``,
``tx_gratuitous``, ``entries_learned``, ``resolution_failures``, ``probe_failures``,
``queue_overflows``, ``evictions``, ``conflicts``, ``defences``; drops by reason:
``truncated``, ``bad_hardware``, ``bad_hlen``, ``bad_protocol``, ``bad_plen``, ``bad_opcode``,
``bad_sender_mac``, ``bad_sender_ip``, ``looped``, ``address_conflict``, ``not_for_us``,
``queue_overflow``, ``unresolved``, ``neighbour_failed``, ``bad_next_hop``, ``table_full``,
``evicted``, ``no_resolver``.

Administration: ``stack.protocol("arp").resolvers[iface]`` has ``add_static``, ``delete``,
``flush`` and ``lookup``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from layers import hookimpl
from layers.errors import CompositionError
from layers_arp.neighbour import ArpResolver
from layers_arp.protocol import ArpProtocol
from layers_arp.settings import ArpSettings

if TYPE_CHECKING:
    from layers.interface import Interface
    from layers.stack import Stack

__all__ = ["ArpProtocol", "ArpResolver", "ArpSettings"]


def _arp(stack: Stack) -> ArpProtocol | None:
    proto = stack.protocols.get("arp")
    return proto if isinstance(proto, ArpProtocol) else None


@hookimpl
def layers_settings(stack: Stack) -> Mapping[str, Any]:
    return {"arp": ArpSettings}


@hookimpl
def layers_network_protocols(stack: Stack) -> Iterable[ArpProtocol]:
    return [ArpProtocol(stack)]


@hookimpl
def layers_neighbour_resolver(stack: Stack, interface: Interface) -> ArpResolver | None:
    arp = _arp(stack)
    if arp is None:
        raise CompositionError(
            "the arp plugin's resolver needs its own 'arp' network protocol, but another "
            "plugin registered that name; select only one ARP plugin with --plugins"
        )
    return arp.resolver_for(interface)


@hookimpl
def layers_interface_up(stack: Stack, interface: Interface) -> None:
    arp = _arp(stack)
    if arp is not None:
        res = arp.resolvers.get(interface)
        if res is not None:
            res.interface_up()


@hookimpl
def layers_address_added(stack: Stack, interface: Interface, address: int,
                         prefix_length: int) -> None:
    arp = _arp(stack)
    if arp is not None:
        res = arp.resolvers.get(interface)
        if res is not None:
            res.announce_address(address)


@hookimpl
def layers_stack_stopping(stack: Stack) -> None:
    arp = _arp(stack)
    if arp is not None:
        arp.stop()


@hookimpl
def layers_report(stack: Stack) -> Mapping[str, Any] | None:
    arp = _arp(stack)
    return arp.report() if arp is not None else None
