"""The ICMPv6 transport object; behaviour described in :mod:`layers_icmpv6`."""

from __future__ import annotations

import errno as _errno
import struct
from typing import TYPE_CHECKING

import attrs

from layers.errors import ConfigurationError, os_error
from layers.links.base import RX_CSUM_VERIFIED
from layers.ping import PendingEchoes
from layers.protocols import EchoCallback, EchoReply, ICMPv6Listener, IPDatagram, TransportError
from layers.settings import read_settings
from layers.wire.checksum import ones_sum
from layers.wire.ipv6 import (
    EXTENSION_HEADERS,
    FRAGMENT_HLEN,
    ICMPV6_DEST_UNREACH,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_PACKET_TOO_BIG,
    ICMPV6_PARAM_PROB,
    ICMPV6_TIME_EXCEEDED,
    IPV6_HLEN,
    IPV6_MIN_MTU,
    NH_FRAGMENT,
    NH_ICMPV6,
    build_icmpv6,
    ip6_str,
    is_multicast6,
    pseudo_header_sum6,
)

if TYPE_CHECKING:
    from layers.stack import Stack

_ECHO = struct.Struct("!HH")
#: destination unreachable code -> errno (as Linux's icmpv6_err_convert)
UNREACH_ERRNO = {0: _errno.ENETUNREACH, 1: _errno.EACCES, 2: _errno.EHOSTUNREACH,
                 3: _errno.EHOSTUNREACH, 4: _errno.ECONNREFUSED, 5: _errno.EACCES,
                 6: _errno.EACCES}
ERROR_TYPES = (ICMPV6_DEST_UNREACH, ICMPV6_PACKET_TOO_BIG, ICMPV6_TIME_EXCEEDED,
               ICMPV6_PARAM_PROB)


@attrs.frozen
class ICMPv6Settings:
    #: errors per second we send at most (token bucket rate; 0: no limit)
    ratelimit: float = 100.0
    #: errors sent back to back at most
    burst: int = 10
    #: answer no echo request at all
    echo_ignore_all: bool = False
    #: answer no echo request sent to a multicast group
    echo_ignore_multicast: bool = False

    def validate(self) -> None:
        if self.ratelimit < 0:
            raise ConfigurationError(
                f"setting icmpv6.ratelimit={self.ratelimit} must be >= 0 (default 100)")
        if self.burst < 1:
            raise ConfigurationError(f"setting icmpv6.burst={self.burst} must be >= 1 "
                                     f"(default 10)")


def upper_layer(packet: bytes | memoryview) -> tuple[int, int] | None:
    """(next header, offset) of the upper-layer header in an IPv6 packet (a quote), or None
    when it is not in the quote or lies in a non-first fragment."""
    if len(packet) < IPV6_HLEN:
        return None
    nh, off = packet[6], IPV6_HLEN
    for _ in range(8):
        if nh in EXTENSION_HEADERS:
            if off + 2 > len(packet):
                return None
            nh, off = packet[off], off + (packet[off + 1] + 1) * 8
        elif nh == NH_FRAGMENT:
            if off + FRAGMENT_HLEN > len(packet):
                return None
            if (packet[off + 2] << 8 | packet[off + 3]) & 0xFFF8:
                return None
            nh, off = packet[off], off + FRAGMENT_HLEN
        else:
            return nh, off
    return None


class ICMPv6:
    """ICMPv6 for one stack: transport for next header 58, IPv6 echo and error reporter."""

    name = "icmpv6"
    protocol = NH_ICMPV6
    ip_versions = (6,)

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._c = stack.counter("icmpv6")
        self.settings = read_settings(stack, "icmpv6", ICMPv6Settings)
        self._tokens = float(self.settings.burst)
        self._last = stack.now
        #: (peer, ident, seq) -> the echo request waiting for its reply
        self.pending = PendingEchoes(stack, self._c)
        self._listeners: dict[int, list[ICMPv6Listener]] | None = None

    # --- receive --------------------------------------------------------------------------
    def receive(self, datagram: IPDatagram) -> None:
        c = self._c
        data = datagram.payload
        if len(data) < 4:
            c.drop("truncated")
            return
        if not datagram.flags & RX_CSUM_VERIFIED and ones_sum(
                data, pseudo_header_sum6(datagram.src, datagram.dst, NH_ICMPV6,
                                         len(data))) != 0xFFFF:
            c.drop("bad_checksum")
            return
        c["in_msgs"] += 1
        t = data[0]
        if t == ICMPV6_ECHO_REQUEST:
            self._echo_request(datagram)
        elif t == ICMPV6_ECHO_REPLY:
            self._echo_reply(datagram)
        elif t in ERROR_TYPES:
            c["in_errors"] += 1
            self._error_received(datagram)
        else:
            listeners = self._listeners_for().get(t)
            if not listeners:
                c.drop("unsupported_type" if t < 133 or t > 137 else "no_listener")
                return
            c["in_nd"] += 1
            for listener in listeners:
                listener.icmpv6_receive(datagram, memoryview(bytes(data)))

    def _listeners_for(self) -> dict[int, list[ICMPv6Listener]]:
        if self._listeners is None:
            found: dict[int, list[ICMPv6Listener]] = {}
            for proto in self.stack.protocols.values():
                if isinstance(proto, ICMPv6Listener):
                    for t in proto.icmpv6_types:
                        found.setdefault(t, []).append(proto)
            self._listeners = found
        return self._listeners

    def _echo_request(self, dg: IPDatagram) -> None:
        c = self._c
        c["in_echos"] += 1
        cfg = self.settings
        if cfg.echo_ignore_all or (dg.broadcast and cfg.echo_ignore_multicast):
            c.drop("echo_ignored")
            return
        ip6 = self.stack.ip6
        if ip6 is None or dg.src == 0:
            c.drop("echo_no_source")
            return
        body = bytes(dg.payload[4:])
        src = None if dg.broadcast else dg.dst  # to a group: answer from our own address
        c["out_msgs"] += 1
        c["out_echo_reps"] += 1
        source = src if src is not None else ip6.source_for(dg.src)
        if source is None:
            c.drop("echo_no_source")
            return
        msg = build_icmpv6(source, dg.src, ICMPV6_ECHO_REPLY, 0, body)
        ip6.send(dg.src, NH_ICMPV6, msg, src=source)

    def _echo_reply(self, dg: IPDatagram) -> None:
        c = self._c
        c["in_echo_reps"] += 1
        data = dg.payload
        if len(data) < 8:
            c.drop("truncated")
            return
        ident, seq = _ECHO.unpack_from(data, 4)
        pending = self.pending.pop((dg.src, ident, seq))
        if pending is None:  # a request to a group: the first member's reply completes it
            key = next((k for k in self.pending
                        if is_multicast6(k[0]) and k[1] == ident and k[2] == seq), None)
            pending = self.pending.pop(key) if key is not None else None
        if pending is None:
            c.drop("echo_reply_unmatched")
            return
        self.pending.deliver(pending, EchoReply(dg.src, seq, dg.ttl, len(data),
                                         self.stack.now - pending.sent))

    def _error_received(self, dg: IPDatagram) -> None:
        c = self._c
        data = bytes(dg.payload)
        if len(data) < 8 + IPV6_HLEN:
            c.drop("error_truncated")
            return
        t, code = data[0], data[1]
        rest = int.from_bytes(data[4:8], "big")
        quote = data[8:]
        qsrc = int.from_bytes(quote[8:24], "big")
        qdst = int.from_bytes(quote[24:40], "big")
        if self.stack.ip6 is None or self.stack.ip6.address_state(qsrc) is None:
            c.drop("error_not_ours")  # the quoted packet did not come from us
            return
        mtu = None
        if t == ICMPV6_DEST_UNREACH:
            err = UNREACH_ERRNO.get(code, _errno.EHOSTUNREACH)
        elif t == ICMPV6_PACKET_TOO_BIG:
            if rest < IPV6_MIN_MTU:
                # RFC 8201 4: never below the IPv6 minimum; Linux ignores such a message
                # altogether (no path MTU change, nothing for the transport), and so do we
                c.drop("too_big_below_minimum")
                return
            err = _errno.EMSGSIZE
            mtu = rest
            update = getattr(self.stack.ip6, "update_path_mtu", None)
            if update is not None:
                update(qdst, rest)
        elif t == ICMPV6_TIME_EXCEEDED:
            err = _errno.EHOSTUNREACH
        else:
            err = _errno.EPROTO
        found = upper_layer(quote)
        if found is None:
            c.drop("error_no_upper_layer")
            return
        nh, off = found
        if nh == NH_ICMPV6 and len(quote) >= off + 8 and quote[off] == ICMPV6_ECHO_REQUEST:
            ident, seq = _ECHO.unpack_from(quote, off + 4)
            pending = self.pending.pop((qdst, ident, seq))
            if pending is not None:
                exc = os_error(err, f"ICMPv6 type {t} code {code} from {ip6_str(dg.src)}")
                self.pending.deliver(pending, exc)
            return
        transport = self.stack.transports.get(nh)
        if transport is None or nh == NH_ICMPV6:
            return
        transport.error(TransportError(errno=err, src=qsrc, dst=qdst, protocol=nh,
                                       quote=bytes(quote[off:]), reporter=dg.src,
                                       icmp_type=t, icmp_code=code, mtu=mtu))

    def error(self, error: TransportError) -> None:
        """A local error about an echo request of ours: fail it."""
        if len(error.quote) >= 8 and error.quote[0] == ICMPV6_ECHO_REQUEST:
            ident, seq = _ECHO.unpack_from(error.quote, 4)
            pending = self.pending.pop((error.dst, ident, seq))
            if pending is not None:
                self.pending.deliver(pending, os_error(error.errno))

    # --- EchoService ----------------------------------------------------------------------
    def echo(self, dst: int, *, ident: int, seq: int, payload: bytes, callback: EchoCallback,
             timeout: float = 1.0, ttl: int | None = None) -> None:
        """Send an echo request to ``dst`` (a 128-bit int); ``callback`` gets one EchoReply
        (``size``: the ICMPv6 message length) or OSError, as the icmp plugin's ``echo``."""
        if not 0 <= ident <= 0xFFFF or not 0 <= seq <= 0xFFFF:
            raise ConfigurationError(f"echo ident {ident} and seq {seq} must be in 0..65535")
        if not timeout > 0:
            raise ConfigurationError(f"echo timeout must be positive, not {timeout!r}")
        key = (dst, ident, seq)
        if key in self.pending:
            raise ConfigurationError(f"an echo request to {ip6_str(dst)} with ident {ident} "
                                     f"seq {seq} is still pending; use another sequence number")
        ip6 = self.stack.ip6
        src = ip6.source_for(dst) if ip6 is not None else None
        if ip6 is None or src is None:
            callback(os_error(_errno.ENETUNREACH, "no IPv6 route or source address"))
            return
        msg = build_icmpv6(src, dst, ICMPV6_ECHO_REQUEST, 0, _ECHO.pack(ident, seq) + payload)
        pending = self.pending.add(key, callback, len(msg), timeout)
        self._c["out_msgs"] += 1
        self._c["out_echos"] += 1
        if not ip6.send(dst, NH_ICMPV6, msg, src=src, ttl=ttl) and self.pending.get(
                key) is pending:
            self.pending.pop(key)
            self.pending.deliver(pending, os_error(_errno.ENETUNREACH, "no route"))

    def fail_pending(self, errno: int, detail: str) -> None:
        """Fail every pending echo request (the stack is stopping)."""
        self.pending.fail_all(errno, detail)

    # --- error reporter -------------------------------------------------------------------
    def destination_unreachable(self, datagram: IPDatagram, code: int) -> None:
        self._send_error(datagram, ICMPV6_DEST_UNREACH, code, 0)

    def packet_too_big(self, datagram: IPDatagram, mtu: int) -> None:
        self._send_error(datagram, ICMPV6_PACKET_TOO_BIG, 0, mtu, multicast_ok=True)

    def time_exceeded(self, datagram: IPDatagram, code: int) -> None:
        self._send_error(datagram, ICMPV6_TIME_EXCEEDED, code, 0)

    def parameter_problem(self, datagram: IPDatagram, pointer: int, code: int = 0) -> None:
        self._send_error(datagram, ICMPV6_PARAM_PROB, code, pointer, multicast_ok=code == 2)

    def _send_error(self, dg: IPDatagram, t: int, code: int, rest: int,
                    multicast_ok: bool = False) -> None:
        c = self._c
        packet = bytes(dg.header) + bytes(dg.payload)
        if len(packet) < IPV6_HLEN:
            c.drop("error_not_sent")
            return
        src = int.from_bytes(packet[8:24], "big")
        dst = int.from_bytes(packet[24:40], "big")
        if src == 0 or is_multicast6(src) or (is_multicast6(dst) and not multicast_ok):
            c.drop("error_not_sent")
            return
        found = upper_layer(packet)
        if found is not None and found[0] == NH_ICMPV6 and len(packet) > found[1] and (
                packet[found[1]] < 128):
            c.drop("error_about_error")  # never about an ICMPv6 error (RFC 4443 2.4 e.1)
            return
        if not self._allow():
            c["errors_ratelimited"] += 1
            c.drop("ratelimited")
            return
        ip6 = self.stack.ip6
        if ip6 is None:
            return
        source = dst if not is_multicast6(dst) and ip6.address_state(dst) == "preferred" else (
            ip6.source_for(src))
        if source is None:
            c.drop("error_not_sent")
            return
        room = IPV6_MIN_MTU - IPV6_HLEN - 8
        msg = build_icmpv6(source, src, t, code, rest.to_bytes(4, "big") + packet[:room])
        c["out_msgs"] += 1
        c["out_errors"] += 1
        ip6.send(src, NH_ICMPV6, msg, src=source)

    def _allow(self) -> bool:
        rate = self.settings.ratelimit
        if rate <= 0:
            return True
        now = self.stack.now
        self._tokens = min(float(self.settings.burst), self._tokens + (now - self._last) * rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
