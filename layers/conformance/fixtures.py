"""The conformance fixtures: ``dut`` and ``tb``, parametrized over the DUTs asked for.

Registered as a pytest plugin by :mod:`layers.conformance.plugin` only when ``--dut`` is given
(or imported into a conftest.py, as our own tests/conformance does), so nothing here touches
other projects' tests.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from layers.conformance.capabilities import (
    CapabilityValue,
    Everything,
    family_of,
    normalise,
    parse_capability_option,
    resolve,
    verdict,
)
from layers.conformance.duts.base import DUT
from layers.loader import parse_plugin_list
from layers.netns import have_root_and_tun

#: the DUT kinds the suite knows
DUT_KINDS = ("layers", "linux", "layers-tap")
ROOT_KINDS = frozenset({"linux", "layers-tap"})


def parse_dut_option(text: str | None) -> list[str]:
    if not text:
        return []
    kinds: list[str] = []
    for raw in text.split(","):
        kind = raw.strip()
        if not kind:
            continue
        if kind == "all":
            kinds.extend(k for k in DUT_KINDS if k not in kinds)
            continue
        if kind not in DUT_KINDS:
            raise pytest.UsageError(
                f"--dut={text}: unknown DUT {kind!r}; choose from {', '.join(DUT_KINDS)} or all"
            )
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def parse_settings_option(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise pytest.UsageError(f"--dut-settings item {item!r} should be KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def configured_kinds(config: pytest.Config) -> list[str]:
    """The DUTs asked for: ``--dut``, else the ini option ``layers_conformance_duts``."""
    kinds = parse_dut_option(config.getoption("dut", None))
    if not kinds:
        try:
            kinds = parse_dut_option(str(config.getini("layers_conformance_duts") or ""))
        except ValueError:  # the plugin's options are not registered
            kinds = []
    return kinds


def parametrize_duts(metafunc: pytest.Metafunc, default: Sequence[str] = ("layers",)) -> None:
    """Parametrize ``dut_kind`` with the DUTs asked for (or ``default``), once per test.

    A conftest.py that imports these fixtures may call it from its own
    ``pytest_generate_tests`` to choose its default DUTs."""
    if "dut_kind" not in metafunc.fixturenames or getattr(metafunc, "_layers_duts", False):
        return
    metafunc._layers_duts = True  # type: ignore[attr-defined]
    kinds = configured_kinds(metafunc.config) or list(default)
    metafunc.parametrize("dut_kind", kinds, scope="function")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_duts(metafunc)


@pytest.fixture(scope="session")
def conformance_plugins(pytestconfig: pytest.Config) -> list[str] | None:
    """The plugins composed into the layers DUTs (``--plugins``; None: all installed).
    Override in a conftest.py to pin them."""
    return parse_plugin_list(pytestconfig.getoption("conformance_plugins", None))


@pytest.fixture(scope="session")
def conformance_settings(pytestconfig: pytest.Config) -> dict[str, Any]:
    """Stack settings for the layers DUTs (``--dut-settings k=v,...``). Override to add."""
    return dict(parse_settings_option(pytestconfig.getoption("dut_settings", None)))


@pytest.fixture(scope="session")
def conformance_capabilities(pytestconfig: pytest.Config) -> dict[str, CapabilityValue]:
    """Capabilities declared by the test run for the layers DUTs (``--capabilities``).

    Override this fixture in your conftest.py to declare capabilities (or known divergences)
    of plugins you test, as SQLAlchemy dialects do with their requirements class."""
    return parse_capability_option(pytestconfig.getoption("capabilities", None))


@functools.lru_cache(maxsize=64)
def _stack_capabilities(
    plugins: tuple[str, ...] | None, settings: tuple[tuple[str, Any], ...]
) -> tuple[tuple[str, CapabilityValue], ...]:
    from layers.stack import Stack

    stack = Stack(list(plugins) if plugins is not None else None, settings=dict(settings),
                  clock=lambda: 0.0, name="capabilities")
    try:
        base: set[str] = set()
        if 0x0806 in stack.network_by_ethertype:
            base.add("arp")
        if 4 in stack.network_by_version:
            base.add("ipv4")
        for number, name in ((1, "icmp"), (17, "udp"), (6, "tcp")):
            if number in stack.transports:
                base.add(name)
        if 6 in stack.network_by_version:
            base.add("ipv6")
            if 58 in stack.transports:
                base.add("icmpv6")
            for number, name in ((17, "udp6"), (6, "tcp6")):
                if 6 in getattr(stack.transports.get(number), "ip_versions", ()):
                    base.add(name)
            if any(135 in getattr(p, "icmpv6_types", ()) for p in stack.protocols.values()):
                base.add("ndp")  # something answers neighbour solicitations
        declared: list[Mapping[str, CapabilityValue]] = []
        hook = getattr(stack.hook, "layers_capabilities", None)
        if hook is not None:
            for impl in hook.get_hookimpls():
                answer = impl.function(stack=stack)
                declared.append(normalise(answer, f"plugin {impl.plugin_name}"))
        return tuple(sorted(resolve(base, *declared).items()))
    finally:
        stack.stop(close_links=False)


def _compose(plugins: Sequence[Any] | None) -> tuple[frozenset[str], frozenset[int]]:
    from layers.stack import Stack

    stack = Stack(list(plugins) if plugins is not None else None, clock=lambda: 0.0,
                  name="composition")
    try:
        return frozenset(stack.settings_registry.declared), frozenset(stack.transports)
    finally:
        stack.stop(close_links=False)


_cached_compose = functools.lru_cache(maxsize=64)(_compose)


def _composition(plugins: Sequence[Any] | None) -> tuple[frozenset[str], frozenset[int]]:
    """(setting prefixes declared, IP protocol numbers claimed) of a stack of ``plugins``."""
    if plugins is None or all(isinstance(p, str) for p in plugins):
        return _cached_compose(tuple(plugins) if plugins is not None else None)
    return _compose(plugins)


def applicable_settings(
    plugins: Sequence[str] | None, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """The test's settings that the plugins composed take: a test's ``@settings({"tcp.ecn":
    1})`` is left out of a DUT without tcp (whose tests then skip for lack of the
    capability), rather than rejected as a setting of a plugin that is not there."""
    declared, _ = _composition(plugins)
    return {k: v for k, v in settings.items() if str(k).partition(".")[0] in declared}


def layers_capabilities(
    plugins: list[str] | None,
    settings: Mapping[str, Any],
    declared: Mapping[str, CapabilityValue],
) -> dict[str, CapabilityValue]:
    """What a layers DUT composed of ``plugins`` with ``settings`` supports."""
    key = tuple(sorted((k, v) for k, v in settings.items()))
    caps = dict(_stack_capabilities(tuple(plugins) if plugins is not None else None, key))
    caps.update(declared)
    return caps


def _marker_settings(node: pytest.Item) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mark in reversed(list(node.iter_markers("layers_settings"))):
        for arg in mark.args:
            out.update(arg)
        out.update(mark.kwargs)
    return out


def _required(node: pytest.Item) -> list[str]:
    names: list[str] = []
    for mark in node.iter_markers("layers_requires"):
        names.extend(mark.args)
    return names


@pytest.fixture(scope="session")
def layers_tap_env() -> Iterator[Any]:
    from layers.conformance.duts.layers_tap import LayersTapEnv

    env = LayersTapEnv()
    try:
        yield env
    finally:
        env.close()


#: settings every IPv6 test's layers DUT starts with unless the test says otherwise: no
#: duplicate address detection, so the address is usable at once (the Linux DUT's is added
#: with accept_dad=0 for the same reason)
IPV6_DEFAULTS: dict[str, Any] = {"ndp.dad_transmits": 0}


@pytest.fixture
def dut(
    request: pytest.FixtureRequest,
    dut_kind: str,
    conformance_plugins: list[str] | None,
    conformance_settings: dict[str, Any],
    conformance_capabilities: dict[str, CapabilityValue],
) -> Iterator[DUT]:
    """The device under test, fresh for each test (the layers-tap stack is recomposed)."""
    node = request.node
    assert isinstance(node, pytest.Item)
    settings = _marker_settings(node)
    ipv6 = family_of(_required(node)) == "ipv6"
    if ipv6 and dut_kind != "linux":
        settings = {**IPV6_DEFAULTS, **settings}
    if dut_kind == "linux":
        caps: Mapping[str, CapabilityValue] = Everything()
    else:
        settings = applicable_settings(conformance_plugins, settings)
        layer_settings = {**conformance_settings, **settings}
        caps = layers_capabilities(conformance_plugins, layer_settings,
                                   conformance_capabilities)
    decision = verdict(caps, _required(node), dut_kind)
    if decision is not None:
        kind, reason = decision
        if kind == "skip":
            pytest.skip(reason)
        node.add_marker(pytest.mark.xfail(strict=True, reason=reason))
    if dut_kind in ROOT_KINDS:
        ok, why = have_root_and_tun()
        if not ok:
            pytest.skip(f"DUT {dut_kind} {why}")
    device: DUT
    if dut_kind == "linux":
        from layers.conformance.duts.linux import make_linux_dut

        device = make_linux_dut(settings, ipv6=ipv6)
    elif dut_kind == "layers":
        from layers.conformance.duts.layers_local import make_layers_local_dut

        device = make_layers_local_dut(
            conformance_plugins, {**conformance_settings, **settings}, caps, ipv6=ipv6)
    else:
        env = request.getfixturevalue("layers_tap_env")
        device = env.dut(conformance_plugins, {**conformance_settings, **settings}, caps,
                         ipv6=ipv6)
    device.has_ipv6 = ipv6
    device.required = frozenset(_required(node))
    if dut_kind != "linux":
        device.claimed_protocols = _composition(conformance_plugins)[1]
    try:
        yield device
    finally:
        device.shutdown_dut()


@pytest.fixture
def tb(dut: DUT) -> Any:
    """The testbench, owning the DUT's link."""
    from layers.conformance.testbench import Testbench

    return Testbench(dut)
