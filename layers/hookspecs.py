"""Every hook a `layers` plugin can implement. One module, one prefix: ``layers_``.

Two kinds of hook:

* **Composition hooks** are called once, while a stack is being composed or configured. They
  return protocol objects, which the stack compiles into dispatch tables
  (``ethertype -> network protocol``, ``IP protocol number -> transport``). The per-packet path
  then runs through those tables with no pluggy call at all.
* **Per-frame hooks** (:func:`layers_frame_received`, :func:`layers_frame_sending`) are for
  filters, taps and tracers. Implement them with ``@hookimpl(wrapper=True)``: code before the
  ``yield`` sees the frame first and may call ``frame.drop(reason)``; code after it sees the
  outcome. The stack only routes frames through pluggy when at least one plugin implements them,
  so they cost nothing otherwise.

Implementations are marked with :data:`layers.hookimpl`. Plugins are modules (or objects)
registered under the entry-point group ``layers``; see CONTRIBUTING.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from layers.congestion import CongestionControlInfo
    from layers.frame import Frame
    from layers.interface import Interface
    from layers.links.base import Link
    from layers.protocols import (
        ErrorReporter,
        NeighbourResolver,
        NetworkProtocol,
        TransportProtocol,
    )
    from layers.stack import Stack

PROJECT = "layers"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- link layer ---------------------------------------------------------------------------


@hookspec
def layers_link_drivers() -> Mapping[str, Any]:
    """Return ``{scheme: factory}`` for the link specs this plugin can open.

    ``factory(name: str, options: LinkOptions) -> Link`` opens the link named by a spec such
    as ``tap:tap0`` (scheme ``tap``, name ``tap0``). The core registers ``tap``, ``tun`` and
    ``memory``; a plugin may add others (``af_packet``, ``pcap-replay``...). Two plugins giving
    the same scheme is a composition error.
    """


@hookspec
def layers_wrap_link(stack: Stack, link: Link) -> Link | None:
    """Return a wrapper around ``link`` (capture, tracing, faults), or None to leave it.

    Called for each link as it is added to a stack; wrappers chain in hook order.
    """


@hookspec
def layers_queue_disciplines() -> Mapping[str, Any] | Iterable[Any]:
    """Return the queue disciplines this plugin gives a bottleneck (``layers.links.shaper``):
    :class:`layers.qdisc.QdiscInfo` records (name, factory, settings with defaults,
    description), or a ``{name: factory}`` mapping.

    ``factory(ctx: QdiscContext) -> Qdisc`` makes one queue per shaped direction; a shaper spec
    such as ``rate=10mbit,queue=NAME,KEY=VALUE`` picks it by name and overrides its settings.
    The core registers ``droptail``, ``pfifo``, ``bfifo``, ``red``, ``codel`` and ``fq_codel``
    this way itself. Two plugins giving the same name is a composition error.
    """


# --- network layer ------------------------------------------------------------------------


@hookspec
def layers_network_protocols(stack: Stack) -> Iterable[NetworkProtocol]:
    """Return the network protocols this plugin provides, for ``stack``.

    Each object declares ``ethertype`` (dispatch on Ethernet links) and/or ``ip_version``
    (dispatch on IP links such as TUN). The one with ``ip_version == 4`` also serves IPv4 output
    to transports (:class:`layers.protocols.IPv4Service`) as ``stack.ip``.
    """


@hookspec(firstresult=True)
def layers_neighbour_resolver(stack: Stack, interface: Interface) -> NeighbourResolver | None:
    """Return the neighbour resolver for an Ethernet ``interface`` (ARP does), or None.

    firstresult: the first non-None answer is used. Not called for IP-medium links.
    """


@hookspec
def layers_neighbour_resolvers(
    stack: Stack, interface: Interface
) -> Mapping[int, NeighbourResolver] | None:
    """Return ``{ethertype: resolver}`` for an Ethernet ``interface``, for network protocols
    other than IPv4 (NDP answers ``{0x86DD: resolver}``). ``Interface.output`` picks the
    resolver by the ethertype it is given; IPv4's is :func:`layers_neighbour_resolver`'s.
    Two plugins answering for one ethertype is a composition error.
    """


@hookspec(firstresult=True)
def layers_error_reporter(stack: Stack) -> ErrorReporter | None:
    """Return the object that sends ICMP errors for other protocols (ICMP does), or None.

    firstresult: the first non-None answer is used. Without one, errors that would have been
    reported are counted under ``stack.counters["stack"].drops["no_error_reporter"]``.
    """


# --- transport layer ----------------------------------------------------------------------


@hookspec
def layers_transport_protocols(stack: Stack) -> Iterable[TransportProtocol]:
    """Return the transport protocols this plugin provides, each with its IP ``protocol``
    number (ICMP is 1, TCP 6, UDP 17). Two plugins claiming one number is a composition error.
    """


@hookspec
def layers_congestion_controls() -> Iterable[CongestionControlInfo] | Mapping[str, Any]:
    """Return the TCP congestion-control algorithms this plugin gives: a list of
    :class:`layers.congestion.CongestionControlInfo` records (name, factory, declared
    settings, description) or, for brevity, a ``{name: factory}`` mapping.

    ``factory(ctx: CongestionContext) -> CongestionControl`` makes one algorithm instance per
    connection; the contract (events, ``cwnd``, ``pacing_rate``) is documented in
    :mod:`layers.congestion`. The transport collects the answers once, when it is composed,
    with :func:`layers.congestion.collect_congestion_controls`; the setting
    ``tcp.congestion_control`` (or a connection's ``congestion_control=`` option) picks one
    by name, and ``--set NAME.KEY=VALUE`` overrides one of the algorithm's declared
    settings. The tcp plugin registers ``newreno`` this way itself. Two plugins giving the
    same name is a composition error.
    """


# --- settings -----------------------------------------------------------------------------


@hookspec
def layers_settings(stack: Stack) -> Mapping[str, type | Mapping[str, Any]] | None:
    """Return the settings this plugin reads: ``{prefix: spec}``, where ``spec`` is an attrs
    class whose fields are the keys and defaults (read it with
    :func:`layers.settings.read_settings`) or a ``{key: default}`` mapping.

    Called first while a stack is composed. Every ``--set PREFIX.KEY=VALUE`` is checked against
    the declarations: an unknown key is a configuration error listing the known ones. The
    congestion controls' own settings (:class:`layers.congestion.CongestionControlInfo`) are
    declared under their names by the core.
    """


# --- lifecycle and observability ---------------------------------------------------------


@hookspec
def layers_interface_up(stack: Stack, interface: Interface) -> None:
    """``interface`` is up with its addresses (gratuitous ARP goes here)."""


@hookspec
def layers_address_added(
    stack: Stack, interface: Interface, address: int, prefix_length: int
) -> None:
    """``address``/``prefix_length`` was added to ``interface`` while it was up (addresses
    given before are announced by :func:`layers_interface_up`): ARP announces it here."""


@hookspec
def layers_stack_started(stack: Stack) -> None:
    """The stack is composed, validated and running."""


@hookspec
def layers_stack_stopping(stack: Stack) -> None:
    """The stack is about to stop: cancel timers, release resources."""


@hookspec
def layers_report(stack: Stack) -> Mapping[str, Any] | None:
    """Return tables for ``layers netstat``/``routes``/``arp``: ``{table_name: rows}``.

    Rows are JSON-able dicts. Known table names: ``arp`` (address, mac, state, expires),
    ``connections`` (proto, local, remote, state, send_q, recv_q), ``listeners``.
    """


# --- per-frame hooks ---------------------------------------------------------------------


@hookspec
def layers_frame_received(stack: Stack, frame: Frame) -> None:
    """A frame arrived on ``frame.interface``. Implement with ``wrapper=True``.

    The core's own implementation (innermost) dispatches it unless ``frame.dropped``.
    """


@hookspec
def layers_frame_sending(stack: Stack, frame: Frame) -> None:
    """A frame is about to leave on ``frame.interface``. Implement with ``wrapper=True``.

    The core's own implementation (innermost) transmits it unless ``frame.dropped``.
    """


# --- conformance --------------------------------------------------------------------------


@hookspec
def layers_capabilities(stack: Stack) -> Mapping[str, bool | str] | Iterable[str] | None:
    """Return the conformance capabilities this plugin gives ``stack`` (``layers.conformance``).

    Names are those registered in :mod:`layers.conformance.capabilities` (``"tcp.sack"``,
    ``"ipv4.reassembly"``...). Either an iterable of supported names, or a mapping of name to
    True (supported), False (not supported: tests needing it are skipped, naming it) or a
    reason string (a known divergence: those tests become strict xfails with the reason).
    Protocols imply their base capabilities (an IPv4 network protocol implies ``ipv4`` and
    the RFC's MUSTs such as ``ipv4.reassembly``), so declare the optional features you
    support and withdraw what you do not. Answer from the stack's settings when they matter
    (SACK only when ``tcp.sack`` is on). Only the conformance suite calls this hook.
    """
