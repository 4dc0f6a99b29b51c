"""layers.netdev against Linux: device state, changes and addresses through pyroute2, the same
handle used synchronously and from a running asyncio loop, in a namespace of the test's own."""

from __future__ import annotations

import asyncio
import errno
import ipaddress

import pytest

from layers.netdev import Netlink
from layers.netns import NetNamespace

pytestmark = pytest.mark.root


def test_netlink_in_a_named_namespace_sync_and_async(netns: NetNamespace) -> None:
    with netns.netlink() as nl:
        assert nl.device("nosuch0") is None and nl.lookup("nosuch0") is None
        nl.create_tuntap("lnd0", "tap", uid=4321)
        dev = nl.device("lnd0")
        assert dev is not None
        assert (dev.kind, dev.tun_type, dev.owner, dev.persistent, dev.up) == (
            "tun", "tap", 4321, True, False)
        nl.set(dev.index, up=True, mtu=9000, mac=bytes.fromhex("020000000042"))
        now = nl.device(dev.index)
        assert now is not None
        assert (now.up, now.mtu, now.mac) == (True, 9000, bytes.fromhex("020000000042"))
        with pytest.raises(Exception) as refused:
            nl.set(dev.index, mtu=20)
        assert getattr(refused.value, "code", None) == errno.EINVAL
        ifa = ipaddress.IPv4Interface("10.87.0.1/24")
        nl.add_address(dev.index, ifa)

        async def from_a_loop() -> tuple[list[ipaddress.IPv4Interface], int | None]:
            seen = await nl.aaddresses(dev.index)
            await nl.adel_address(dev.index, ifa)
            return seen, nl.lookup("lnd0")  # synchronous inside a running loop: a worker thread

        seen, index = asyncio.run(from_a_loop())
        assert seen == [ifa] and index == dev.index
        assert nl.addresses(dev.index) == []
        with Netlink() as here:  # the test process's own namespace: nothing was made there
            assert here.lookup("lnd0") is None
        nl.delete(dev.index)
        assert nl.device("lnd0") is None
