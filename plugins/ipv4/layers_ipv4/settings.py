"""The ipv4 plugin's settings (``--set ipv4.KEY=VALUE``), declared through ``layers_settings``
and read once per stack with :func:`layers.settings.read_settings`.

The keys and their meaning are documented in the package docstring (:mod:`layers_ipv4`).
"""

from __future__ import annotations

import attrs

from layers.errors import ConfigurationError
from layers.wire.ipv4 import IPV4_MAX_TOTAL_LENGTH, IPV4_MIN_MTU

#: Linux's min_pmtu: the smallest path MTU learned from ICMP is raised to this
DEFAULT_MIN_PMTU = 552


@attrs.frozen
class IPv4Settings:
    #: TTL of datagrams we send when the transport does not give one (Linux ip_default_ttl)
    ttl: int = 64
    #: seconds a partial datagram is kept from its first fragment (Linux ipfrag_time)
    reasm_timeout: float = 30.0
    #: bytes all partial datagrams may hold together; 0 disables reassembly
    reasm_memory: int = 256 * 1024
    #: accept unicast only for the receiving interface's own addresses
    strong_host: bool = False
    #: drop unicast datagrams that arrived in link-layer broadcast frames
    drop_unicast_in_l2_broadcast: bool = True
    #: seconds a learned path MTU is kept (RFC 1191 suggests 10 minutes)
    pmtu_expires: float = 600.0
    #: the smallest path MTU update_path_mtu accepts
    min_pmtu: int = DEFAULT_MIN_PMTU
    #: give the stack Linux's loopback interface ``lo`` (127.0.0.1/8); false: 127/8 is
    #: unreachable (ENETUNREACH) and packets to our own addresses are still looped back
    loopback: bool = True

    def validate(self) -> None:
        if not 1 <= self.ttl <= 255:
            raise ConfigurationError(f"setting ipv4.ttl={self.ttl} must be 1..255 (default 64)")
        if not self.reasm_timeout > 0:
            raise ConfigurationError(
                f"setting ipv4.reasm_timeout={self.reasm_timeout} must be > 0 seconds "
                f"(default 30)"
            )
        if self.reasm_memory < 0:
            raise ConfigurationError(
                f"setting ipv4.reasm_memory={self.reasm_memory} must be >= 0 bytes (default "
                f"262144; 0 disables reassembly)"
            )
        if not self.pmtu_expires > 0:
            raise ConfigurationError(
                f"setting ipv4.pmtu_expires={self.pmtu_expires} must be > 0 seconds (default "
                f"600)"
            )
        if not IPV4_MIN_MTU <= self.min_pmtu <= IPV4_MAX_TOTAL_LENGTH:
            raise ConfigurationError(
                f"setting ipv4.min_pmtu={self.min_pmtu} must be "
                f"{IPV4_MIN_MTU}..{IPV4_MAX_TOTAL_LENGTH} (default {DEFAULT_MIN_PMTU})"
            )
