"""What a run leaves in its directory: ``results.json``, ``traces/``, ``plots/``, ``report.md``.

``results.json`` is written with sorted keys and fixed rounding, so on the virtual medium the
same scenario and seed give the same bytes; only ``manifest.started_at`` and
``manifest.wall_seconds`` (wall-clock facts about this particular run) differ.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from layers import __version__
from layers.experiment.scenario import Scenario
from layers.experiment.virtual import RunOutput

__all__ = ["MANIFEST_TIME_KEYS", "make_plots", "manifest", "write_json", "write_run"]

#: manifest keys that hold wall-clock facts (everything else is reproducible)
MANIFEST_TIME_KEYS = ("started_at", "wall_seconds")


def _git_commit() -> str | None:
    """The commit of the checkout ``layers`` is imported from, with ``-dirty`` when the work
    tree has changes; None outside a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return commit + ("-dirty" if dirty.stdout.strip() else "")


def manifest(scenario: Scenario, *, started_at: _dt.datetime | None = None,
             wall_seconds: float | None = None) -> dict[str, Any]:
    """Versions and identities a reader needs to reproduce a run."""
    from layers.loader import describe_plugins

    plugins = {
        p.name: {"version": p.version, "distribution": p.distribution, "status": p.status}
        for p in describe_plugins()
    }
    return {
        "layers_version": __version__,
        "plugins": plugins,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": sys.platform,
        "scenario_sha256": scenario.digest(),
        "scenario_file": scenario.source,
        "seed": scenario.experiment.seed,
        "medium": scenario.experiment.medium,
        "git_commit": _git_commit(),
        "started_at": (started_at or _dt.datetime.now(_dt.UTC)).isoformat(timespec="seconds"),
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 3),
    }


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(_clean(data), sort_keys=True, indent=2) + "\n")


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(_clean(row), separators=(",", ":")) + "\n")


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def make_plots(out: Path, output: RunOutput) -> tuple[list[Path], str | None]:
    """The run's figures in ``out/plots``; (files, why there are none)."""
    from layers.experiment.figures import run_plots

    return run_plots(out, output.traces, output.link_trace)


def _fmt(v: Any, scale: float = 1.0, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        return f"{v * scale:.{digits}f}"
    return str(v)


def report_markdown(results: Mapping[str, Any], plots: Sequence[Path], note: str | None,
                    base: Path) -> str:
    """One page: the scenario, the per-flow table, the link, fairness, the plots."""
    sc = results["scenario"]
    link = results["link"]
    exp = sc["experiment"]
    lines = [
        f"# {exp['name']}",
        "",
        exp.get("description") or "",
        "",
        f"Medium **{exp['medium']}**, {exp['duration']:g} s, seed {exp['seed']}. Bottleneck "
        f"{sc['link']['rate']}, one-way delay {sc['link']['delay'] * 1e3:g} ms, "
        f"{sc['link']['queue']} queue of {link['queue_limit']}, random loss "
        f"{sc['link']['loss']:g}.",
        "",
        "| flow | cc | start (s) | goodput (Mbit/s) | bytes | retransmits | RTT mean (ms) "
        "| RTT p95 (ms) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for f in results["flows"]:
        lines.append(
            f"| {f['label']} | {f['cc']} | {f['start_s']:g} | {_fmt(f['goodput_bps'], 1e-6)} "
            f"| {f['bytes']} | {f['retransmits']} | {_fmt(f['rtt_mean_s'], 1e3, 1)} "
            f"| {_fmt(f['rtt_p95_s'], 1e3, 1)} |")
    lines += [
        "",
        "| link | utilization | queue delay mean (ms) | queue delay p95 (ms) | drops | marks "
        "| random losses |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| {'shaped' if link['shaped'] else 'unshaped (no rate limit)'} "
        f"| {_fmt(link['utilization'], 100, 1)}% | {_fmt(link['queue_delay_mean_s'], 1e3)} "
        f"| {_fmt(link['queue_delay_p95_s'], 1e3)} | {link['drops']} | {link['marks']} "
        f"| {link['random_losses']} |",
        "",
        f"Jain's fairness index over goodput: **{_fmt(results['fairness']['jain'], 1, 3)}**",
        "",
    ]
    if plots:
        lines += ["## Plots", ""]
        for p in plots:
            lines += [f"![{p.stem}]({p.relative_to(base).as_posix()})", ""]
    elif note:
        lines += [f"_{note}_", ""]
    m = results.get("manifest", {})
    plugins = ", ".join(f"{k} {v['version']}" for k, v in sorted(m.get("plugins", {}).items()))
    lines += [
        "## Manifest",
        "",
        f"layers {m.get('layers_version')}, Python {m.get('python')}, plugins: {plugins}. "
        f"Scenario sha256 `{str(m.get('scenario_sha256'))[:16]}`, git "
        f"`{m.get('git_commit') or 'not a checkout'}`, started {m.get('started_at')}.",
        "",
    ]
    return "\n".join(lines)


def write_run(out: Path, output: RunOutput, man: Mapping[str, Any], *,
              plots: bool = True) -> Path:
    """Write results.json, traces/, plots/ and report.md under ``out``; returns the results
    file."""
    out.mkdir(parents=True, exist_ok=True)
    traces = out / "traces"
    traces.mkdir(exist_ok=True)
    for label, rows in output.traces.items():
        _write_jsonl(traces / f"{_safe(label)}.jsonl", rows)
    _write_jsonl(traces / "bottleneck.jsonl", output.link_trace)
    results = {**output.results, "manifest": dict(man)}
    path = out / "results.json"
    write_json(path, results)
    files: list[Path] = []
    note: str | None = None
    if plots:
        files, note = make_plots(out, output)
    (out / "report.md").write_text(report_markdown(results, files, note, out))
    return path
