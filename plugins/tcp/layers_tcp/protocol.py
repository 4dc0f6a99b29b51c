"""The TCP transport protocol object: demultiplexing, listeners, ports, ISNs, resets.

Registered under IP protocol 6; also the stack's :class:`layers.streams.StreamService`, so
``layers.streams.open_connection``/``start_server`` find it with ``stack.find``.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from layers.congestion import (
    CongestionContext,
    CongestionControl,
    CongestionControlInfo,
    collect_congestion_controls,
)
from layers.errors import ConfigurationError, os_error
from layers.links.base import RX_CSUM_VERIFIED
from layers.protocols import IPDatagram, IPv4Service, TransportError
from layers.settings import read_settings
from layers.wire.checksum import checksum, ones_sum
from layers.wire.ipv4 import IPV4_MIN_HLEN, PROTO_TCP
from layers.wire.ipv6 import ANY6, IPV6_HLEN, bind_overlap, is_multicast6, pseudo_sum
from layers.wire.tcp import (
    TCP_ACK,
    TCP_CSUM_OFFSET,
    TCP_DEFAULT_MSS,
    TCP_FIN,
    TCP_HEADER,
    TCP_MAX_MSS,
    TCP_MAX_WINDOW,
    TCP_MAX_WSCALE,
    TCP_MIN_HLEN,
    TCP_MIN_MSS,
    TCP_RST,
    TCP_SYN,
    TCPHeader,
    TCPOptions,
    parse_options,
)
from layers_tcp.buffers import ReassemblyPool
from layers_tcp.connection import Connection
from layers_tcp.ecn import SEG_CE, SEG_ECT
from layers_tcp.listener import Listener
from layers_tcp.settings import TCPSettings
from layers_tcp.states import CLOSED, TIME_WAIT, unwrap
from layers_tcp.syncookies import (
    VALID_AFTER_OVERFLOW,
    SynCookies,
    decode_ts,
    encode_ts,
)
from layers_tcp.transport import TCPTransport

log = logging.getLogger("layers.tcp")

if TYPE_CHECKING:
    from layers.interface import Interface
    from layers.stack import Stack

MASK = 0xFFFFFFFF
_unpack_header = TCP_HEADER.unpack_from
_KEY = struct.Struct("!IHIH")
_SECRETS = struct.Struct("!III")
Key = tuple[int, int, int, int]


def _key_bytes(key: Key) -> bytes:
    """The 4-tuple as bytes for hashing; IPv6 addresses take 16 bytes each."""
    if key[0] > MASK or key[2] > MASK:
        return (key[0].to_bytes(17, "big") + key[1].to_bytes(2, "big")
                + key[2].to_bytes(17, "big") + key[3].to_bytes(2, "big"))
    return _KEY.pack(key[0], key[1], key[2], key[3])


@attrs.define
class ConnOptions:
    """Per-connection options (``open_connection(..., nodelay=True)``)."""

    nodelay: bool = False
    keepalive: bool = False
    #: seconds data may stay unacknowledged before ETIMEDOUT (TCP_USER_TIMEOUT); 0: off
    user_timeout: float = 0.0
    congestion_control: str = "newreno"
    rcvbuf: int = 1 << 20
    sndbuf: int = 1 << 20
    #: clamp for the MSS we advertise and use (TCP_MAXSEG); None: from the path MTU
    mss: int | None = None
    #: ECN (RFC 3168): 0 off, 1 request and accept, 2 accept only (``tcp.ecn``)
    ecn: int = 0


_OPTION_TYPES: dict[str, type] = {
    "nodelay": bool,
    "keepalive": bool,
    "user_timeout": float,
    "congestion_control": str,
    "rcvbuf": int,
    "sndbuf": int,
    "mss": int,
    "ecn": int,
}


class TCP:
    """TCP for one stack (RFC 9293)."""

    name = "tcp"
    protocol = PROTO_TCP
    #: TCP runs over IPv4 and IPv6 alike (the checksum follows the addresses' family)
    ip_versions = (4, 6)
    #: ICMP leaves "fragmentation needed" to us: the path MTU is recorded only for an error
    #: quoting data in flight (RFC 5927), see Connection.icmp_error
    validates_path_mtu = True

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.settings = TCPSettings.from_stack(stack)
        #: IPV6_V6ONLY's default for listeners on :: (Linux's net.ipv6.bindv6only)
        self.bindv6only = stack.setting("ipv6.bindv6only", False)
        self.c = stack.counter("tcp")
        #: out-of-order bytes of all connections, against tcp.ooo_mem
        self.ooo_pool = ReassemblyPool(self.settings.ooo_mem)
        self.cookies = SynCookies(self.settings.key)
        self.conns: dict[Key, Connection] = {}
        #: each IP service's send for data segments, by id (the service kept beside it)
        self.pieces_senders: dict[int, tuple[Any, Callable[..., bool]]] = {}
        #: connections in TIME-WAIT now, against tcp.max_tw_buckets
        self.tw_count = 0
        self._tw_overflow_logged = -1e9
        self.listeners: dict[tuple[int, int], Listener] = {}
        #: the congestion controls composed into this stack, by name
        self.cc_registry: dict[str, CongestionControlInfo] = collect_congestion_controls(
            stack.hook.layers_congestion_controls()
        )
        #: each algorithm's settings: its declared defaults overridden by ``NAME.KEY``
        self.cc_settings = {
            name: self._algorithm_settings(info) for name, info in self.cc_registry.items()
        }
        self._check_algorithm(self.settings.congestion_control, "tcp.congestion_control")
        key = self.settings.key
        self._key = key
        #: blake2s keyed with the secret, the key block taken: ``_hash`` copies it
        self._keyed = hashlib.blake2s(key=key, digest_size=4)
        #: the same with a 12-byte digest: a connection's three numbers (:meth:`secrets`)
        self._keyed12 = hashlib.blake2s(key=key, digest_size=12)
        self._next_ephemeral = int.from_bytes(hashlib.blake2s(b"eph", key=key).digest()[:4])
        self._challenge_start = -1e9
        self._challenge_count = 0
        #: connections whose output waits for the end of the burst of frames being received
        #: (:meth:`defer_output`), in the order they asked: a list, so the flush is
        #: deterministic
        self._tx_pending: list[Connection] = []

    # =================================================================================
    # output after a burst of ACKs
    # =================================================================================
    def defer_output(self, conn: Connection) -> None:
        """Send ``conn``'s data once the frames received with this one are all taken in,
        not after each ACK: a burst of twenty ACKs then releases one large (TSO) send instead
        of twenty small ones, as Linux checks for data to send once after its backlog. The
        flush is a :meth:`layers.stack.Stack.call_soon`, which every driver of
        ``stack.receive`` runs at its next ``poll`` (the asyncio runner after each burst, the
        virtual clock in the same pass, tests when they settle), so a stack fed frame by frame
        sends after each frame as before."""
        pending = self._tx_pending
        if not pending:
            self.stack.call_soon(self._flush_output)
        pending.append(conn)

    def _flush_output(self) -> None:
        pending = self._tx_pending
        self._tx_pending = []
        for conn in pending:
            conn._flush_output()

    def ip_for(self, address: int) -> Any:
        """The network service toward ``address`` (IPv4's or IPv6's: ``stack.ip_for``)."""
        ip = self.stack.ip_for(address)
        if ip is None:
            raise os_error(errno.ENETUNREACH, "no network layer for this address family")
        return ip

    @property
    def ip(self) -> IPv4Service:
        ip = self.stack.ip
        assert ip is not None
        return ip

    # =================================================================================
    # numbers: ISNs (RFC 6528), timestamp offsets, ephemeral ports (RFC 6056)
    # =================================================================================
    def _hash(self, data: bytes) -> int:
        # the same digest as blake2s(data, key=self._key, digest_size=4), from a copy of the
        # state that has taken the key block already: one compression instead of two
        h = self._keyed.copy()
        h.update(data)
        return int.from_bytes(h.digest())

    def secrets(self, key: Key) -> tuple[int, int, int]:
        """A connection's three secret numbers from one keyed hash of its 4-tuple (one
        blake2s with a 12-byte digest, cut into 32-bit words): F of its ISN (RFC 6528), its
        timestamp offset (RFC 7323 7.1, like Linux's tsoffset) and its congestion control's
        seed. The words of one pseudorandom output are as unpredictable and as independent
        of each other as three outputs would be, and each still depends on the 4-tuple and
        the secret alone, so a later incarnation of the same 4-tuple gets the same F (its
        ISNs go on with the clock) and the same offset (its timestamps do not go back). One
        hash instead of three: about 20k instructions less per connection."""
        h = self._keyed12.copy()
        h.update(_key_bytes(key))
        return _SECRETS.unpack(h.digest())

    def isn_at(self, f: int, now: float | None = None) -> int:
        """ISN = M + F: a 4 µs clock M (at ``now``, by default the stack's time) plus F, the
        4-tuple's keyed hash (RFC 6528)."""
        if now is None:
            now = self.stack.now
        return (int(now * 250_000) + f) & MASK

    def isn(self, key: Key) -> int:
        """ISN = M + F(4-tuple, secret): a 4 µs clock plus a keyed hash (RFC 6528)."""
        return self.isn_at(self.secrets(key)[0])

    def ts_offset(self, key: Key) -> int:
        """A per-connection random timestamp offset (like Linux's tsoffset)."""
        return self.secrets(key)[1]

    def _ephemeral(self, local: int, remote: int, rport: int) -> int | None:
        """RFC 6056 algorithm 3 (simple hash-based): a per-destination offset plus a global
        counter, skipping ports in use."""
        s = self.settings
        lo, hi = s.port_min, s.port_max
        num = hi - lo + 1
        offset = self._hash(_key_bytes((local, 0, remote, rport)))
        for _ in range(num):
            port = lo + (self._next_ephemeral + offset) % num
            self._next_ephemeral += 1
            if (local, port, remote, rport) in self.conns:
                continue
            if (local, port) in self.listeners or (0, port) in self.listeners or (
                    ANY6, port) in self.listeners:
                continue
            return port
        return None

    # =================================================================================
    # congestion control (layers.congestion)
    # =================================================================================
    def _algorithm_settings(self, info: CongestionControlInfo) -> dict[str, Any]:
        """``info.settings`` with ``--set NAME.KEY=VALUE`` applied, converted to the type of
        the default (the stack declared them under the algorithm's name and rejected unknown
        keys already)."""
        return read_settings(self.stack, info.name, dict(info.settings))

    def _check_algorithm(self, name: str, what: str) -> None:
        if name in self.cc_registry:
            return
        known = ", ".join(sorted(self.cc_registry)) or "none"
        raise ConfigurationError(
            f"{what}: congestion control {name!r} is not available: install/add the {name} "
            f"plugin (--plugins ...,{name}); available: {known}"
        )

    def make_congestion_control(self, name: str, mss: int, seed: int) -> CongestionControl:
        """One connection's algorithm: ``factory(CongestionContext)``; ``seed`` is the
        connection's (:meth:`secrets`)."""
        ctx = CongestionContext(mss, self.settings.initial_cwnd, self.cc_settings[name], seed)
        return self.cc_registry[name].factory(ctx)

    def time_wait_overflow(self) -> None:
        """A connection skipped TIME-WAIT because tcp.max_tw_buckets were all taken: counted,
        and logged at most once a second (Linux's rate-limited kernel message)."""
        self.c["TCPTimeWaitOverflow"] += 1
        now = self.stack.now
        if now - self._tw_overflow_logged >= 1.0:
            self._tw_overflow_logged = now
            log.warning("TCP: time wait bucket table overflow (tcp.max_tw_buckets=%d)",
                        self.settings.max_tw_buckets)

    def challenge_allowed(self) -> bool:
        """RFC 5961 7: at most ``tcp.challenge_ack_limit`` challenge ACKs per second."""
        now = self.stack.now
        if now - self._challenge_start >= 1.0:
            self._challenge_start = now
            self._challenge_count = 0
        if self._challenge_count >= self.settings.challenge_ack_limit:
            self.c["ChallengeACKsLimited"] += 1
            return False
        self._challenge_count += 1
        return True

    # =================================================================================
    # options
    # =================================================================================
    def conn_options(self, options: Mapping[str, Any]) -> ConnOptions:
        s = self.settings
        o = ConnOptions(congestion_control=s.congestion_control, rcvbuf=s.rcvbuf,
                        sndbuf=s.sndbuf, ecn=s.ecn)
        for name, value in options.items():
            kind = _OPTION_TYPES.get(name)
            if kind is None:
                known = ", ".join(sorted(_OPTION_TYPES))
                raise ConfigurationError(f"unknown TCP option {name!r}; known: {known}")
            if value is None and name == "mss":
                continue
            try:
                converted = kind(value)
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"TCP option {name}={value!r} should be a {kind.__name__}"
                ) from None
            setattr(o, name, converted)
        self._check_algorithm(o.congestion_control, "congestion_control=")
        if o.rcvbuf < 2048 or o.sndbuf < 2048:
            raise ConfigurationError("rcvbuf and sndbuf should be at least 2048 bytes")
        if o.mss is not None and not TCP_MIN_MSS <= o.mss <= TCP_MAX_MSS:
            raise ConfigurationError(
                f"mss={o.mss} should be within {TCP_MIN_MSS}..{TCP_MAX_MSS}")
        if o.ecn not in (0, 1, 2):
            raise ConfigurationError(
                f"ecn={o.ecn} should be 0 (off), 1 (request and accept) or 2 (accept only)"
            )
        if o.user_timeout < 0:
            raise ConfigurationError("user_timeout should be 0 (off) or positive seconds")
        return o

    # =================================================================================
    # StreamService
    # =================================================================================
    def connect(
        self,
        protocol: asyncio.BaseProtocol,
        host: int,
        port: int,
        *,
        local_addr: tuple[int, int] | None = None,
        on_connected: Callable[[BaseException | None], None] | None = None,
        **options: Any,
    ) -> TCPTransport:
        opts = self.conn_options(options)
        if not 0 < port <= 65535:
            raise ConfigurationError(f"port {port} should be within 1..65535")
        if host in (0, ANY6) or host >> 28 == 14 or host == MASK or is_multicast6(host):
            raise os_error(errno.EINVAL, "cannot connect to an unspecified, multicast or "
                                         "broadcast address")
        laddr, lport = local_addr if local_addr is not None else (0, 0)
        if laddr:
            if not self.stack.is_local(laddr):
                raise os_error(errno.EADDRNOTAVAIL)
            src = laddr
        else:
            found = self.ip_for(host).source_for(host)
            if found is None:
                raise os_error(errno.ENETUNREACH)
            src = found
        if lport:
            if (src, lport, host, port) in self.conns:
                raise os_error(errno.EADDRINUSE)
        else:
            eph = self._ephemeral(src, host, port)
            if eph is None:
                raise os_error(errno.EADDRNOTAVAIL, "no free ephemeral port")
            lport = eph
        conn = Connection(self, src, lport, host, port, opts, active=True)
        transport = TCPTransport(conn, protocol, on_connected)
        conn.app = transport
        self.conns[conn.key] = conn
        self.c["ActiveOpens"] += 1
        conn.open_active()
        return transport

    def listen(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: int,
        port: int,
        *,
        backlog: int = 128,
        accepting: bool = True,
        v6only: bool | None = None,
        **options: Any,
    ) -> Listener:
        """``host`` 0 is every IPv4 address, :data:`layers.wire.ipv6.ANY6` every IPv6 one and,
        as on Linux, every IPv4 one too unless ``v6only`` (IPV6_V6ONLY; its default is the
        ``ipv6.bindv6only`` setting, false as Linux's ``net.ipv6.bindv6only``). A dual-stack
        listener's IPv4 connections name their addresses ``::ffff:a.b.c.d`` (peername)."""
        if v6only is None:
            v6only = self.bindv6only
        opts = self.conn_options(options)
        if host and host != ANY6 and not self.stack.is_local(host):
            raise os_error(errno.EADDRNOTAVAIL)
        if not 0 <= port <= 65535:
            raise ConfigurationError(f"port {port} should be within 0..65535")
        if port == 0:
            s = self.settings
            for _ in range(s.port_max - s.port_min + 1):
                cand = s.port_min + self._next_ephemeral % (s.port_max - s.port_min + 1)
                self._next_ephemeral += 1
                if not self._port_taken(host, cand, v6only):
                    port = cand
                    break
            else:
                raise os_error(errno.EADDRINUSE, "no free port to listen on")
        elif self._port_taken(host, port, v6only):
            raise os_error(errno.EADDRINUSE)
        listener = Listener(self, host, port, protocol_factory, opts,
                            backlog=max(1, backlog), accepting=accepting)
        listener.v6only = v6only or host != ANY6
        self.listeners[(host, port)] = listener
        return listener

    def _port_taken(self, host: int, port: int, v6only: bool = True) -> bool:
        """Whether a listener on ``host:port`` would share an address with one that exists:
        a wildcard covers its family, a dual-stack ``::`` both (Linux's bind conflicts)."""
        v6only = v6only or host != ANY6
        for (addr, p), other in self.listeners.items():
            if p == port and bind_overlap(host, v6only, addr, other.v6only):
                return True
        return False

    def unlisten(self, listener: Listener) -> None:
        if self.listeners.get((listener.address, listener.port)) is listener:
            del self.listeners[(listener.address, listener.port)]

    def forget(self, conn: Connection) -> None:
        if self.conns.get(conn.key) is conn:
            del self.conns[conn.key]

    # =================================================================================
    # TransportProtocol
    # =================================================================================
    def receive(self, datagram: IPDatagram) -> None:
        iface, src, dst, _, ttl, tos, _, seg, dflags, broadcast = datagram
        self.receive_unpacked(iface, src, dst, ttl, tos, seg, dflags, broadcast)

    def receive_unpacked(self, iface: Interface, src: int, dst: int, ttl: int, tos: int,
                         seg: bytes | memoryview, dflags: int, broadcast: bool) -> None:
        """:meth:`receive` of a datagram given by its fields (what IPv4 calls: it makes no
        IPDatagram, nor a view of the header, for a transport that offers this)."""
        c = self.c
        c["InSegs"] += 1
        n = len(seg)
        if n < TCP_MIN_HLEN:
            c["InErrs"] += 1
            c.drop("truncated")
            return
        sport, dport, seq, ack, off_flags, wnd, _, _ = _unpack_header(seg)
        doff = (off_flags >> 12) << 2
        if doff < TCP_MIN_HLEN or doff > n:
            c["InErrs"] += 1
            c.drop("bad_offset")
            return
        # The pseudo-header's sum modulo 0xFFFF, where an address is congruent to the sum of
        # its 16-bit words (2**16 == 1): so for IPv4 and IPv6 addresses alike
        if not dflags & RX_CSUM_VERIFIED and ones_sum(seg, src + dst + PROTO_TCP + n) != 0xFFFF:
            c["InErrs"] += 1
            c["InCsumErrors"] += 1
            c.drop("bad_checksum")
            return
        flags = off_flags & 0x1FF
        if tos & 3:  # the ECN field rides along in bits the TCP flags do not use
            flags |= SEG_CE if tos & 3 == 3 else SEG_ECT
        mv = seg if type(seg) is memoryview else memoryview(seg)
        # a connection's addresses and ports passed the checks below when it was made (its
        # local address is ours, its remote one unicast, no port zero), so a segment that
        # finds one would pass them too: Linux's early demux looks up the socket first
        conn = self.conns.get((dst, dport, src, sport))
        if conn is not None:
            if (
                conn.state == TIME_WAIT
                and flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN
                and self._time_wait_reusable(conn, seq, mv, doff)
            ):
                conn.c["TWRecycled"] += 1
                conn._destroy()
            else:
                conn.segment(seq, ack, flags, wnd, mv, doff)
                return
        if broadcast or dst >> 28 == 14 or src >> 28 == 14 or src == MASK:
            c.drop("not_unicast")
            return
        if sport == 0 or dport == 0:
            c.drop("port_zero")
            return
        listener = self.listeners.get((dst, dport)) or self.listeners.get(
            (0 if dst <= MASK else ANY6, dport))
        if listener is None and dst <= MASK:  # a dual-stack listener on :: takes IPv4 too
            listener = self.listeners.get((ANY6, dport))
            if listener is not None and listener.v6only:
                listener = None
        if listener is not None:
            self._to_listener(listener, src, sport, dst, dport, seq, ack, flags, wnd, mv, doff)
            return
        # CLOSED (RFC 9293 3.10.7.1): reset anything but a reset
        c.drop("no_socket")
        if not flags & TCP_RST:
            self._reset_for(src, sport, dst, dport, seq, ack, flags, n - doff)

    def _time_wait_reusable(self, conn: Connection, seq32: int, seg: memoryview,
                            doff: int) -> bool:
        """RFC 6191 / RFC 1122 4.2.2.13: a new SYN may reopen a TIME-WAIT connection when
        its sequence number (or timestamp) is beyond the old incarnation's."""
        if conn.ts_ok and doff > TCP_MIN_HLEN:
            try:
                ts = parse_options(seg[TCP_MIN_HLEN:doff]).timestamp
            except ValueError:
                ts = None
            if ts is not None:
                return ((ts[0] - conn.ts_recent) & MASK) < 0x80000000 and ts[0] != conn.ts_recent
        return unwrap(seq32, conn.rcv_nxt) > conn.rcv_nxt

    def _reset_for(self, src: int, sport: int, dst: int, dport: int, seq: int, ack: int,
                   flags: int, dlen: int) -> None:
        if flags & TCP_ACK:
            self.send_reset(dst, dport, src, sport, ack, 0, TCP_RST)
        else:
            seglen = dlen + (1 if flags & TCP_SYN else 0) + (1 if flags & TCP_FIN else 0)
            self.send_reset(dst, dport, src, sport, 0, (seq + seglen) & MASK,
                            TCP_RST | TCP_ACK)

    def send_reset(self, local: int, lport: int, remote: int, rport: int, seq: int, ack: int,
                   flags: int) -> None:
        """A bare RST (or RST+ACK) with no connection state behind it."""
        seg = bytearray(TCP_MIN_HLEN)
        TCP_HEADER.pack_into(seg, 0, lport, rport, seq & MASK, ack & MASK,
                             (TCP_MIN_HLEN << 10) | flags, 0, 0, 0)  # data offset in words
        csum = checksum(seg, pseudo_sum(local, remote, PROTO_TCP, TCP_MIN_HLEN))
        seg[TCP_CSUM_OFFSET:TCP_CSUM_OFFSET + 2] = csum.to_bytes(2, "big")
        self.c["OutSegs"] += 1
        self.c["OutRsts"] += 1
        self.ip_for(remote).send(remote, PROTO_TCP, seg, src=local)

    def _to_listener(self, listener: Listener, src: int, sport: int, dst: int, dport: int,
                     seq: int, ack: int, flags: int, wnd: int, seg: memoryview,
                     doff: int) -> None:
        """LISTEN (RFC 9293 3.10.7.2)."""
        c = self.c
        if flags & TCP_RST:
            c.drop("rst_to_listener")
            return
        cookies = self.settings.syncookies
        if flags & TCP_ACK:
            if flags & TCP_SYN == 0 and (cookies == 2 or (
                    cookies == 1
                    and self.stack.now - listener.last_overflow < VALID_AFTER_OVERFLOW)):
                if self._cookie_ack(listener, src, sport, dst, dport, seq, ack, flags, wnd,
                                    seg, doff):
                    return
            # an ACK for a connection we do not know gets a reset
            c.drop("ack_to_listener")
            self.send_reset(dst, dport, src, sport, ack, 0, TCP_RST)
            return
        if not flags & TCP_SYN:
            c.drop("no_syn")
            return
        if listener._closed or len(listener.accept_queue) >= listener.backlog:
            c.drop("listen_overflow")  # as Linux, no cookie while the accept queue is full
            c["ListenDrops"] += 1
            return
        try:
            opts = parse_options(seg[TCP_MIN_HLEN:doff])
        except ValueError:
            c.drop("bad_option")
            return
        syn_queue = listener.syn_queue
        if cookies == 2 or len(syn_queue) >= listener.backlog:
            listener.last_overflow = self.stack.now
            if cookies == 0:
                c.drop("listen_overflow")
                c["ListenDrops"] += 1
                return
            self._send_cookie(listener, src, sport, dst, dport, seq, wnd, opts)
            return
        conn = Connection(self, dst, dport, src, sport, listener.options, active=False,
                          listener=listener)
        if dst <= MASK and listener.address == ANY6:
            conn.v4mapped = True
        self.conns[conn.key] = conn
        syn_queue.add(conn)  # listener.half_open(conn)
        c["PassiveOpens"] += 1
        conn.open_passive(seq, wnd, opts, flags)

    def _send_cookie(self, listener: Listener, src: int, sport: int, dst: int, dport: int,
                     seq: int, wnd: int, opts: TCPOptions) -> None:
        """A SYN-ACK whose sequence number is a SYN cookie; no state is kept."""
        s = self.settings
        peer_mss = opts.mss if opts.mss else TCP_DEFAULT_MSS
        ip = self.ip_for(src)
        # IP and TCP headers without options
        headers = (IPV6_HLEN if src > MASK else IPV4_MIN_HLEN) + TCP_MIN_HLEN
        mss = min(peer_mss, ip.path_mtu(src) - headers)
        if listener.options.mss:
            mss = min(mss, listener.options.mss)
        iss, _ = self.cookies.make(self.stack.now, src, dst, sport, dport, seq, mss)
        ts = None
        wscale: int | None = None
        sack = s.sack and opts.sack_permitted
        if s.timestamps and opts.timestamp is not None:
            if s.window_scaling and opts.wscale is not None:
                wscale = 0
                rcvbuf = listener.options.rcvbuf
                while (TCP_MAX_WINDOW << wscale) < rcvbuf and wscale < TCP_MAX_WSCALE:
                    wscale += 1
            tsval = (int(self.stack.now * 1000) + self.ts_offset((dst, dport, src, sport)))
            peer_ws = None if wscale is None else min(opts.wscale or 0, TCP_MAX_WSCALE)
            ts = (encode_ts(tsval, peer_ws, sack), opts.timestamp[0])
        else:
            sack = False  # without timestamps a cookie keeps neither (as Linux)
        adv_mss = max(ip.path_mtu(src) - headers, TCP_MIN_MSS)
        if listener.options.mss:
            adv_mss = min(adv_mss, listener.options.mss)
        options = TCPOptions(mss=adv_mss, wscale=wscale, sack_permitted=sack, timestamp=ts)
        segment = TCPHeader(dport, sport, iss, (seq + 1) & MASK, TCP_SYN | TCP_ACK,
                            min(listener.options.rcvbuf, TCP_MAX_WINDOW), options=options).to_bytes(
            src=dst, dst=src)
        self.c["SyncookiesSent"] += 1
        self.c["OutSegs"] += 1
        ip.send(src, PROTO_TCP, segment, src=dst)

    def _cookie_ack(self, listener: Listener, src: int, sport: int, dst: int, dport: int,
                    seq: int, ack: int, flags: int, wnd: int, seg: memoryview,
                    doff: int) -> bool:
        """An ACK to a listener: True when it returned a valid SYN cookie and became a
        connection (ESTABLISHED, handed to the listener), False otherwise."""
        c = self.c
        client_isn = (seq - 1) & MASK
        iss = (ack - 1) & MASK
        mss = self.cookies.check(self.stack.now, src, dst, sport, dport, client_isn, iss)
        if mss is None:
            c["SyncookiesFailed"] += 1
            return False
        if len(listener.accept_queue) >= listener.backlog or listener.closed:
            c.drop("listen_overflow")
            c["ListenOverflows"] += 1
            return True  # dropped: the client retransmits its ACK (as Linux)
        try:
            opts = parse_options(seg[TCP_MIN_HLEN:doff])
        except ValueError:
            c.drop("bad_option")
            return True
        wscale: int | None = None
        sack = False
        ts = None
        if opts.timestamp is not None and self.settings.timestamps:
            wscale, sack = decode_ts(opts.timestamp[1])
            ts = opts.timestamp
            if not self.settings.window_scaling:
                wscale = None
        c["SyncookiesRecv"] += 1
        syn = TCPOptions(mss=mss, wscale=wscale, sack_permitted=sack and self.settings.sack,
                         timestamp=ts)
        conn = Connection(self, dst, dport, src, sport, listener.options, active=False,
                          listener=listener)
        if dst <= MASK and listener.address == ANY6:
            conn.v4mapped = True
        self.conns[conn.key] = conn
        listener.half_open(conn)
        c["PassiveOpens"] += 1
        conn.open_from_cookie(client_isn, iss, wnd, syn)
        # the window our cookie SYN-ACK offered (_send_cookie): without it the connection
        # knows of no window and drops the client's first data as beyond a zero one
        conn.rcv_adv = max(conn.rcv_adv,
                           conn.rcv_nxt + min(listener.options.rcvbuf, TCP_MAX_WINDOW))
        conn.segment(seq, ack, flags, wnd, seg, doff)
        return True

    def error(self, error: TransportError) -> None:
        c = self.c
        c["InErrorsICMP"] += 1
        quote = error.quote
        if len(quote) < 8:
            c.drop("icmp_short_quote")
            return
        sport, dport, seq = struct.unpack_from("!HHI", quote)
        conn = self.conns.get((error.src, sport, error.dst, dport))
        if conn is None:
            c.drop("icmp_no_socket")
            return
        conn.icmp_error(error.errno, seq, error.mtu, error.local)

    # =================================================================================
    # lifecycle and reports
    # =================================================================================
    def stop(self) -> None:
        for listener in list(self.listeners.values()):
            listener.close()
        for conn in list(self.conns.values()):
            if conn.state != CLOSED:
                conn.reset_quietly()
        self.conns.clear()

    def report(self) -> dict[str, Any]:
        return {
            "connections": [conn.describe() for conn in self.conns.values()],
            "listeners": [lst.describe() for lst in self.listeners.values()],
        }
