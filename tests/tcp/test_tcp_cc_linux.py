"""CUBIC and BBR (the layers-cubic and layers-bbr plugins) sending to Linux over a TAP in a
namespace the test makes: a few MiB each, checked by SHA-256 on the Linux side, with and
without random loss (so recovery, undo and timeouts run against a real peer). CUBIC is chosen
for the stack (``tcp.congestion_control``), BBR per connection (``congestion_control=``)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from linux_support import LINUX_IP, PLUGINS, blob, linux_peer, stack_on_tap
from linux_tools import peer_output

from layers.netns import NetNamespace
from layers.streams import open_connection
from layers.telemetry import ConnectionSample

pytestmark = pytest.mark.root

SIZE = 4 << 20


@pytest.mark.parametrize("loss", [0.0, 0.01], ids=["clean", "loss1pct"])
@pytest.mark.parametrize("cc", ["cubic", "bbr"])
def test_transfer_to_linux(netns: NetNamespace, cc: str, loss: float) -> None:
    async def main() -> None:
        settings = {"tcp.congestion_control": "cubic"} if cc == "cubic" else {}
        # transport options, passed through to the connection like open_connection's **options
        options: dict[str, Any] = {"congestion_control": "bbr"} if cc == "bbr" else {}
        faults = {"loss": loss, "seed": 11} if loss else None
        # with loss, MTU-sized frames (no TSO) so that about 1 % of the segments are lost
        async with stack_on_tap(netns, plugins=[*PLUGINS, "cubic", "bbr"], settings=settings,
                                faults=faults, offload=not loss) as stack:
            samples: list[ConnectionSample] = []
            stack.telemetry.subscribe(samples.append)
            port = "7020" if cc == "cubic" else "7021"
            async with linux_peer(netns, ["sink-server", port]) as proc:
                _, writer = await open_connection(stack, LINUX_IP, int(port), **options)
                data = blob(SIZE)
                writer.write(data)
                await writer.drain()
                writer.write_eof()
                n, sha, seconds = await peer_output(proc, 120)
                assert int(n) == SIZE
                assert sha == hashlib.sha256(data).hexdigest()
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 10)
            assert samples and {s.cc for s in samples} == {cc}
            last = samples[-1]
            print(f"\n{cc} loss={loss:.0%}: {SIZE / float(seconds) * 8 / 1e6:.1f} Mbit/s, "
                  f"retransmits {last.retransmits}, state {dict(last.cc_state)}")
            c = stack.counters["tcp"]
            print(f"  counters: RetransSegs {c['RetransSegs']} FastRetransmits "
                  f"{c['FastRetransmits']} RTOs {c['RTOs']}")
            if loss:
                assert last.retransmits > 0 and c["FastRetransmits"] > 0

    asyncio.run(main())
