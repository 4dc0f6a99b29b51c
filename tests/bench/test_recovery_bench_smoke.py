"""tests/bench/recovery_bench.py on a tiny grid: it runs, passes settings through per variant,
writes the JSON it documents, and its spurious-retransmission witness agrees with the
transfers it watches. Timings and goodput are never asserted (figures, not a gate)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from recovery_bench import run_transfer

BENCH = Path(__file__).with_name("recovery_bench.py")
MSS = 1448  # the largest payload a segment carries on this path (timestamps on)


def test_tiny_grid_writes_every_cell_per_variant(tmp_path: Path) -> None:
    out = tmp_path / "recovery.json"
    r = subprocess.run([sys.executable, str(BENCH), "--reorder", "0,5", "--jitter", "0,5",
                        "--loss", "1", "--seeds", "3", "--size", "200000",
                        "--variant", "sack:", "--variant", "nosack:tcp.sack=false",
                        "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "== sack: defaults" in r.stdout and "== nosack: {'tcp.sack': 'false'}" in r.stdout
    doc = json.loads(out.read_text())
    cells = doc["cells"]
    assert [(c["variant"], c["reorder_pct"], c["jitter_ms"]) for c in cells] == [
        (v, ro, j) for v in ("sack", "nosack") for ro in (0, 5) for j in (0, 5)]
    assert all(c["settings"] == ({"tcp.sack": "false"} if c["variant"] == "nosack" else {})
               for c in cells)
    for run in doc["runs"]:
        assert run["complete"] and run["verified"], run
        assert run["goodput_mbit"] > 0 and run["completion_s"] > 0, run
        # 1% loss both ways plus the queue's own drops: something is lost and resent
        assert run["lost_segs"] >= 1 and run["retrans_segs"] >= 1, run
        # a segment arriving with nothing new exists only because something was resent
        assert run["spurious_segs"] <= run["retrans_segs"], run
        for key in ("RetransSegs", "FastRetransmits", "RTOs", "SpuriousRTOs", "LossUndo"):
            assert key in run["counters"], run["counters"]
        assert run["counters"]["RetransSegs"] == run["retrans_segs"]


def test_the_witness_sees_only_what_was_resent() -> None:
    # a clean path with room in its queue: nothing lost, nothing resent, nothing duplicated
    clean = run_transfer(reorder=0.0, jitter=0.0, loss=0.0, seed=1, size=300_000,
                         path="rate=20mbit,delay=10ms,queue=droptail,limit=1000p")
    assert clean["verified"] and clean["retrans_segs"] == 0 and clean["lost_segs"] == 0
    assert clean["spurious_segs"] == 0
    assert clean["data_segs_received"] >= 300_000 // MSS
    # jitter alone loses nothing, yet reorders enough to trigger fast retransmits of data
    # that was on its way: every retransmission is then spurious, and the witness sees them
    jittery = run_transfer(reorder=0.0, jitter=0.005, loss=0.0, seed=1, size=300_000,
                           path="rate=20mbit,delay=10ms,queue=droptail,limit=1000p")
    assert jittery["verified"] and jittery["lost_segs"] == 0
    assert jittery["retrans_segs"] > 0
    assert jittery["spurious_segs"] == jittery["retrans_segs"], jittery
    # the unique data arrived once each, whatever was duplicated
    assert (jittery["data_segs_received"] - jittery["spurious_segs"]) * MSS >= 300_000


def test_a_seed_gives_the_same_figures_every_time() -> None:
    def once() -> dict[str, Any]:
        return run_transfer(reorder=0.05, jitter=0.005, loss=0.01, seed=4, size=200_000)

    first, second = once(), once()
    assert first == second
    assert first["retrans_segs"] > 0  # the faults did something worth repeating


def test_an_unknown_setting_is_refused_before_any_run() -> None:
    r = subprocess.run([sys.executable, str(BENCH), "--variant", "x:tcp.no_such_thing=1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "tcp.no_such_thing" in r.stderr and "tcp.sack" in r.stderr  # names the known ones
    assert "==" not in r.stdout
