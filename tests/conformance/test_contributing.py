"""CONTRIBUTING.md as a plugin author follows it: the documented example plugin (layers-shout)
is built and installed with pip from the code blocks of CONTRIBUTING.md itself, its own tests
are written from the documented ones, and every conformance command the guide shows is run
against it. If the guide drifts from what works, this fails."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "CONTRIBUTING.md"
#: the documented commands against root DUTs run this part of the suite here (the whole suite
#: against Linux and layers-tap runs in tests/conformance already): what a plugin author's
#: stack changes most: the probe for a protocol nobody handles
ROOT_SUBSET = "test_protocol_unreachable"


def _blocks(language: str) -> dict[str, str]:
    """The guide's code blocks in ``language``, keyed by their first line when it is a
    ``# path`` comment."""
    found: dict[str, str] = {}
    for body in re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), re.S):
        first = body.splitlines()[0]
        if first.startswith("# "):
            found[first[2:].strip()] = body
    return found


def _summary(out: str) -> dict[str, int]:
    lines = [line for line in out.splitlines() if re.search(r"\d+ (passed|skipped|failed)", line)]
    assert lines, out[-3000:]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", lines[-1])}


@pytest.fixture(scope="module")
def shout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """layers-shout, built from the guide and installed with pip into a directory of its own
    (on PYTHONPATH for the commands below; nothing is added to this environment)."""
    python, toml = _blocks("python"), _blocks("toml")
    project = tmp_path_factory.mktemp("layers-shout")
    (project / "layers_shout").mkdir()
    (project / "layers_shout" / "__init__.py").write_text(python["layers_shout/__init__.py"])
    (project / "pyproject.toml").write_text(toml["pyproject.toml"])
    (project / "tests").mkdir()
    conftests = [body for name, body in python.items() if name == "tests/conftest.py"]
    (project / "tests" / "conftest.py").write_text(conftests[0])
    (project / "tests" / "test_shout.py").write_text(python["tests/test_shout.py"])
    site = tmp_path_factory.mktemp("site")
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(project)],
        capture_output=True, text=True, timeout=120,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (site / "layers_shout" / "__init__.py").exists()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get(
        "PYTHONPATH", "")]).rstrip(os.pathsep))
    env.pop("LAYERS_DISABLE_PLUGINS", None)
    return {"project": str(project), **env}


def _run(argv: list[str], env: dict[str, str], cwd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _documented_commands() -> list[str]:
    text = GUIDE.read_text()
    section = text[text.index("### Running it"):text.index("`--dut` takes")]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_guide_shows_the_commands_this_test_runs() -> None:
    commands = _documented_commands()
    assert commands[0] == "pip install 'layers[test]'"  # this environment is that install
    assert [c.removeprefix("sudo ") for c in commands[1:]] == [
        "pytest --pyargs layers.conformance --dut=layers",
        "pytest --pyargs layers.conformance --dut=layers --plugins=arp,ipv4,icmp,shout",
        "pytest --pyargs layers.conformance --dut=linux",
        "pytest --pyargs layers.conformance --dut=all",
    ]


@pytest.mark.slow
def test_every_documented_conformance_command_passes_with_the_example_plugin(
    shout: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in shout.items() if k != "project"}
    for command in _documented_commands()[1:]:
        words = shlex.split(command)
        root = words[0] == "sudo"
        argv = [sys.executable, "-m", *words[1 if root else 0:], "-q", "-p", "no:cacheprovider",
                "-rs"]
        if root:
            argv += ["-k", ROOT_SUBSET]
        proc = _run(argv, env, tmp_path)
        counts = _summary(proc.stdout)
        assert proc.returncode == 0, f"{command}:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
        assert counts.get("failed", 0) == 0 and counts.get("error", 0) == 0, (command, counts)
        assert counts.get("passed", 0) > 0, (command, counts)
        if "--plugins=arp,ipv4,icmp,shout" in command:
            # without udp, the tests that need it skip, naming the capability
            assert "lacks capability udp" in proc.stdout, proc.stdout[-3000:]
            assert counts.get("passed", 0) >= 50, counts


@pytest.mark.slow
def test_the_example_plugin_runs_its_own_documented_tests(shout: dict[str, str]) -> None:
    env = {k: v for k, v in shout.items() if k != "project"}
    project = shout["project"]
    proc = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"],
                env, project)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    counts = _summary(proc.stdout)
    assert counts.get("passed", 0) >= 15 and not counts.get("failed"), counts
    # `sudo pytest --dut=layers,linux`: the kernel does not shout, so those tests skip there
    proc = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                 "--dut=layers,linux", "-k", "shout or test_protocol_unreachable"], env, project)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    if os.geteuid() == 0:
        assert "DUT linux lacks capability shout" in proc.stdout, proc.stdout[-3000:]


def test_the_example_plugin_on_the_command_line(shout: dict[str, str]) -> None:
    """What the guide says a user sees: the plugin listed, its settings checked, its report
    table in netstat (here through Stack.report in a subprocess with the plugin installed)."""
    env = {k: v for k, v in shout.items() if k != "project"}
    layers = [sys.executable, "-m", "layers"]
    listing = _run([*layers, "plugins"], env, shout["project"])
    (row,) = [line for line in listing.stdout.splitlines() if line.startswith("shout")]
    assert row.split()[1:4] == ["0.1.0", "transport", "layers-shout"], row
    bad = _run([*layers, "up", "--link", "tap:lshout0", "--address", "10.0.0.2/24",
                "--set", "shout.max_lenght=9"], env, shout["project"])
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("layers: error: unknown setting shout.max_lenght; known shout "
                                  "settings: shout.max_length")
    script = (
        "from layers.virtual import VirtualNetwork\n"
        "from layers.cli.report import format_netstat\n"
        "net = VirtualNetwork()\n"
        "a, b = net.pair(['arp', 'ipv4', 'icmp', 'shout'])\n"
        "a.ip.send(b.interfaces[0].address, 253, b'hello')\n"
        "net.run_for(1)\n"
        "print(format_netstat(a.report()))\n"
    )
    shown = _run([sys.executable, "-c", script], env, shout["project"])
    assert shown.returncode == 0, shown.stderr
    assert "shout\nanswer\nHELLO" in shown.stdout, shown.stdout
