"""How ``make test`` runs the conformance suite: the suite's tests are imported into this
directory (``test_conformance_*.py``, one per suite module, SQLAlchemy's ``from
sqlalchemy.testing.suite import *`` pattern) and parametrized over every DUT:

* ``layers``: the installed built-in plugins over a memory link on a virtual clock;
* ``linux``: the kernel in a namespace of its own (root; skipped with the reason otherwise);
* ``layers-tap``: the built-in plugins over a TAP bridged to the testbench's TAP (root).

``--dut=...`` narrows that (``pytest tests/conformance --dut=layers``). The same tests run
outside this repository with ``pytest --pyargs layers.conformance --dut=...``.
"""

from __future__ import annotations

import pytest

from layers.conformance.capabilities import CapabilityValue, parse_capability_option
from layers.conformance.fixtures import (  # noqa: F401 - fixtures the suite's tests use
    DUT_KINDS,
    conformance_plugins,
    conformance_settings,
    dut,
    layers_tap_env,
    parametrize_duts,
    tb,
)

# The built-in plugins declare their optional capabilities themselves, through the
# ``layers_capabilities`` hook (answered from their settings); ``--capabilities`` can add more.


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_duts(metafunc, default=DUT_KINDS)


@pytest.fixture(scope="session")
def conformance_capabilities(pytestconfig: pytest.Config) -> dict[str, CapabilityValue]:
    declared: dict[str, CapabilityValue] = {}
    declared.update(parse_capability_option(pytestconfig.getoption("capabilities", None)))
    return declared
