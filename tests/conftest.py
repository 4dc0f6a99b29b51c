"""Shared fixtures. Root-only tests use ``netns``: a fresh namespace, always deleted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from layers.netns import NetNamespace, have_root_and_tun
from layers.stack import watch_stacks
from layers.virtual import VirtualNetwork

ROOT_OK, ROOT_WHY = have_root_and_tun()
needs_root = pytest.mark.skipif(not ROOT_OK, reason=ROOT_WHY or "root available")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("root") and not ROOT_OK:
            item.add_marker(pytest.mark.skip(reason=ROOT_WHY))


@pytest.fixture(autouse=True)
def _no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every internal error is a bug: a test fails when any stack it created (in this
    process) caught one, or saw a plugin raise where the stack went on. A test that provokes
    them on purpose says so with ``@pytest.mark.internal_errors``."""
    with watch_stacks() as stacks:
        yield
    if request.node.get_closest_marker("internal_errors"):
        return
    found = [f"{stack.name}: {failure.message} [{failure.count}x]"
             for stack in stacks
             for failure in (*stack.internal_failures.values(), *stack.plugin_failures.values())]
    if found:
        pytest.fail("internal errors caught by the stacks of this test:\n  " + "\n  ".join(found),
                    pytrace=False)


@pytest.fixture
def netns() -> Iterator[NetNamespace]:
    """A new network namespace (no uplink), deleted after the test even when it fails."""
    if not ROOT_OK:
        pytest.skip(ROOT_WHY)
    ns = NetNamespace(prefix="layers-test")
    ns.create()
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
def vnet() -> VirtualNetwork:
    """A virtual-clock network to put stacks on."""
    return VirtualNetwork()
