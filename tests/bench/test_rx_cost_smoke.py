"""``tests/bench/rx_cost.py`` runs end to end without root: a peer process's TCP transfer over
a socket-pair TAP reaches the streams sink whole (the script exits non-zero otherwise). No
timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("rx_cost.py")


def test_rx_cost_delivers_every_byte_in_bursts_odd_and_even() -> None:
    for burst in ("8", "5"):
        out = subprocess.run(
            [sys.executable, str(SCRIPT), "-n", "60", "--burst", burst], capture_output=True,
            text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stderr
        assert f"60 segments of 1448 bytes in bursts of {burst}:" in out.stdout
