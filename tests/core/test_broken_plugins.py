"""A broken plugin is named, not a traceback: a hook raising while the stack is composed, on
every frame, in a report or while stopping, and a plugin whose import fails. Each message
names the plugin and its distribution, says what it did and how to run without it."""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from layers import PluginError, Stack, hookimpl
from layers.cli import main
from layers.cli.report import format_arp, format_netstat
from layers.frame import Frame
from layers.protocols import EchoReply, EchoService
from layers.virtual import VirtualNetwork
from layers.wire.addr import ip4

#: every test here breaks a plugin on purpose (tests/conftest.py fails a test otherwise)
pytestmark = pytest.mark.internal_errors

BASE = ["arp", "ipv4", "icmp"]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Installs a plugin distribution ``layers-NAME 0.1.0`` (a module and its dist-info with
    an entry point in group ``layers``) on sys.path, as pip would, for this test only."""
    modules: list[str] = []

    def _install(name: str, source: str) -> None:
        module = f"layers_{name}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"layers_{name}-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: layers-{name}\nVersion: 0.1.0\n")
        (info / "entry_points.txt").write_text(f"[layers]\n{name} = {module}\n")
        modules.append(module)

    monkeypatch.syspath_prepend(str(tmp_path))
    yield _install
    for module in modules:
        sys.modules.pop(module, None)


RAISES_WHILE_COMPOSING = """
    from layers import hookimpl

    LAYERS_OPT_IN = True

    @hookimpl
    def layers_transport_protocols(stack):
        return [1 / 0]
"""


def test_a_hook_raising_while_composing_is_one_line_naming_the_plugin(
    install: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    install("crashy", RAISES_WHILE_COMPOSING)
    with pytest.raises(PluginError) as info:
        Stack([*BASE, "crashy"])
    assert info.value.plugin == "crashy" and info.value.distribution == "layers-crashy 0.1.0"
    argv = ["up", "--link", "tap:lbroken0", "--address", "10.0.0.2/24",
            "--plugins", "arp,ipv4,crashy"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(
        "layers: error: plugin 'crashy' (layers-crashy 0.1.0) failed in its "
        "layers_transport_protocols hook: ZeroDivisionError: division by zero at ")
    assert "layers_crashy.py:" in err
    assert err.endswith("run without it: LAYERS_DISABLE_PLUGINS=crashy (or leave it out of "
                        "--plugins)")


def test_a_plugin_whose_import_fails_is_named_not_blamed_on_layers(
    install: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    install("noimp", "import layers_nosuchdependency\n")
    argv = ["up", "--link", "tap:lbroken0", "--address", "10.0.0.2/24"]
    assert main(argv) == 2  # the default selection imports every installed plugin
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "layers: error: plugin 'noimp' (layers-noimp 0.1.0) failed in importing it: "
        "ModuleNotFoundError: No module named 'layers_nosuchdependency'")
    assert "LAYERS_DISABLE_PLUGINS=noimp" in err and "make venv" not in err
    # the fix the message gives works
    monkeypatch.setenv("LAYERS_DISABLE_PLUGINS", "noimp")
    assert "noimp" not in Stack().plugin_names
    assert main(["plugins"]) == 0
    listing = capsys.readouterr().out
    (row,) = [line for line in listing.splitlines() if line.startswith("noimp")]
    assert "broken: No module named 'layers_nosuchdependency'" in row and "disabled" in row


def test_an_ad_hoc_plugin_raising_is_named_too() -> None:
    class Faulty:
        @hookimpl
        def layers_network_protocols(self, stack: Stack) -> list[object]:
            raise RuntimeError("cannot build")

    with pytest.raises(PluginError, match="plugin 'Faulty' \\(not installed: registered by "
                                          "the caller\\) failed in its "
                                          "layers_network_protocols hook: RuntimeError: "
                                          "cannot build"):
        Stack(["ipv4", Faulty()])


class FailingTap:
    """Raises on every frame, before and after the core handles it."""

    def __init__(self, when: str) -> None:
        self.when = when
        self.calls = 0

    @hookimpl(wrapper=True)
    def layers_frame_received(self, stack: Stack, frame: Frame) -> Generator[None, None, None]:
        self.calls += 1
        if self.when == "before":
            raise KeyError("no such flow")
        yield
        raise KeyError("no such flow")

    @hookimpl(wrapper=True)
    def layers_frame_sending(self, stack: Stack, frame: Frame) -> Generator[None, None, None]:
        if self.when == "before":
            raise KeyError("no such flow")
        yield


def _ping(vnet: VirtualNetwork, a: Stack, dst: str, count: int) -> list[EchoReply | OSError]:
    got: list[EchoReply | OSError] = []
    echo = a.find(EchoService)  # type: ignore[type-abstract]
    assert echo is not None
    for seq in range(count):
        echo.echo(ip4(dst), ident=7, seq=seq, payload=b"x", callback=got.append)
        vnet.run_for(0.5)
    return got


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_per_frame_hook_failing_every_frame_is_counted_and_reported_once(
    vnet: VirtualNetwork, when: str, caplog: pytest.LogCaptureFixture
) -> None:
    tap = FailingTap(when)
    a = vnet.new_stack(BASE)
    b = vnet.new_stack([*BASE, tap])
    vnet.link(a, b, addresses=("10.0.0.1/24", "10.0.0.2/24"))
    for s in (a, b):
        s.start()
    with caplog.at_level(logging.ERROR, logger="layers"):
        replies = _ping(vnet, a, "10.0.0.2", 5)
    assert all(isinstance(r, EchoReply) for r in replies) and len(replies) == 5
    failures = b.report()["plugin_errors"]
    received = [f for f in failures if "layers_frame_received" in f["doing"]]
    assert received[0]["plugin"] == "FailingTap" and received[0]["count"] == tap.calls >= 6
    assert b.counters["stack"]["plugin_errors"] == sum(f["count"] for f in failures)
    logged = [r.getMessage() for r in caplog.records if "FailingTap" in r.getMessage()]
    assert len(logged) == len(failures)  # once per plugin and hook, not per frame
    assert "KeyError: 'no such flow'" in logged[0] and "reported once" in logged[0]
    assert "plugin 'FailingTap'" in format_netstat(b.report())


class FailingReport:
    @hookimpl
    def layers_report(self, stack: Stack) -> Mapping[str, Any]:
        raise ValueError("report table broke")

    @hookimpl
    def layers_stack_stopping(self, stack: Stack) -> None:
        raise ValueError("cannot stop")


class ExtraTable:
    @hookimpl
    def layers_report(self, stack: Stack) -> Mapping[str, Any]:
        return {"flows": [{"flow": 1, "bytes": 1500}, {"flow": 2, "bytes": 9000, "note": "x"}]}


def test_a_failing_report_hook_leaves_netstat_and_arp_working(vnet: VirtualNetwork) -> None:
    a, _b = vnet.pair([*BASE, FailingReport(), ExtraTable()])
    _ping(vnet, a, "10.0.0.2", 1)
    report = a.report()
    assert report["arp"][0]["address"] == "10.0.0.2"  # arp's own table is still there
    text = format_netstat(report)
    assert "plugin 'FailingReport'" in text and "ValueError: report table broke" in text
    assert "flows\nflow  bytes  note\n1     1500\n2     9000   x" in text  # a plugin's table
    assert "10.0.0.2" in format_arp(report)
    a.stop()  # a failing stop hook does not keep the others from stopping
    assert not a.running and a.report()["plugin_errors"][-1]["doing"] == (
        "its layers_stack_stopping hook")
