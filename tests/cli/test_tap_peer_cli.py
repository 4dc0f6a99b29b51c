"""``--peer`` and ``layers tap`` mistakes: one line naming the fix, exit 2, no device touched.
(What they do against Linux: tests/integration/test_pyroute2_cli.py.)"""

from __future__ import annotations

import ipaddress

import pytest

from layers.cli import main
from layers.errors import ConfigurationError
from layers.netdev import HostSide


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["up", "--link", "tap:x0", "--address", "10.0.0.2/24", "--peer", "10.1.0.1/24"],
         "Linux would have no route to the stack's 10.0.0.2"),
        (["up", "--link", "tap:x0", "--address", "10.0.0.2/24", "--peer", "10.0.0.2/24"],
         "is the stack's own address"),
        (["up", "--link", "tap:x0", "--address", "10.0.0.2/24", "--peer", "10.0.0.1"],
         "with its prefix length, e.g. 10.0.0.1/24"),
        (["tap", "create", "x0", "--user", "no-such-user-here"], "no such user"),
        (["tap", "create", "averyveryverylongname"], "at most 15"),
        (["tap", "create", "x0", "--mtu", "20"], "68..65535"),
        (["tap", "create", "x0", "--peer", "10.0.0.1"], "prefix length"),
    ],
)
def test_mistakes_exit_2_naming_the_fix(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err


def test_peer_check_accepts_an_address_in_the_stacks_network() -> None:
    assert HostSide.check("10.0.0.1/24", "10.0.0.2/24") == ipaddress.IPv4Interface("10.0.0.1/24")
    # the fix names a usable address
    with pytest.raises(ConfigurationError, match=r"e\.g\. 10\.0\.0\.1/24"):
        HostSide.check("10.0.0.2/24", "10.0.0.2/24")
