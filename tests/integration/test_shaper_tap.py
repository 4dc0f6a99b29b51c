"""``layers up --shape`` on a TAP against Linux, in real time: the added delay shows in Linux's
ping, the rate in curl's download time, and the queue's counters in ``layers netstat -s``.

Only lower bounds are asserted (a shaped link can never be faster than its configuration);
how much slower a busy machine makes it is not this test's business."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from linux_tools import LayersUp, devname, layers, ping_ok

from layers.netns import NetNamespace

pytestmark = pytest.mark.root

LINUX = "10.82.0.1"
STACK = "10.82.0.2"


def test_up_with_a_shape_adds_its_delay_and_holds_its_rate(
    netns: NetNamespace, layers_up: Callable[..., LayersUp], tmp_path: Any
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "blob").write_bytes(bytes(300_000))
    tap = devname("sh")
    up = layers_up("--link", f"tap:{tap}", "--address", f"{STACK}/24",
                   "--shape", "rate=4mbit,delay=20ms,queue=fq_codel",
                   "--serve", f"http:80:{www}")
    assert "MTU 1500, shaped tx+rx 4 Mbit/s 20 ms fq_codel)" in up.ready_line, up.ready_line
    netns.run(["ip", "addr", "add", f"{LINUX}/24", "dev", tap])

    out = ping_ok(netns, STACK, count=5)
    rtts = [float(x) for x in re.findall(r"time=([0-9.]+) ms", out)]
    assert len(rtts) == 5 and min(rtts) >= 40.0, out  # 20 ms each way, both directions shaped

    started = time.monotonic()
    r = netns.run(["curl", "-sS", "-m", "20", "-o", "/dev/null", "-w", "%{size_download}",
                   f"http://{STACK}/blob"], check=False, timeout=30)
    elapsed = time.monotonic() - started
    assert r.returncode == 0 and r.stdout == "300000", r.stdout + r.stderr
    # 300 kB of payload and its headers at 4 Mbit/s take at least 0.6 s
    assert elapsed >= 0.6, elapsed
    print(f"shaped TAP: ping RTTs {rtts} ms; 300 kB by curl in {elapsed:.2f} s "
          f"({300_000 * 8 / elapsed / 1e6:.2f} Mbit/s of payload at rate=4mbit)")

    r = layers(netns, "netstat", "-s", "--name", tap)
    assert r.returncode == 0, r.stderr
    assert f"shaper {tap} tx (fq_codel):" in r.stdout, r.stdout
    assert f"shaper {tap} rx (fq_codel):" in r.stdout
    delivered = re.search(rf"shaper {tap} tx \(fq_codel\):\n(?:    .*\n)*?    (\d+) bytes "
                          rf"delivered", r.stdout)
    assert delivered and int(delivered.group(1)) > 300_000, r.stdout
    rc, _out, err = up.stop()
    assert rc == 0, err


def test_up_rejects_a_bad_shape_before_touching_a_device(netns: NetNamespace) -> None:
    tap = devname("sh")
    r = layers(netns, "up", "--link", f"tap:{tap}", "--address", f"{STACK}/24",
               "--shape", "rate=100mbps")
    assert r.returncode == 2 and "write 100mbit for bits per second" in r.stderr, r.stderr
    r = layers(netns, "up", "--link", f"tap:{tap}", "--address", f"{STACK}/24",
               "--shape", "rate=1mbit,queue=nosuch")
    assert r.returncode == 2 and "unknown queue discipline 'nosuch'" in r.stderr, r.stderr
    links = netns.run(["ip", "-o", "link", "show"]).stdout
    assert tap not in links, "nothing left behind"
