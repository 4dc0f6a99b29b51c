"""The tcp plugin's settings (``Stack(settings={"tcp.msl": 5})``), read once per stack.

=========================  ===========  ===================================================
setting                    default      meaning
=========================  ===========  ===================================================
tcp.msl                    30.0         maximum segment lifetime; TIME-WAIT lasts 2*MSL
                                        (60 s, Linux's TCP_TIMEWAIT_LEN)
tcp.rto_initial            1.0          RTO before the first RTT sample (RFC 6298)
tcp.rto_min                0.2          lower bound of the RTO: Linux's 200 ms rather than
                                        RFC 6298's 1 s, which is tuned for WAN paths and
                                        makes every loss on a LAN or veth stall a second
tcp.rto_max                120.0        upper bound of the backed-off RTO (Linux's 120 s)
tcp.syn_retries            6            SYN retransmissions before ETIMEDOUT (Linux)
tcp.synack_retries         5            SYN-ACK retransmissions before a half-open
                                        connection is dropped (Linux)
tcp.retries2               15           data retransmissions before ETIMEDOUT (Linux)
tcp.delack                 0.04         delayed-ACK timer (Linux's minimum ATO)
tcp.rcvbuf                 1048576      receive buffer, bytes: the largest window offered
tcp.sndbuf                 1048576      send buffer, bytes, before writers see back-pressure
tcp.window_scaling         true         offer RFC 7323 window scaling
tcp.timestamps             true         offer RFC 7323 timestamps (RTTM and PAWS)
tcp.sack                   true         offer and use SACK (RFC 2018)
tcp.initial_cwnd           10           initial window in segments (RFC 6928, like Linux)
tcp.congestion_control     newreno      algorithm from the layers_congestion_controls hook;
                                        its own settings are NAME.KEY (layers.congestion)
tcp.port_range             32768-60999  ephemeral ports (Linux's ip_local_port_range)
tcp.secret                 (random)     hex key for ISNs (RFC 6528) and ports (RFC 6056);
                                        set it to make runs repeat exactly
tcp.fin_timeout            60.0         FIN-WAIT-2 lifetime after close() (Linux)
tcp.keepalive_time         7200.0       idle time before keepalive probes (opt-in per
tcp.keepalive_intvl        75.0         connection: keepalive=True); interval between
tcp.keepalive_probes       9            probes; unanswered probes before ETIMEDOUT
tcp.challenge_ack_limit    1000         RFC 5961 challenge ACKs per second, per stack
tcp.ooo_max_blocks         512          out-of-order blocks kept before drops
tcp.ooo_mem                16777216     out-of-order bytes held by all connections
                                        together (a global cap, as Linux's tcp_mem)
tcp.syncookies             1            SYN cookies (RFC 4987), as Linux's tcp_syncookies:
                                        0 never, 1 when a SYN queue overflows, 2 always
tcp.gso                    true         send TSO super-segments when the link offers it
tcp.ecn                    0            ECN (RFC 3168), as Linux's net.ipv4.tcp_ecn: 0 off,
                                        1 request it when connecting and accept it when
                                        asked, 2 accept it only when asked; per connection
                                        too (``ecn=`` option)
tcp.ecn_fallback           true         retransmitted SYNs go without the ECN request, in
                                        case a middlebox drops them (Linux's
                                        tcp_ecn_fallback, RFC 3168 6.1.1.1)
tcp.recovery               rack         the loss detector of SACK connections: ``rack``
                                        (RACK-TLP, RFC 8985: time-based, with tail loss
                                        probes, as Linux's default tcp_recovery=1) or
                                        ``dupack`` (three duplicate ACKs or RFC 6675's
                                        DupThresh SACKed segments); connections without
                                        SACK always count duplicate ACKs (NewReno)
tcp.dsack                  true         send D-SACK blocks for duplicate data (RFC 2883,
                                        Linux's tcp_dsack); D-SACKs received always count
tcp.frto                   true         F-RTO (RFC 5682, Linux's tcp_frto): find spurious
                                        timeouts without timestamps and undo them
tcp.max_tw_buckets         262144       TIME-WAIT connections held at once, as Linux's
                                        net.ipv4.tcp_max_tw_buckets: beyond it a closing
                                        connection sends the ACK it owes and ends at once
                                        (counted in TCPTimeWaitOverflow); 0 keeps none
=========================  ===========  ===================================================
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import attrs

from layers.errors import ConfigurationError
from layers.settings import parse_port_range, read_settings

if TYPE_CHECKING:
    from layers.stack import Stack


@attrs.define
class TCPSettings:
    msl: float = 30.0
    rto_initial: float = 1.0
    rto_min: float = 0.2
    rto_max: float = 120.0
    syn_retries: int = 6
    synack_retries: int = 5
    retries2: int = 15
    delack: float = 0.04
    rcvbuf: int = 1 << 20
    sndbuf: int = 1 << 20
    window_scaling: bool = True
    timestamps: bool = True
    sack: bool = True
    initial_cwnd: int = 10
    congestion_control: str = "newreno"
    port_range: str = "32768-60999"
    secret: str = ""
    fin_timeout: float = 60.0
    keepalive_time: float = 7200.0
    keepalive_intvl: float = 75.0
    keepalive_probes: int = 9
    challenge_ack_limit: int = 1000
    ooo_max_blocks: int = 512
    ooo_mem: int = 16 << 20
    syncookies: int = 1
    gso: bool = True
    ecn: int = 0
    ecn_fallback: bool = True
    recovery: str = "rack"
    dsack: bool = True
    frto: bool = True
    #: Linux's default: half its established-hash buckets, 262144 on a machine with a few
    #: GiB or more (the value most servers see), so a stack closes first as many
    #: connections as the kernel would before it overflows: 2*MSL = 60 s of over 4,000
    #: active closes a second. It bounds the memory TIME-WAIT holds, which nothing else did:
    #: about 2.7 KiB a connection (tests/tcp/bench_tcp_time_wait_mem.py), so some 700 MiB
    #: at the cap; a smaller machine or a stack with many small ones should set less
    max_tw_buckets: int = 262144
    # derived (not settings)
    port_min: int = attrs.field(default=32768, init=False)
    port_max: int = attrs.field(default=60999, init=False)
    key: bytes = attrs.field(default=b"", init=False)

    @classmethod
    def from_stack(cls, stack: Stack) -> TCPSettings:
        """The stack's ``tcp.*`` settings (declared through ``layers_settings``), validated."""
        return read_settings(stack, "tcp", cls)

    def validate(self) -> None:
        self.port_min, self.port_max = parse_port_range(self.port_range, "tcp.port_range")
        if self.secret:
            try:
                self.key = bytes.fromhex(self.secret)
            except ValueError:
                raise ConfigurationError(
                    f"tcp.secret should be hex digits (e.g. {os.urandom(8).hex()})"
                ) from None
        else:
            self.key = os.urandom(16)
        if not 0 < self.rto_min <= self.rto_initial <= self.rto_max:
            raise ConfigurationError(
                "TCP timeouts should satisfy 0 < tcp.rto_min <= tcp.rto_initial <= tcp.rto_max"
            )
        if self.rcvbuf < 2048 or self.sndbuf < 2048:
            raise ConfigurationError("tcp.rcvbuf and tcp.sndbuf should be at least 2048 bytes")
        if self.msl < 0 or self.delack < 0:
            raise ConfigurationError("tcp.msl and tcp.delack should not be negative")
        if self.syncookies not in (0, 1, 2):
            raise ConfigurationError(
                f"tcp.syncookies={self.syncookies!r} should be 0 (never), 1 (when a listener's "
                f"SYN queue overflows) or 2 (always), as Linux's net.ipv4.tcp_syncookies"
            )
        if self.ooo_mem < 0:
            raise ConfigurationError("tcp.ooo_mem should be a number of bytes (0 or more)")
        if self.max_tw_buckets < 0:
            raise ConfigurationError(
                f"tcp.max_tw_buckets={self.max_tw_buckets!r} should be a number of TIME-WAIT "
                f"connections, 0 or more (Linux's net.ipv4.tcp_max_tw_buckets; 0 keeps none)"
            )
        if self.initial_cwnd < 1:
            raise ConfigurationError("tcp.initial_cwnd should be at least 1 segment")
        if self.recovery not in ("rack", "dupack"):
            raise ConfigurationError(
                f"tcp.recovery={self.recovery!r} should be rack (RACK-TLP, RFC 8985) or dupack "
                f"(duplicate-ACK counting, RFC 5681/6675)"
            )
        if self.ecn not in (0, 1, 2):
            raise ConfigurationError(
                f"tcp.ecn={self.ecn!r} should be 0 (off), 1 (request and accept ECN) or 2 "
                f"(accept when the peer asks), as Linux's net.ipv4.tcp_ecn"
            )
