"""The udp plugin for layers: UDP (RFC 768, RFC 1122 4.1) and the datagram service behind
:func:`layers.datagrams.create_datagram_endpoint`.

Provides one transport protocol, ``udp`` (IP protocol 17), which is also the stack's
:class:`layers.datagrams.DatagramService`. Settings are listed on :class:`layers_udp.udp.UDP`
(declared in :class:`layers_udp.settings.UdpSettings`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from layers.hookspecs import hookimpl
from layers_udp.settings import UdpSettings
from layers_udp.udp import UDP, UDPEndpoint

if TYPE_CHECKING:
    from layers.protocols import TransportProtocol
    from layers.stack import Stack

__all__ = ["UDP", "UDPEndpoint", "UdpSettings"]


def _ours(stack: Stack) -> UDP | None:
    udp = stack.protocols.get("udp")
    return udp if isinstance(udp, UDP) else None


@hookimpl
def layers_settings(stack: Stack) -> Mapping[str, Any]:
    return {"udp": UdpSettings}


@hookimpl
def layers_transport_protocols(stack: Stack) -> Iterable[TransportProtocol]:
    return [UDP(stack)]


@hookimpl
def layers_stack_stopping(stack: Stack) -> None:
    udp = _ours(stack)
    if udp is not None:
        udp.stopping()


@hookimpl
def layers_report(stack: Stack) -> Mapping[str, Any] | None:
    udp = _ours(stack)
    return udp.report() if udp is not None else None


@hookimpl
def layers_capabilities(stack: Stack) -> dict[str, bool] | None:
    """What the conformance suite may expect of this stack's UDP."""
    if _ours(stack) is None:
        return None
    # a datagram whose UDP length is below the IP payload is trimmed to the UDP length
    return {"udp.short_length_trim": True}
