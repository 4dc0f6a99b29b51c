"""toyudp: an example third-party UDP for layers, tested by the layers conformance suite.

A small but real RFC 768 implementation: validated receive (length, checksum; zero means none),
demultiplexing (connected, then bound address, then wildcard; broadcasts to every wildcard
listener on the port), port unreachable through the stack's ICMP error reporter, and the
:class:`layers.datagrams.DatagramService` contract, so ``layers.datagrams`` endpoints and the
conformance suite's socket operations work over it.

What it leaves out, it says so through the ``layers_capabilities`` hook: ICMP errors are not
delivered to connected endpoints (a known divergence: the suite's tests for it become strict
xfails, which turn into failures the day this is implemented and the declaration not removed),
and a UDP length shorter than the IP payload is dropped rather than trimmed (an optional
behaviour: those tests are skipped, naming the capability).

It is opt-in (``LAYERS_OPT_IN``): installed next to the built-in ``udp``, it joins a stack only
when named, ``--plugins arp,ipv4,icmp,toyudp``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from layers import hookimpl
from layers_toyudp.protocol import ToyUDP

if TYPE_CHECKING:
    from layers.protocols import TransportProtocol
    from layers.stack import Stack

__version__ = "0.1.0"
LAYERS_OPT_IN = True
__all__ = ["ToyUDP"]


@hookimpl
def layers_transport_protocols(stack: Stack) -> Iterable[TransportProtocol]:
    return [ToyUDP(stack)]


@hookimpl
def layers_capabilities(stack: Stack) -> Mapping[str, bool | str]:
    return {
        "udp.icmp_errors": "toyudp does not deliver ICMP errors to endpoints yet",
        "udp.short_length_trim": False,
    }


@hookimpl
def layers_stack_stopping(stack: Stack) -> None:
    proto = stack.protocols.get("toyudp")
    if isinstance(proto, ToyUDP):
        proto.stop()
