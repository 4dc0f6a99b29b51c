"""The arp plugin's settings (``--set arp.KEY=VALUE``), declared through ``layers_settings``
and read once per stack with :func:`layers.settings.read_settings`.

The keys and their meaning are documented in the package docstring (:mod:`layers_arp`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from layers.errors import ConfigurationError
from layers.settings import read_settings

if TYPE_CHECKING:
    from layers.stack import Stack

PREFIX = "arp."


@attrs.frozen
class ArpSettings:
    #: seconds to wait for a reply to one request before the next (Linux retrans_time)
    timeout: float = 1.0
    #: broadcast requests sent to resolve an address before giving up (Linux mcast_probes)
    retries: int = 3
    #: unicast requests sent to re-confirm a stale entry still in use (Linux ucast_probes)
    unicast_probes: int = 3
    #: seconds an answered entry is trusted without re-confirmation (base_reachable_time)
    reachable_time: float = 30.0
    #: seconds a stale entry in use waits before probing (Linux delay_first_probe_time)
    delay_first_probe: float = 5.0
    #: seconds an unused stale entry is kept before it is removed (Linux gc_stale_time)
    stale_time: float = 60.0
    #: seconds a failed resolution is remembered; packets to it fail at once meanwhile
    failed_time: float = 3.0
    #: packets queued per unresolved neighbour; the oldest is dropped on overflow. Linux derives
    #: unres_qlen = 101 from unres_qlen_bytes = 212992; the old 3 would cut any datagram of
    #: more than 3 fragments sent to a neighbour not yet resolved.
    queue_len: int = 101
    #: packets queued for all unresolved neighbours of the stack together
    queue_total: int = 1024
    #: neighbour entries per stack (Linux gc_thresh3); old unused entries are evicted first
    max_entries: int = 1024
    #: announcements (gratuitous requests) sent per address when an interface comes up
    gratuitous_count: int = 2
    #: seconds between those announcements (RFC 5227 ANNOUNCE_INTERVAL)
    gratuitous_interval: float = 2.0
    #: learn new entries from others' announcements for addresses on our subnets
    accept_gratuitous: bool = True
    #: at most one defensive announcement per address per this many seconds (RFC 5227)
    defend_interval: float = 10.0

    @classmethod
    def from_stack(cls, stack: Stack) -> ArpSettings:
        """This stack's arp settings: the given ones over the defaults, validated."""
        return read_settings(stack, "arp", cls)

    def validate(self) -> None:
        def bad(key: str, rule: str) -> ConfigurationError:
            value = getattr(self, key)
            return ConfigurationError(f"setting {PREFIX}{key}={value!r} must be {rule}")

        for key in ("timeout", "reachable_time"):
            if not getattr(self, key) > 0:
                raise bad(key, "greater than 0 seconds")
        for key in ("delay_first_probe", "stale_time", "failed_time", "defend_interval"):
            if not getattr(self, key) >= 0:
                raise bad(key, "0 seconds or more")
        if self.retries < 1:
            raise bad("retries", "at least 1 (the first request counts)")
        if self.max_entries < 1:
            raise bad("max_entries", "at least 1")
        for key in ("unicast_probes", "queue_len", "queue_total", "gratuitous_count"):
            if getattr(self, key) < 0:
                raise bad(key, "0 or more")
        if self.gratuitous_count > 1 and not self.gratuitous_interval > 0:
            raise bad("gratuitous_interval", "greater than 0 when gratuitous_count > 1")
