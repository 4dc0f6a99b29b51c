"""The ndp plugin for layers: IPv6 Neighbor Discovery on Ethernet links (RFC 4861) and
duplicate address detection (RFC 4862 5.4).

A separate plugin from ipv6, so a TUN stack (no link layer) runs without it. It gives:

* the IPv6 neighbour resolver of every Ethernet interface (``layers_neighbour_resolvers``
  answers ``{0x86DD: resolver}``): neighbour cache states incomplete, reachable, stale,
  delay, probe and permanent (:mod:`layers_ndp.neighbour`), multicast solicitations to the
  solicited-node group with our source link-layer address, unicast probes of stale entries
  in use (neighbour unreachability detection), per-neighbour and stack-wide bounded queues of
  packets waiting for resolution (the oldest dropped), and each queued packet reported
  through ``stack.neighbour_unreachable`` when resolution fails;
* answers to solicitations for our preferred addresses (solicited, override NA with our
  target link-layer address; a DAD probe from ``::`` is answered to all-nodes), learning the
  solicitor as stale from its source link-layer option (RFC 4861 7.2.3), and the
  advertisement rules of RFC 4861 7.2.5;
* message validation (RFC 4861 7.1.1, 7.1.2): hop limit 255 (``bad_hop_limit``), code 0,
  length, no multicast target, options of non-zero length inside the message
  (``bad_option``), a DAD probe only to the solicited-node group and without a source
  link-layer option, solicited NAs never to multicast;
* duplicate address detection for the ipv6 plugin
  (:class:`layers.protocols.DuplicateAddressDetector`): ``ndp.dad_transmits`` solicitations
  from ``::`` ``ndp.retrans_timer`` apart; an NS probing the same tentative address or an NA
  for it marks it duplicate.

Router discovery and SLAAC (:mod:`layers_ndp.router`): router solicitations when an
interface comes up, router advertisements validated (``ra_*`` drops) and acted on: default
routers with their lifetimes, the MTU option, autoconfigured addresses from prefix
information with valid and preferred lifetimes. Redirects are counted
(``rx_router_messages``) and not acted on.

MLDv2 for a host (:mod:`layers_ndp.mld`, RFC 3810): ndp is the stack's
:class:`layers.protocols.MulticastListener`, so every group the ipv6 plugin joins or leaves on
an Ethernet interface (solicited-node groups above all) is reported to ff02::16, twice, and
general, group-specific and MLDv1 queries are answered.

Settings (``--set ndp.KEY=VALUE``; :class:`layers_ndp.neighbour.NdpSettings`):
``retrans_timer`` (1.0 s), ``max_multicast_solicit`` (3), ``max_unicast_solicit`` (3),
``reachable_time`` (30.0 s), ``delay_first_probe`` (5.0 s), ``queue_len`` (101),
``queue_total`` (1024), ``max_entries`` (1024 per interface), ``dad_transmits`` (1; 0 off),
``accept_ra`` (true; false: no solicitations, advertisements dropped), ``autoconf`` (true),
``router_solicitations`` (3), ``router_solicitation_interval`` (4.0 s),
``router_solicitation_delay`` (1.0 s), ``mld`` (true), ``mld_unsolicited_interval`` (1.0 s).

Counters (``stack.counter("ndp")``): tx/rx_solicitations, tx/rx_advertisements,
tx_dad_probes, dad_ok, dad_duplicates, entries_learned, resolution_failures,
probe_failures, queue_overflows, evictions, conflicts, tx_router_solicitations,
rx_router_advertisements, ra_accepted, default_routers_added/removed/expired, ra_mtu_updates,
slaac_addresses, slaac_deprecated, slaac_expired, prefix_* (ignored prefixes by reason),
tx_mld_reports, rx_mld_queries; drops
by reason. Report tables ``ndp`` (``layers ndp``) and ``routers6`` (default routers and the
seconds left of their lifetimes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from layers import hookimpl
from layers.wire.ethernet import ETH_P_IPV6
from layers_ndp.neighbour import Ndp, NdpResolver, NdpSettings

if TYPE_CHECKING:
    from layers.interface import Interface
    from layers.stack import Stack

__all__ = ["Ndp", "NdpResolver", "NdpSettings"]
__version__ = "0.1.0"


def _ndp(stack: Stack) -> Ndp | None:
    proto = stack.protocols.get("ndp")
    return proto if isinstance(proto, Ndp) else None


@hookimpl
def layers_settings(stack: Stack) -> Mapping[str, Any]:
    return {"ndp": NdpSettings}


@hookimpl
def layers_network_protocols(stack: Stack) -> Iterable[Ndp]:
    return [Ndp(stack)]


@hookimpl
def layers_neighbour_resolvers(stack: Stack, interface: Interface) -> Mapping[int, Any] | None:
    ndp = _ndp(stack)
    if ndp is None or ETH_P_IPV6 not in stack.network_by_ethertype:
        return None
    return {ETH_P_IPV6: ndp.resolver_for(interface)}


@hookimpl
def layers_interface_up(stack: Stack, interface: Interface) -> None:
    ndp = _ndp(stack)
    if ndp is not None:
        ndp.interface_up(interface)


@hookimpl
def layers_stack_stopping(stack: Stack) -> None:
    ndp = _ndp(stack)
    if ndp is not None:
        ndp.stop()


@hookimpl
def layers_report(stack: Stack) -> Mapping[str, Any] | None:
    ndp = _ndp(stack)
    if ndp is None:
        return None
    return {"ndp": ndp.entries(), "routers6": ndp.routers.report()}
