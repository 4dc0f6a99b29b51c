"""Settings are declared by the plugins that read them and checked once for every plugin: an
unknown key is an error listing the known ones, whoever owns the prefix (ours, a third party's,
a congestion control's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from layers import CompositionError, ConfigurationError, Stack, hookimpl
from layers.cli import main
from layers.congestion import CongestionControlBase, CongestionControlInfo
from layers.settings import convert_setting, parse_port_range, read_settings

ALL = ["arp", "ipv4", "icmp", "udp", "tcp"]


def test_a_misspelt_key_names_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        Stack(ALL, settings={"tcp.congestion_contrl": "aimd"})
    message = str(info.value)
    assert message.startswith("unknown setting tcp.congestion_contrl; known tcp settings: ")
    assert "tcp.congestion_control" in message and "tcp.msl" in message
    assert "tcp.port_min" not in message  # derived values are not settings


@pytest.mark.parametrize(("plugin", "known"), [
    ("arp", "arp.timeout"), ("ipv4", "ipv4.ttl"), ("icmp", "icmp.ratemask"),
    ("udp", "udp.port_range"), ("tcp", "tcp.sack"),
])
def test_every_plugin_rejects_unknown_keys_the_same_way(plugin: str, known: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"unknown setting {plugin}\.nosuch; "
                                                 rf"known {plugin} settings: .*{known}"):
        Stack(ALL, settings={f"{plugin}.nosuch": "1"})


@pytest.mark.parametrize(("key", "value", "why"), [
    ("ipv4.ttl", "abc", "ipv4.ttl='abc' should be an integer"),
    ("ipv4.ttl", "300", "must be 1..255"),
    ("arp.accept_gratuitous", "perhaps", "should be true or false"),
    ("udp.port_range", "9-1", "udp.port_range='9-1' should be LOW-HIGH"),
    ("tcp.port_range", "x", "tcp.port_range='x' should be LOW-HIGH"),
    ("udp.port_seed", "seven", "udp.port_seed='seven' is not valid"),
    ("icmp.error_max_length", "20", "must be in 68..65535"),
])
def test_bad_values_are_named(key: str, value: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=why):
        Stack(ALL, settings={key: value})


def test_values_are_converted_to_their_defaults_types() -> None:
    s = Stack(ALL, settings={"icmp.ratemask": "0x18", "udp.port_seed": "7", "ipv4.ttl": "9",
                             r"tcp.sack": "off", "udp.port_range": "40000-40010"})
    assert s.protocol("icmp").ratemask == 0x18
    assert s.protocol("udp").settings.port_seed == 7
    assert s.protocol("udp").port_range == (40000, 40010)
    assert s.protocol("ipv4").ttl == 9
    assert s.protocol("tcp").settings.sack is False
    assert convert_setting("k", 2.0, 1) == 2
    with pytest.raises(ConfigurationError, match=r"should be an integer"):
        convert_setting("k", 2.5, 1)
    assert parse_port_range(" 1 - 2 ", "k") == (1, 2)


def test_settings_of_a_plugin_not_composed_say_which_to_add() -> None:
    with pytest.raises(ConfigurationError, match=r"tcp.msl is for the tcp plugin, which is not "
                                                 r"composed.*add tcp to --plugins"):
        Stack(["arp", "ipv4"], settings={"tcp.msl": "5"})
    with pytest.raises(ConfigurationError, match=r"unknown setting nosuch.key: no composed "
                                                 r"plugin takes nosuch\.\* settings"):
        Stack(["arp", "ipv4"], settings={"nosuch.key": "5"})
    with pytest.raises(ConfigurationError, match=r"should be PLUGIN.KEY"):
        Stack(["arp", "ipv4"], settings={"timeout": "5"})


@attrs.frozen
class ShoutSettings:
    repeat: int = 1
    loud: bool = False

    def validate(self) -> None:
        if self.repeat < 1:
            raise ConfigurationError(f"setting shout.repeat={self.repeat} must be >= 1")


class Shout:
    r"""A third-party plugin that declares and reads its own settings."""

    def __init__(self) -> None:
        self.read: ShoutSettings | None = None

    @hookimpl
    def layers_settings(self, stack: Stack) -> Mapping[str, Any]:
        return {"shout": ShoutSettings}

    @hookimpl
    def layers_stack_started(self, stack: Stack) -> None:
        self.read = read_settings(stack, "shout", ShoutSettings)


def test_a_third_party_plugin_declares_and_reads_its_settings() -> None:
    plugin = Shout()
    stack = Stack([plugin], settings={"shout.repeat": "3", "shout.loud": "yes"})
    stack.start()
    assert plugin.read == ShoutSettings(repeat=3, loud=True)
    assert stack.settings_registry.owner("shout") == "Shout"
    with pytest.raises(ConfigurationError, match=r"known shout settings: shout.loud, "
                                                 r"shout.repeat"):
        Stack([Shout()], settings={"shout.rpeat": "3"})
    bad = Stack([Shout()], settings={"shout.repeat": "0"})
    with pytest.raises(ConfigurationError, match=r"shout.repeat=0 must be >= 1"):
        bad.start()


def test_two_plugins_cannot_own_one_prefix() -> None:
    class Other:
        @hookimpl
        def layers_settings(self, stack: Stack) -> Mapping[str, Any]:
            return {"shout": {"volume": 11}}

    with pytest.raises(CompositionError, match=r"both declare the settings shout"):
        Stack([Shout(), Other()])


def test_keys_declared_at_composition_time_by_the_plugin_itself() -> None:
    r"""A plugin whose keys depend on the composition declares them from a composition hook."""

    class Dynamic:
        @hookimpl
        def layers_transport_protocols(self, stack: Stack) -> list[object]:
            stack.settings_registry.declare("dyn", {"a": 1, "b": "x"}, owner="Dynamic")
            assert read_settings(stack, "dyn", {"a": 1, "b": "x"}) == {"a": 2, "b": "x"}
            return []

    Stack([Dynamic()], settings={"dyn.a": "2"})
    with pytest.raises(ConfigurationError, match=r"unknown setting dyn.c; known dyn settings: "
                                                 r"dyn.a, dyn.b"):
        Stack([Dynamic()], settings={"dyn.c": "2"})


class Toy(CongestionControlBase):
    pass


class ToyPlugin:
    @hookimpl
    def layers_congestion_controls(self) -> Mapping[str, CongestionControlInfo]:
        return {"toy": CongestionControlInfo(name="toy", factory=Toy, settings={"gain": 2.0})}


def test_congestion_control_settings_are_declared_under_the_algorithm_name() -> None:
    stack = Stack(["arp", "ipv4", ToyPlugin()], settings={"toy.gain": "3"})
    assert stack.settings_registry.owner("toy") == "ToyPlugin"
    with pytest.raises(ConfigurationError, match=r"unknown setting toy.gian; known toy "
                                                 r"settings: toy.gain"):
        Stack(["arp", "ipv4", ToyPlugin()], settings={"toy.gian": "3"})
    with pytest.raises(ConfigurationError, match=r"toy.gain='fast' should be a number"):
        Stack(["arp", "ipv4", ToyPlugin()], settings={"toy.gain": "fast"})


def test_the_command_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["up", "--link", "tap:lsettings0", "--address", "10.0.0.2/24",
            r"--set", "tcp.congestion_contrl=aimd"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("layers: error: unknown setting tcp.congestion_contrl; known tcp "
                          r"settings: ")
