"""Run the layers conformance suite against toyudp.

The suite's fixtures come from layers.conformance.fixtures; two fixtures say what to test:
the plugins to compose (toyudp instead of the built-in udp), and nothing else, since toyudp
declares its own capabilities and divergences through the layers_capabilities hook. The DUT
is our stack over a memory link on a virtual clock unless --dut says otherwise
(--dut=layers,linux adds the Linux kernel as the reference; root).
"""

from __future__ import annotations

import pytest

from layers.conformance.fixtures import (  # noqa: F401 - fixtures the suite's tests use
    conformance_capabilities,
    conformance_settings,
    dut,
    layers_tap_env,
    parametrize_duts,
    tb,
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_duts(metafunc, default=("layers",))


@pytest.fixture(scope="session")
def conformance_plugins() -> list[str]:
    return ["arp", "ipv4", "icmp", "toyudp"]
