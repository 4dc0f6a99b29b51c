"""The ICMP protocol object: transport (protocol 1), echo service and error reporter in one.

Receive path (RFC 792, RFC 1122 3.2.2):

* length and checksum are checked (``RX_CSUM_VERIFIED`` is honoured when a link sets it, though
  Linux never offloads the ICMP checksum); bad messages are dropped and counted by reason;
* echo requests are answered from the address they were sent to, with identifier, sequence,
  code and data unchanged and the request's TOS; broadcast/multicast requests are ignored unless
  ``icmp.echo_ignore_broadcasts`` is false (Linux's default is to ignore them);
* echo replies complete the matching :meth:`Icmp.echo` request, keyed by (peer, ident, seq);
* errors (destination unreachable, time exceeded, parameter problem) are parsed down to the
  quoted IP header (which must be followed by at least 8 bytes) and delivered, with all the
  quoted payload, as a
  :class:`~layers.protocols.TransportError` to ``stack.transports[quoted protocol].error``;
  "fragmentation needed" also updates the path MTU when ``stack.ip`` can
  (``update_path_mtu(dst, mtu)``). Source quench (RFC 6633) and redirects are counted and
  ignored.

Error reporting (:class:`~layers.protocols.ErrorReporter`): an error quotes the offending IP
header and as much of its payload as keeps the whole error datagram within
``icmp.error_max_length`` bytes (576 by default, as Linux and RFC 1812 4.3.2.3 do; RFC 792's
minimum is the header plus 8 bytes, always included). No error is sent about an ICMP error,
a datagram sent to or from a broadcast/multicast address, a non-initial fragment, or a source
that does not name one host (0.0.0.0, loopback, class E). Output is rate limited as Linux does
(see :mod:`layers_icmp.ratelimit`): the types in ``icmp.ratemask`` (destination unreachable,
source quench, time exceeded, parameter problem by default) pass a global token bucket and a
per-destination one (errors to our own addresses are exempt); what they suppress is counted.
Echo replies (type 0) are limited only if ``icmp.ratemask`` has bit 0 set, as in Linux.

Settings (``--set icmp.KEY=VALUE``; :class:`layers_icmp.settings.IcmpSettings`):

``icmp.echo_ignore_broadcasts`` (bool, True)
    Do not answer echo requests sent to a broadcast or multicast address.
``icmp.echo_ignore_all`` (bool, False)
    Do not answer any echo request.
``icmp.ratelimit`` (seconds, 1.0)
    Per destination, one rate-limited message per this many seconds, bursts of 6; 0 disables.
``icmp.msgs_per_sec`` (1000) and ``icmp.msgs_burst`` (50)
    The global token bucket for rate-limited messages; a rate of 0 disables it.
``icmp.ratemask`` (int or "0x..." text, 0x1818)
    Bit ``1 << type`` set: messages of that type are rate limited.
``icmp.error_max_length`` (576)
    The largest error datagram (IP header included) we send; quotes are cut to fit.

Counters (``stack.counter("icmp")``, ``/proc/net/snmp`` style): ``in_msgs`` and ``out_msgs``,
one ``in_*``/``out_*`` counter per type (``in_echos``, ``out_echo_reps``,
``in_dest_unreachs``...), ``out_errors`` when IPv4 could not send, and drops by reason
(``truncated``, ``bad_checksum``, ``broadcast_echo``, ``unmatched_echo_reply``,
``quote_truncated``, ``quote_unknown_protocol``...). Errors we chose not to send are counted as
drops too: ``error_about_error``, ``error_to_broadcast``, ``error_about_fragment``,
``error_to_bad_source``, ``rate_limited_global``, ``rate_limited_host``.
"""

from __future__ import annotations

import errno as _errno
from typing import TYPE_CHECKING

from layers.errors import ConfigurationError, MalformedPacket, os_error
from layers.links.base import RX_BROADCAST, RX_CSUM_VERIFIED
from layers.ping import PendingEchoes
from layers.protocols import EchoCallback, EchoReply, IPDatagram, TransportError
from layers.settings import read_settings
from layers.wire.addr import ip4_str
from layers.wire.checksum import checksum, ones_sum
from layers.wire.icmp import (
    ICMP_DEST_UNREACH,
    ICMP_ECHO,
    ICMP_ECHO_HEADER,
    ICMP_ECHOREPLY,
    ICMP_ERROR_TYPES,
    ICMP_FRAG_NEEDED,
    ICMP_HEADER,
    ICMP_HLEN,
    ICMP_PARAMETERPROB,
    ICMP_REDIRECT,
    ICMP_SOURCE_QUENCH,
    ICMP_TIME_EXCEEDED,
    IcmpQuote,
    build_icmp,
    icmp_errno,
    icmp_type_name,
    plateau_mtu,
)
from layers.wire.ipv4 import IP_OFFMASK, IPV4_MIN_HLEN, PROTO_ICMP
from layers_icmp.ratelimit import GlobalBucket, HostBuckets
from layers_icmp.settings import IcmpSettings

if TYPE_CHECKING:
    from layers.interface import Interface
    from layers.stack import Stack

#: types above this are unknown; like Linux, we treat an unknown type as an error message
#: (never answered with an error)
_NR_ICMP_TYPES = 18
#: RFC 1812 4.3.2.5: errors go out with precedence "internetwork control"
_IPTOS_PREC_INTERNETCONTROL = 0xC0
_IPTOS_TOS_MASK = 0x1E

_TYPE_COUNTER = {
    0: "echo_reps",
    3: "dest_unreachs",
    4: "src_quenchs",
    5: "redirects",
    8: "echos",
    11: "time_excds",
    12: "parm_probs",
    13: "timestamps",
    14: "timestamp_reps",
    17: "addr_masks",
    18: "addr_mask_reps",
}
_from_bytes = int.from_bytes
IN_COUNTER = tuple("in_" + _TYPE_COUNTER.get(t, f"type{t}") for t in range(256))
OUT_COUNTER = tuple("out_" + _TYPE_COUNTER.get(t, f"type{t}") for t in range(256))


def _not_one_host(address: int) -> bool:
    """0.0.0.0/8, 127.0.0.0/8, multicast, class E and limited broadcast name no single host."""
    top = address >> 24
    return top == 0 or top == 127 or top >= 224


class Icmp:
    """ICMP for one stack. Implements TransportProtocol, EchoService and ErrorReporter."""

    name = "icmp"
    protocol = PROTO_ICMP

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._c = stack.counter("icmp")
        cfg = read_settings(stack, "icmp", IcmpSettings)
        self.settings = cfg
        self.echo_ignore_broadcasts = cfg.echo_ignore_broadcasts
        self.echo_ignore_all = cfg.echo_ignore_all
        self.ratemask = cfg.ratemask
        self.error_max_length = cfg.error_max_length
        ratelimit, msgs_per_sec, msgs_burst = cfg.ratelimit, cfg.msgs_per_sec, cfg.msgs_burst
        self._global = GlobalBucket(msgs_per_sec, msgs_burst, stack.now)
        self._hosts = HostBuckets(ratelimit)
        #: (peer, ident, seq) -> the echo request waiting for its reply
        self.pending = PendingEchoes(stack, self._c)

    # --- TransportProtocol: receive ---------------------------------------------------
    def receive(self, datagram: IPDatagram) -> None:
        iface, src, dst, _, ttl, tos, _, data, flags, broadcast = datagram
        self.receive_unpacked(iface, src, dst, ttl, tos, data, flags, broadcast)

    def receive_unpacked(self, iface: Interface, src: int, dst: int, ttl: int, tos: int,
                         data: bytes | memoryview, flags: int, broadcast: bool) -> None:
        """:meth:`receive` of a datagram given by its fields (what IPv4 calls: no
        IPDatagram, nor a view of the header, per message; none of ours quotes it)."""
        c = self._c
        n = len(data)
        if n < ICMP_HLEN:
            c.drop("truncated")
            return
        if not flags & RX_CSUM_VERIFIED:
            if n <= 512:
                # ones_sum(data) == 0xFFFF, inlined for a ping's size: read little-endian (an
                # odd last byte is then RFC 1071's zero padding), the sum is all ones when the
                # number is a non-zero multiple of 0xFFFF (an all-zero message sums to zero)
                x = _from_bytes(data, "little")
                bad = not x or x % 0xFFFF
            else:
                bad = ones_sum(data) != 0xFFFF
            if bad:
                c.drop("bad_checksum")
                return
        icmp_type = data[0]
        c["in_msgs"] += 1
        c[IN_COUNTER[icmp_type]] += 1
        if icmp_type == ICMP_ECHO:
            self._echo_request(iface, src, dst, tos, flags, broadcast, data)
        elif icmp_type == ICMP_ECHOREPLY:
            self._echo_reply(src, ttl, data)
        elif icmp_type in (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED, ICMP_PARAMETERPROB):
            self._error_received(src, data)
        elif icmp_type in (ICMP_SOURCE_QUENCH, ICMP_REDIRECT):
            pass  # counted; source quench is deprecated (RFC 6633), hosts may ignore redirects
        else:
            c.drop("unsupported_type")

    def _echo_request(self, iface: Interface, src: int, dst: int, tos: int, flags: int,
                      broadcast: bool, data: bytes | memoryview) -> None:
        c = self._c
        if self.echo_ignore_all:
            c.drop("echo_ignored")
            return
        to_group = broadcast or flags & RX_BROADCAST or dst >= 0xE0000000
        if to_group and self.echo_ignore_broadcasts:
            c.drop("broadcast_echo")
            return
        top = src >> 24  # _not_one_host(src), inlined: every request passes here
        if (top == 0 or top == 127 or top >= 224) and iface is not self.stack.loopback:
            c.drop("echo_bad_source")
            return
        if self.ratemask & 1 and not self._allowed(src):  # not limited by default
            return
        ip = self.stack.ip
        if ip is None:
            c.drop("no_ip")
            return
        reply = bytearray(data)
        # Type 8 -> 0 changes only the first 16-bit word, by 0x0800 whatever the code: update
        # the checksum incrementally (RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), where
        # ~m + m' is 0xF7FF), so a reply costs no pass over the data.
        t = 0x1F7FE - ((reply[2] << 8) | reply[3])  # ~HC + 0xF7FF, then one fold suffices
        csum = 0xFFFF - ((t & 0xFFFF) + (t >> 16))
        reply[0] = ICMP_ECHOREPLY
        if not csum:
            # eqn. 3 yields -0 where the sum is +0 (an all-zero reply, which needs 0xFFFF);
            # rare enough to settle with a full sum
            reply[2] = reply[3] = 0
            csum = checksum(reply)
        reply[2] = csum >> 8
        reply[3] = csum & 0xFF
        # Answer from the address the request was sent to (RFC 1122 3.2.2.6); a request to a
        # broadcast or multicast address is answered from our address toward the sender.
        local = (None if to_group else dst if dst in self.stack.local_addresses
                 else dst if self.stack.is_local(dst) else None)
        if ip.send(src, PROTO_ICMP, reply, src=local, tos=tos):
            c["out_msgs"] += 1
            c["out_echo_reps"] += 1
        else:
            c["out_errors"] += 1

    def _echo_reply(self, src: int, ttl: int, data: bytes | memoryview) -> None:
        _, _, _, ident, seq = ICMP_ECHO_HEADER.unpack_from(data)
        pending = self.pending.pop((src, ident, seq))
        if pending is None:
            self._c.drop("unmatched_echo_reply")
            return
        rtt = self.stack.now - pending.sent
        self.pending.deliver(pending, EchoReply(src, seq, ttl, len(data), rtt))

    def _error_received(self, reporter: int, data: bytes | memoryview) -> None:
        c = self._c
        icmp_type, code, _, rest = ICMP_HEADER.unpack_from(data)
        try:
            quote = IcmpQuote.from_bytes(memoryview(data)[ICMP_HLEN:])
        except MalformedPacket as exc:
            c.drop(exc.reason)
            return
        transport = self.stack.transports.get(quote.protocol)
        if transport is None:
            c.drop("quote_unknown_protocol")
            return
        mtu: int | None = None
        if icmp_type == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED:
            mtu = rest & 0xFFFF
            if mtu < 68:  # a router from before RFC 1191: guess the next plateau down
                mtu = plateau_mtu(quote.total_length)
            # a transport that checks the quoted segment first (TCP: RFC 5927) records the
            # path MTU itself, as Linux's tcp_v4_err does; for the others, IP records it now
            update = getattr(self.stack.ip, "update_path_mtu", None)
            if update is not None and not getattr(transport, "validates_path_mtu", False):
                try:
                    update(quote.dst, mtu)
                except Exception:
                    self.stack.internal_error("update_path_mtu", update)
        error = TransportError(
            errno=icmp_errno(icmp_type, code),
            src=quote.src,
            dst=quote.dst,
            protocol=quote.protocol,
            quote=quote.data,
            reporter=reporter,
            icmp_type=icmp_type,
            icmp_code=code,
            mtu=mtu,
        )
        c["errors_delivered"] += 1
        transport.error(error)

    # --- TransportProtocol: errors about what we sent ---------------------------------
    def error(self, error: TransportError) -> None:
        """An error about an ICMP message we sent: fails the matching echo request."""
        q = error.quote
        if len(q) < ICMP_HLEN or q[0] != ICMP_ECHO:
            self._c.drop("error_for_unknown_message")
            return
        ident = (q[4] << 8) | q[5]
        seq = (q[6] << 8) | q[7]
        pending = self.pending.pop((error.dst, ident, seq))
        if pending is None:
            self._c.drop("error_for_unknown_echo")
            return
        if error.local:
            detail = "local"
        else:
            detail = f"from {ip4_str(error.reporter)}: {icmp_type_name(error.icmp_type or 0)}"
            detail += f" code {error.icmp_code}"
        exc = os_error(error.errno, detail)
        # for ping's "From 10.0.0.1 icmp_seq=1 Destination Host Unreachable"
        exc.reporter = error.reporter  # type: ignore[attr-defined]
        exc.icmp_type = error.icmp_type  # type: ignore[attr-defined]
        exc.icmp_code = error.icmp_code  # type: ignore[attr-defined]
        self.pending.deliver(pending, exc)

    # --- EchoService ------------------------------------------------------------------
    def echo(
        self,
        dst: int,
        *,
        ident: int,
        seq: int,
        payload: bytes,
        callback: EchoCallback,
        timeout: float = 1.0,
        ttl: int | None = None,
    ) -> None:
        """Send an echo request to ``dst``; ``callback`` gets exactly one
        :class:`~layers.protocols.EchoReply` (``size`` is the ICMP message length, header
        included, as ping prints it) or :class:`OSError` (TimeoutError after ``timeout``
        seconds of stack time; EHOSTUNREACH, ENETUNREACH, ECONNREFUSED... for ICMP errors and
        local failures, with ``reporter``/``icmp_type``/``icmp_code`` attributes set).

        A local failure (no route) may call ``callback`` before ``echo`` returns.
        """
        if not 0 <= ident <= 0xFFFF or not 0 <= seq <= 0xFFFF:
            raise ConfigurationError(f"echo ident {ident} and seq {seq} must be in 0..65535")
        if not timeout > 0:
            raise ConfigurationError(f"echo timeout must be positive, not {timeout!r}")
        if ttl is not None and not 1 <= ttl <= 255:
            raise ConfigurationError(f"echo ttl must be in 1..255, not {ttl}")
        key = (dst, ident, seq)
        if key in self.pending:
            raise ConfigurationError(
                f"an echo request to {ip4_str(dst)} with ident {ident} seq {seq} is still "
                f"pending; use another sequence number"
            )
        ip = self.stack.ip
        if ip is None:  # the stack refuses transports without IPv4, so only a test double
            callback(os_error(_errno.ENETUNREACH, "no IPv4 layer"))
            return
        msg = build_icmp(ICMP_ECHO, 0, (ident << 16) | seq, payload)
        pending = self.pending.add(key, callback, len(msg), timeout)
        self._c["out_msgs"] += 1
        self._c["out_echos"] += 1
        if not ip.send(dst, PROTO_ICMP, msg, ttl=ttl) and self.pending.get(key) is pending:
            # IPv4 could not send and did not report why through error()
            self.pending.pop(key)
            self._c["out_errors"] += 1
            self.pending.deliver(pending, os_error(_errno.ENETUNREACH, "no route"))

    def fail_pending(self, errno: int, detail: str) -> None:
        """Fail every pending echo request (the stack is stopping)."""
        self.pending.fail_all(errno, detail)

    # --- ErrorReporter ----------------------------------------------------------------
    def destination_unreachable(self, datagram: IPDatagram, code: int, *, mtu: int = 0) -> None:
        """Send destination unreachable ``code`` about ``datagram`` (``mtu``: the next-hop MTU
        for code 4, fragmentation needed)."""
        if not 0 <= code <= 255 or not 0 <= mtu <= 0xFFFF:
            raise ConfigurationError(f"unreachable code {code} / mtu {mtu} out of range")
        self._send_error(datagram, ICMP_DEST_UNREACH, code, mtu if code == ICMP_FRAG_NEEDED else 0)

    def time_exceeded(self, datagram: IPDatagram, code: int) -> None:
        """Send time exceeded: code 0 TTL expired in transit, 1 reassembly timed out."""
        if code not in (0, 1):
            raise ConfigurationError(f"time exceeded code is 0 or 1, not {code}")
        self._send_error(datagram, ICMP_TIME_EXCEEDED, code, 0)

    def parameter_problem(self, datagram: IPDatagram, pointer: int) -> None:
        """Send parameter problem pointing at octet ``pointer`` of the offending datagram."""
        if not 0 <= pointer <= 255:
            raise ConfigurationError(f"parameter problem pointer {pointer} is not in 0..255")
        self._send_error(datagram, ICMP_PARAMETERPROB, 0, pointer << 24)

    def _send_error(self, dg: IPDatagram, icmp_type: int, code: int, rest: int) -> None:
        c = self._c
        stack = self.stack
        header = dg.header
        if len(header) < IPV4_MIN_HLEN:
            c.drop("error_bad_header")
            return
        # RFC 1122 3.2.2 / RFC 1812 4.3.2.7: never about a non-initial fragment ...
        if ((header[6] << 8) | header[7]) & IP_OFFMASK:
            c.drop("error_about_fragment")
            return
        # ... nor about a datagram to a broadcast or multicast address ...
        dst = dg.dst
        if (
            dg.broadcast
            or dg.flags & RX_BROADCAST
            or dst >= 0xE0000000
            or dst in dg.interface.broadcasts
        ):
            c.drop("error_to_broadcast")
            return
        # ... nor to a source that names no single host ...
        src = dg.src
        if (_not_one_host(src) and dg.interface is not stack.loopback) or any(
            src in i.broadcasts for i in stack.interfaces
        ):
            c.drop("error_to_bad_source")
            return
        # ... nor about an ICMP error (unknown types count as errors, as in Linux).
        payload = dg.payload
        if dg.protocol == PROTO_ICMP and (
            not len(payload) or payload[0] > _NR_ICMP_TYPES or payload[0] in ICMP_ERROR_TYPES
        ):
            c.drop("error_about_error")
            return
        # Errors to ourselves (loopback) are never limited, as in Linux.
        if (1 << icmp_type) & self.ratemask and not stack.is_local(src) and not self._allowed(src):
            return
        ip = stack.ip
        if ip is None:
            c.drop("no_ip")
            return
        room = max(self.error_max_length - IPV4_MIN_HLEN - ICMP_HLEN - len(header), 8)
        quote = bytes(header) + bytes(payload[:room])
        msg = build_icmp(icmp_type, code, rest, quote)
        tos = (dg.tos & _IPTOS_TOS_MASK) | _IPTOS_PREC_INTERNETCONTROL
        # from the address the offending datagram was sent to, when it was one of ours
        local_src = dst if stack.is_local(dst) else None
        if ip.send(src, PROTO_ICMP, msg, src=local_src, tos=tos):
            c["out_msgs"] += 1
            c[OUT_COUNTER[icmp_type]] += 1
        else:
            c["out_errors"] += 1

    def _allowed(self, dst: int) -> bool:
        now = self.stack.now
        # Peek at the global bucket, then spend from the host's, then from the global one: a
        # message suppressed by one limit costs nothing from the other.
        if not self._global.available(now):
            self._c.drop("rate_limited_global")
            return False
        if not self._hosts.allow(dst, now):
            self._c.drop("rate_limited_host")
            return False
        self._global.consume()
        return True
