"""The repository's documents point only at what exists: every relative link in a Markdown
file names a file of the repository, and nothing refers to a design document kept elsewhere."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:  # not a git checkout (an unpacked sdist): every file on disk
        return [p for pattern in patterns for p in ROOT.rglob(pattern.lstrip("*/"))
                if ".venv" not in p.parts]
    return [ROOT / line for line in out.stdout.splitlines() if (ROOT / line).exists()]


def test_relative_links_in_markdown_point_at_files() -> None:
    broken = []
    for doc in _tracked("*.md"):
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            path = (doc.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
        for target in re.findall(r"`(docs/[\w./-]+\.md)`", doc.read_text()):
            if not (ROOT / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_nothing_refers_to_a_design_document_outside_the_repository() -> None:
    name = "design" + ".md"  # spelt apart so that this file does not match itself
    mentions = [
        str(path.relative_to(ROOT))
        for path in _tracked("*.md", "*.py", "*.toml", "Makefile")
        if name in path.read_text(errors="replace").lower()
    ]
    assert not mentions, f"these refer to a {name} the repository does not have: {mentions}"


def test_the_readme_tcp_on_the_virtual_clock_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
                if "StreamService" in b and "VirtualNetwork" in b]
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    client = namespace["client"]
    assert getattr(client, "got", None) == b"HELLO OVER TCP"
