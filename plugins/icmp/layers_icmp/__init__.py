"""The icmp plugin for layers: ICMP for IPv4 (RFC 792, RFC 1122 3.2.2, RFC 1812 4.3.2.8).

It registers one object per stack, :class:`~layers_icmp.protocol.Icmp`, which is

* the transport for IP protocol 1 (``layers_transport_protocols``): answers echo requests,
  completes our own echo requests, and hands received ICMP errors to the transport whose
  datagram they quote;
* the stack's :class:`~layers.protocols.EchoService` (``stack.find(EchoService)``, used by
  :func:`layers.ping.ping`);
* the stack's :class:`~layers.protocols.ErrorReporter` (``layers_error_reporter``), which
  ipv4, udp and others call to send destination unreachable, time exceeded and parameter
  problem, rate limited as Linux does.

Settings and counters are described in :mod:`layers_icmp.protocol`.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from layers.hookspecs import hookimpl
from layers.wire.ipv4 import PROTO_ICMP
from layers_icmp.protocol import Icmp
from layers_icmp.settings import IcmpSettings

if TYPE_CHECKING:
    from layers.protocols import ErrorReporter, TransportProtocol
    from layers.stack import Stack

__all__ = ["Icmp", "IcmpSettings"]
__version__ = "0.1.0"


def _ours(stack: Stack) -> Icmp | None:
    proto = stack.transports.get(PROTO_ICMP)
    return proto if isinstance(proto, Icmp) else None


@hookimpl
def layers_settings(stack: Stack) -> Mapping[str, Any]:
    return {"icmp": IcmpSettings}


@hookimpl
def layers_transport_protocols(stack: Stack) -> Iterable[TransportProtocol]:
    return [Icmp(stack)]


@hookimpl
def layers_error_reporter(stack: Stack) -> ErrorReporter | None:
    # The stack compiles the transport table before asking for a reporter: the reporter is
    # the same object that owns protocol 1 (and so sees its own rate-limit state).
    return _ours(stack)


@hookimpl
def layers_stack_stopping(stack: Stack) -> None:
    icmp = _ours(stack)
    if icmp is not None:
        icmp.fail_pending(errno.ENETDOWN, "stack stopped")


@hookimpl
def layers_capabilities(stack: Stack) -> dict[str, bool] | None:
    """What the conformance suite may expect of this stack's ICMP (answered from settings)."""
    icmp = _ours(stack)
    if icmp is None:
        return None
    return {
        "icmp.echo_ignore_broadcasts": bool(icmp.echo_ignore_broadcasts),
        "icmp.rate_limit": icmp.settings.ratelimit > 0,
    }
