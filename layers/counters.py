"""Per-protocol counters in the style of ``netstat -s``, every drop counted by reason."""

from __future__ import annotations

from collections import Counter


class Counters(Counter[str]):
    """``c["rx_packets"] += 1`` for events; ``c.drop("bad_checksum")`` for drops.

    Drops are kept apart (``c.drops``) so that a report can list them by reason, and their sum is
    ``c["dropped"]``.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.drops: Counter[str] = Counter()

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] += n
        self["dropped"] += n

    def snapshot(self) -> dict[str, object]:
        return {"counters": dict(self), "drops": dict(self.drops)}
