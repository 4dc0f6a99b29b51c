"""Default control sockets are abstract Unix sockets, ``@layers/<interface>``: found by name or
as the only one, listed from /proc/net/unix, gone when the server closes, and guarded by the
peer's credentials on both ends. (Across namespaces: tests/integration/test_pyroute2_cli.py.)"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest

from layers import control
from layers.cli import main
from layers.control import (
    ControlServer,
    NoStackRunning,
    abstract_sockets,
    find_socket,
    parse_address,
    request,
    socket_path,
)
from layers.errors import ConfigurationError
from layers.stack import Stack


def _name() -> str:
    return f"lct{os.getpid() % 100000}"


def test_default_address_is_abstract_and_control_parses_both_kinds() -> None:
    assert socket_path("tap0") == "@layers/tap0"
    assert parse_address("@layers/tap0") == "@layers/tap0"
    assert str(parse_address("/tmp/x.sock")) == "/tmp/x.sock"
    with pytest.raises(ConfigurationError, match="abstract name"):
        parse_address("@")


def test_abstract_socket_served_found_listed_and_released(
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = _name()
    address = socket_path(name)

    async def scenario() -> tuple[list[str], Any, dict[str, Any], int]:
        loop = asyncio.get_running_loop()
        stack = Stack(["arp", "ipv4"], clock=loop.time, name=name)
        server = await ControlServer.start(stack, address, {"interface": name})
        try:
            with pytest.raises(ConfigurationError, match="already running"):
                await ControlServer.start(stack, address)
            listed = abstract_sockets()
            found = find_socket(name=name)
            response = await asyncio.to_thread(request, found, "hello")
            code = await asyncio.to_thread(main, ["routes", "--name", name])
            return listed, found, response, code
        finally:
            await server.close()
            stack.stop()

    listed, found, response, code = asyncio.run(scenario())
    assert address in listed
    assert found == address
    assert response["name"] == name and response["pid"] == os.getpid()
    assert code == 0 and "Destination" in capsys.readouterr().out
    assert address not in abstract_sockets(), "closing the server releases the name"
    with pytest.raises(NoStackRunning, match=f"no layers stack is running on {name}"):
        find_socket(name=name)
    with pytest.raises(NoStackRunning, match="in this network namespace"):
        request(address)


def test_credentials_are_checked_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    name = _name() + "c"
    address = socket_path(name)

    async def scenario() -> str:
        loop = asyncio.get_running_loop()
        stack = Stack([], clock=loop.time, name=name)
        server = await ControlServer.start(stack, address)
        try:
            # the server sees a client of another user (not root): it refuses
            monkeypatch.setattr(control, "peer_uid", lambda sock: 4242)
            with pytest.raises(ConfigurationError, match="uid 4242 may not read"):
                await asyncio.to_thread(request, address, "hello")
            # a non-root client sees a server of yet another user: it does not ask
            monkeypatch.setattr(control.os, "geteuid", lambda: 1000)
            with pytest.raises(ConfigurationError, match="served by uid 4242, neither you nor"):
                await asyncio.to_thread(request, address, "hello")
            return "ok"
        finally:
            monkeypatch.undo()
            await server.close()

    assert asyncio.run(scenario()) == "ok"


def test_a_name_taken_by_a_plain_socket_is_reported_busy() -> None:
    name = _name() + "b"
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    squatter.bind("\0layers/" + name)
    squatter.listen()

    async def scenario() -> None:
        stack = Stack([], clock=asyncio.get_running_loop().time, name=name)
        with pytest.raises(ConfigurationError, match=r"already running.*--control"):
            await ControlServer.start(stack, socket_path(name))

    try:
        asyncio.run(scenario())
    finally:
        squatter.close()
