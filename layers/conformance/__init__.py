"""The layers conformance suite: the same pytest tests against Linux, our plugins and yours.

::

    pytest --pyargs layers.conformance --dut=linux            # the reference (root)
    pytest --pyargs layers.conformance --dut=layers           # the installed plugins
    pytest --pyargs layers.conformance --dut=layers --plugins=arp,ipv4,icmp,udp,mytcp

Modelled on gVisor's packetimpact: a *testbench* owns the link to the device under test (DUT),
sends crafted frames and expects frames (or their absence) within time windows; the DUT is
driven through socket-like operations. Capabilities are declared and required in the style of
SQLAlchemy's third-party suite. CONTRIBUTING.md ("Testing a plugin with the conformance
suite") is the guide for plugin authors.

Parts: :mod:`.plugin` (the pytest11 entry point, inert unless ``--dut`` is given),
:mod:`.fixtures` (``dut``, ``tb``), :mod:`.capabilities` (``requires``), :mod:`.testbench`
(templates and expectations), :mod:`.tcp` (a TCP peer with relative sequence numbers),
:mod:`.media` (virtual and TAP wires), :mod:`.duts` (Linux, layers over memory, layers over
TAP), and the tests in :mod:`.suite`.
"""

from __future__ import annotations

from typing import Any

import pytest

from layers.conformance.capabilities import CAPABILITIES, register_capability, requires


def settings(mapping: dict[str, Any] | None = None, **kw: Any) -> pytest.MarkDecorator:
    """Start the DUT with these stack settings (mapped to sysctls on Linux):
    ``@settings({"ipv4.reasm_timeout": 1})``."""
    return pytest.mark.layers_settings({**(mapping or {}), **kw})


__all__ = ["CAPABILITIES", "register_capability", "requires", "settings"]
