"""The ipv6 plugin's settings (``--set ipv6.KEY=VALUE``); documented in :mod:`layers_ipv6`."""

from __future__ import annotations

import attrs

from layers.errors import ConfigurationError
from layers.wire.ipv6 import IPV6_MIN_MTU

ADDR_GEN_MODES = ("eui64", "stable-privacy", "none")


@attrs.frozen
class IPv6Settings:
    #: hop limit of packets we send when the transport does not give one
    hop_limit: int = 64
    #: seconds a partial packet is kept from its first fragment (RFC 8200 4.5: 60)
    reasm_timeout: float = 60.0
    #: bytes all partial packets may hold together; 0 disables reassembly
    reasm_memory: int = 256 * 1024
    #: how link-local addresses are made: from the MAC (eui64), RFC 7217 (stable-privacy)
    #: or not at all (none)
    addr_gen_mode: str = "eui64"
    #: the RFC 7217 secret (any text; stable-privacy only)
    stable_secret: str = "layers"
    #: seconds a learned path MTU is kept (RFC 8201 suggests at least 5 minutes)
    pmtu_expires: float = 600.0
    #: accept unicast only for the receiving interface's own addresses
    strong_host: bool = False
    #: IPV6_V6ONLY's default for TCP listeners and UDP endpoints bound to ``::`` (Linux's
    #: net.ipv6.bindv6only): false, so ``::`` takes IPv4 too unless the socket says v6only
    bindv6only: bool = False

    def validate(self) -> None:
        if not 1 <= self.hop_limit <= 255:
            raise ConfigurationError(
                f"setting ipv6.hop_limit={self.hop_limit} must be 1..255 (default 64)")
        if not self.reasm_timeout > 0:
            raise ConfigurationError(
                f"setting ipv6.reasm_timeout={self.reasm_timeout} must be > 0 seconds "
                f"(default 60)")
        if self.reasm_memory < 0:
            raise ConfigurationError(
                f"setting ipv6.reasm_memory={self.reasm_memory} must be >= 0 bytes "
                f"(default 262144; 0 disables reassembly)")
        if self.addr_gen_mode not in ADDR_GEN_MODES:
            raise ConfigurationError(
                f"setting ipv6.addr_gen_mode={self.addr_gen_mode!r} must be one of "
                f"{', '.join(ADDR_GEN_MODES)} (default eui64)")
        if not self.pmtu_expires > 0:
            raise ConfigurationError(
                f"setting ipv6.pmtu_expires={self.pmtu_expires} must be > 0 seconds "
                f"(default 600)")


#: re-exported for the docs: no path MTU below this is ever used
MIN_MTU = IPV6_MIN_MTU
