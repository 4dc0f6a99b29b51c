"""The icmpv6 plugin for layers: ICMPv6 (RFC 4443) for the ipv6 plugin.

It registers one object per stack, :class:`ICMPv6`, the transport for next header 58 (it
lists ``ip_versions = (6,)``, so IPv4 never hands it anything):

* checks the checksum over the IPv6 pseudo-header (``bad_checksum``), counts messages by type;
* answers echo requests (also to multicast groups the interface joined, as Linux) and
  completes our own (:meth:`ICMPv6.echo`, the IPv6 :class:`~layers.protocols.EchoService`);
* hands destination unreachable, packet too big, time exceeded and parameter problem to the
  transport whose packet they quote, as a :class:`~layers.protocols.TransportError` with an
  errno as Linux's (``EHOSTUNREACH``, ``ECONNREFUSED`` for port unreachable, ``EMSGSIZE`` with
  the MTU for packet too big, which also lowers ``stack.ip6``'s path MTU; a packet too big
  below 1280 bytes is ignored, as Linux does: ``too_big_below_minimum``);
* hands neighbour discovery messages (types 133..137) to every protocol that is an
  :class:`~layers.protocols.ICMPv6Listener` for them (the ndp plugin);
* sends errors for the ipv6 plugin and transports: destination unreachable, packet too big,
  time exceeded, parameter problem, quoting as much of the offending packet as fits in 1280
  bytes, never about an ICMPv6 error, a packet from the unspecified or a multicast source,
  or to a multicast destination (except packet too big and parameter problem code 2,
  RFC 4443 2.4 e), rate limited by a token bucket (``icmpv6.ratelimit`` per second,
  ``icmpv6.burst``).

Counters (``stack.counter("icmpv6")``): in_msgs, in_echos, in_echo_reps, in_errors,
in_nd, out_msgs, out_echos, out_echo_reps, out_errors, errors_ratelimited, plus drops by
reason (truncated, bad_checksum, unsupported_type, error_not_sent, no_listener...).

Settings: ``icmpv6.ratelimit`` (100 errors per second, 0 for no limit), ``icmpv6.burst``
(10), ``icmpv6.echo_ignore_all`` (false), ``icmpv6.echo_ignore_multicast`` (false).
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from layers.hookspecs import hookimpl
from layers_icmpv6.protocol import ICMPv6, ICMPv6Settings

if TYPE_CHECKING:
    from layers.protocols import TransportProtocol
    from layers.stack import Stack

__all__ = ["ICMPv6", "ICMPv6Settings"]
__version__ = "0.1.0"


@hookimpl
def layers_settings(stack: Stack) -> Mapping[str, Any]:
    return {"icmpv6": ICMPv6Settings}


@hookimpl
def layers_transport_protocols(stack: Stack) -> Iterable[TransportProtocol]:
    return [ICMPv6(stack)]


@hookimpl
def layers_stack_stopping(stack: Stack) -> None:
    proto = stack.protocols.get("icmpv6")
    if isinstance(proto, ICMPv6):
        proto.fail_pending(errno.ENETDOWN, "stack stopped")
