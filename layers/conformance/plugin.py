"""The pytest plugin of the conformance suite (entry point ``pytest11``: layers-conformance).

Inert unless asked for: it only adds command-line options and marker names. With ``--dut`` it
registers the fixtures (:mod:`layers.conformance.fixtures`), which then run the suite::

    pytest --pyargs layers.conformance --dut=linux
    pytest --pyargs layers.conformance --dut=layers --plugins=arp,ipv4,icmp,udp,mytcp
    pytest --pyargs layers.conformance --dut=layers,linux,layers-tap   # all three, side by side
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("layers-conformance", "layers conformance suite")
    group.addoption(
        "--dut", default=None, metavar="KINDS",
        help="run the layers conformance suite against these DUTs, comma-separated: layers "
             "(our stack over a memory link, virtual clock), linux (the kernel in a namespace; "
             "root), layers-tap (our stack over a TAP; root), or all",
    )
    group.addoption(
        "--plugins", dest="conformance_plugins", default=None, metavar="NAMES",
        help="layers plugins composed into the layers DUTs (entry-point names, comma-separated;"
             " default: all installed)",
    )
    group.addoption(
        "--dut-settings", dest="dut_settings", default=None, metavar="K=V,...",
        help="stack settings for the layers DUTs, e.g. tcp.sack=true",
    )
    group.addoption(
        "--capabilities", dest="capabilities", default=None, metavar="CAPS",
        help="declare capabilities of the layers DUTs: NAME (supported), -NAME (not), "
             "NAME=reason (a known divergence: strict xfail)",
    )


    parser.addini(
        "layers_conformance_duts",
        "DUTs the layers conformance suite runs against when --dut is not given (setting it "
        "turns the suite's fixtures on, as --dut does)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "layers_requires(*capabilities): the conformance capabilities a test needs")
    config.addinivalue_line(
        "markers", "layers_settings(mapping): stack settings (and their Linux sysctl "
                   "equivalents) the DUT of a conformance test starts with")
    if config.getoption("dut", None) or config.getini("layers_conformance_duts"):
        from layers.conformance import fixtures

        fixtures.configured_kinds(config)  # a bad --dut is a usage error now, not later
        if not config.pluginmanager.has_plugin("layers-conformance-fixtures"):
            config.pluginmanager.register(fixtures, "layers-conformance-fixtures")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Suite tests collected with no DUT to run against: say how to give one."""
    for item in items:
        fn = getattr(item, "function", None)
        if not getattr(fn, "__module__", "").startswith("layers.conformance.suite"):
            continue
        info = getattr(item, "_fixtureinfo", None)
        if info is not None and "dut" not in info.name2fixturedefs:
            raise pytest.UsageError(
                "the layers conformance suite needs a device under test: add --dut=layers "
                "(our stack), --dut=linux (the kernel, root) or --dut=all"
            )
