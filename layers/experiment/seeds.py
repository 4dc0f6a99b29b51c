"""Named random substreams: every random source of a run derives its own seed from the
scenario's seed and its name, so adding a flow or a component never shifts another's draws."""

from __future__ import annotations

import hashlib


def substream(seed: int, name: str) -> int:
    """A 63-bit seed for the component ``name`` (``"link.loss"``, ``"flow2.sender.tcp"``)."""
    digest = hashlib.sha256(f"layers-experiment/{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def secret(seed: int, name: str) -> str:
    """A hex key (TCP's ISN and port secret) for ``name``, reproducible from ``seed``."""
    return hashlib.sha256(f"layers-experiment-secret/{seed}/{name}".encode()).hexdigest()[:32]
