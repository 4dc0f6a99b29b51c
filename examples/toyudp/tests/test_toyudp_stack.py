"""toyudp's own tests: composition next to the built-in udp."""

from __future__ import annotations

import pytest
from layers_toyudp import ToyUDP

from layers.errors import CompositionError
from layers.stack import Stack


def test_selected_by_name_it_serves_udp() -> None:
    stack = Stack(["arp", "ipv4", "icmp", "toyudp"])
    assert isinstance(stack.transports[17], ToyUDP)


def test_opt_in_keeps_it_out_of_default_stacks() -> None:
    stack = Stack()
    assert not isinstance(stack.transports.get(17), ToyUDP)


def test_two_udps_in_one_stack_is_a_composition_error() -> None:
    with pytest.raises(CompositionError, match="17"):
        Stack(["ipv4", "udp", "toyudp"])
