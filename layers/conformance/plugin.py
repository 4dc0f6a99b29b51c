"""The pytest plugin of the conformance suite (entry point ``pytest11``: layers-conformance).

Inert unless asked for: it only adds command-line options and marker names. With ``--dut`` it
registers the fixtures (:mod:`layers.conformance.fixtures`), which then run the suite::

    pytest --pyargs layers.conformance --dut=linux
    pytest --pyargs layers.conformance --dut=layers --plugins=arp,ipv4,icmp,udp,mytcp
    pytest --pyargs layers.conformance --dut=layers,linux,layers-tap   # all three, side by side

Every suite test is also marked with its address family, ``ipv4`` or ``ipv6`` (from the
capabilities it requires: :func:`layers.conformance.capabilities.family_of`), so ``-m ipv6``
selects the IPv6 tests, and the terminal summary counts outcomes per family and DUT.
"""

from __future__ import annotations

from collections import Counter

import pytest

#: the user property that carries "family:dut" from a suite test to its reports
_PROPERTY = "layers_conformance"


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
    config.addinivalue_line("markers", "ipv4: a conformance test of the IPv4 family")
    config.addinivalue_line("markers", "ipv6: a conformance test of the IPv6 family")
    if config.getoption("dut", None) or config.getini("layers_conformance_duts"):
        from layers.conformance import fixtures

        fixtures.configured_kinds(config)  # a bad --dut is a usage error now, not later
        if not config.pluginmanager.has_plugin("layers-conformance-fixtures"):
            config.pluginmanager.register(fixtures, "layers-conformance-fixtures")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the family marker added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each suite test with its family; suite tests collected with no DUT to run
    against: say how to give one."""
    from layers.conformance.capabilities import family_of

    for item in items:
        fn = getattr(item, "function", None)
        if not getattr(fn, "__module__", "").startswith("layers.conformance.suite"):
            continue
        required = [n for m in item.iter_markers("layers_requires") for n in m.args]
        family = family_of(required)
        item.add_marker(family)
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("dut_kind", "?") if callspec is not None else "?"
        item.user_properties.append((_PROPERTY, f"{family}:{kind}"))
        info = getattr(item, "_fixtureinfo", None)
        if info is not None and "dut" not in info.name2fixturedefs:
            raise pytest.UsageError(
                "the layers conformance suite needs a device under test: add --dut=layers "
                "(our stack), --dut=linux (the kernel, root) or --dut=all"
            )


_COUNTS = pytest.StashKey["Counter[tuple[str, str, str]]"]()
_SEEN = pytest.StashKey[set[tuple[str, str]]]()


def pytest_report_teststatus(
    report: pytest.CollectReport | pytest.TestReport, config: pytest.Config
) -> None:
    """Count each suite test's outcome by family and DUT (answers nothing: the status
    shown is pytest's own)."""
    if not isinstance(report, pytest.TestReport):
        return
    tag = next((v for k, v in report.user_properties if k == _PROPERTY), None)
    if tag is None:
        return
    seen = config.stash.setdefault(_SEEN, set())
    if (report.nodeid, report.when) in seen:  # -ra's summary asks again
        return
    seen.add((report.nodeid, report.when))
    family, _, kind = str(tag).partition(":")
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    elif report.when == "call" or (report.when == "setup" and report.skipped):
        outcome = report.outcome
    elif report.failed:  # setup or teardown
        outcome = "error"
    else:
        return
    config.stash.setdefault(_COUNTS, Counter())[(family, kind, outcome)] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The conformance outcomes per family and DUT (the closing note's table)."""
    tr = terminalreporter
    counts = tr.config.stash.get(_COUNTS, None)
    if not counts:
        return
    tr.section("layers conformance per family")
    outcomes = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
    tr.write_line(f"{'family':8} {'dut':12} " + " ".join(f"{o:>8}" for o in outcomes))
    for family, kind in sorted({(f, k) for f, k, _ in counts}):
        row = " ".join(f"{counts[(family, kind, o)]:>8}" for o in outcomes)
        tr.write_line(f"{family:8} {kind:12} {row}")
