"""The udp plugin's settings (``--set udp.KEY=VALUE``), declared through ``layers_settings``
and read once per stack with :func:`layers.settings.read_settings`."""

from __future__ import annotations

import attrs

from layers.errors import ConfigurationError
from layers.settings import parse_port_range

DEFAULT_PORT_RANGE = "32768-60999"  # Linux's net.ipv4.ip_local_port_range
DEFAULT_RCVBUF = 212992  # Linux's net.core.rmem_default


def _optional_int(value: object) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return int(str(value), 0)


@attrs.frozen
class UdpSettings:
    #: ephemeral ports, LOW-HIGH
    port_range: str = DEFAULT_PORT_RANGE
    #: an int: reproducible ephemeral ports (tests); unset: random
    port_seed: int | None = attrs.field(default=None, converter=_optional_int)
    #: bytes held per paused endpoint
    rcvbuf: int = DEFAULT_RCVBUF
    #: connected endpoints also get "soft" errors (net/host unreachable, time exceeded)
    report_soft_errors: bool = True

    @property
    def ports(self) -> tuple[int, int]:
        """``port_range`` as (low, high)."""
        return parse_port_range(self.port_range, "udp.port_range")

    def validate(self) -> None:
        self.ports  # noqa: B018 -- raises for a malformed range
        if self.rcvbuf < 0:
            raise ConfigurationError(
                f"setting udp.rcvbuf={self.rcvbuf} must be >= 0 bytes (default {DEFAULT_RCVBUF})"
            )
