"""The icmp plugin's settings (``--set icmp.KEY=VALUE``), declared through ``layers_settings``
and read once per stack with :func:`layers.settings.read_settings`.

The keys and their meaning are documented in :mod:`layers_icmp.protocol`.
"""

from __future__ import annotations

import attrs

from layers.errors import ConfigurationError
from layers.wire.ipv4 import IPV4_MAX_TOTAL_LENGTH, IPV4_MIN_MTU, IPV4_MIN_REASM

#: Linux's default icmp_ratemask: dest unreachable, source quench, time exceeded, param problem
DEFAULT_RATEMASK = 0x1818


@attrs.frozen
class IcmpSettings:
    #: do not answer echo requests sent to a broadcast or multicast address
    echo_ignore_broadcasts: bool = True
    #: do not answer any echo request
    echo_ignore_all: bool = False
    #: per destination, one rate-limited message per this many seconds; 0 disables
    ratelimit: float = 1.0
    #: the global token bucket for rate-limited messages; 0 disables it
    msgs_per_sec: float = 1000.0
    msgs_burst: int = 50
    #: bit ``1 << type`` set: messages of that type are rate limited (text in any base)
    ratemask: int = DEFAULT_RATEMASK
    #: the largest error datagram we send (RFC 1812 4.3.2.3: 576)
    error_max_length: int = IPV4_MIN_REASM

    def validate(self) -> None:
        if self.ratelimit < 0 or self.msgs_per_sec < 0 or self.msgs_burst < 1:
            raise ConfigurationError(
                "icmp.ratelimit and icmp.msgs_per_sec must be >= 0 (0 disables the limit) and "
                "icmp.msgs_burst >= 1"
            )
        if not IPV4_MIN_MTU <= self.error_max_length <= IPV4_MAX_TOTAL_LENGTH:
            raise ConfigurationError(
                f"icmp.error_max_length={self.error_max_length} must be in "
                f"{IPV4_MIN_MTU}..{IPV4_MAX_TOTAL_LENGTH} ({IPV4_MIN_REASM} is the RFC 1812 "
                f"choice)"
            )
        if self.ratemask < 0:
            raise ConfigurationError(
                f"icmp.ratemask={self.ratemask:#x} must be a bit mask >= 0 "
                f"(default {DEFAULT_RATEMASK:#x})"
            )
