"""Fixtures for tests that run the stack against Linux inside a namespace of their own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from linux_tools import LayersUp

from layers.netns import NetNamespace


@pytest.fixture
def layers_up(netns: NetNamespace) -> Iterator[Any]:
    """Start ``layers up`` processes in ``netns``; each is stopped (by PID) after the test."""
    started: list[LayersUp] = []

    def start(*args: str, env: dict[str, str] | None = None, wait: bool = True) -> LayersUp:
        up = LayersUp(netns, args, env)
        started.append(up)
        if wait:
            up.wait_ready()
        return up

    try:
        yield start
    finally:
        for up in started:
            if up.proc.poll() is None:
                with contextlib.suppress(Exception):
                    up.stop()


