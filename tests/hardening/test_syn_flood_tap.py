"""Issue 12's SYN-flood test over a TAP: a spoofed flood of SYNs from Linux's side of the TAP
at tens of thousands per second, while a Linux client opens connections that must all
succeed, and the stack's memory stays flat (synflood_support.py has the set-up; numbers for
longer floods, and for tcp.syncookies=0, come from tests/bench/synflood_bench.py).

Root only (a TAP in a namespace the test makes and deletes). Timings are never asserted: a
loaded host may answer fewer SYNs per second, and the TAP's queue then drops the rest, the
legitimate clients' SYNs among them (Linux retransmits those), so only counts are.
"""

from __future__ import annotations

import asyncio

import pytest
from synflood_support import syn_flood

from layers.netns import NetNamespace

pytestmark = pytest.mark.root

LEGIT = 12
BACKLOG = 64


def test_linux_clients_connect_through_a_spoofed_syn_flood(netns: NetNamespace) -> None:
    run = asyncio.run(syn_flood(netns, syncookies=1, rate=20_000, seconds=2.0, legit=LEGIT,
                                backlog=BACKLOG, connect_timeout=20.0, warmup=0.3))
    summary = run.summary()
    print(summary)
    assert run.flooder["sent"] >= 10_000, summary  # the flood happened (40,000+ when idle)
    assert run.connected == LEGIT, run.failures
    c = run.counters
    # the flood was answered statelessly: its SYN-ACKs are cookies, the SYN queue full
    assert c["SyncookiesSent"] >= 1000, summary
    assert run.syn_queue_after == BACKLOG, summary
    # every legitimate SYN arrived with the SYN queue full, so each client got in through a
    # cookie it returned (and then exchanged data on that connection); nothing forged one
    assert c["SyncookiesRecv"] == LEGIT and c["SyncookiesFailed"] == 0, summary
    assert c["ListenDrops"] == 0 and c["ListenOverflows"] == 0, summary
    # no state per SYN: the connection table and the timer heap hold the SYN queue and the
    # legitimate clients' connections, not the thousands of SYNs answered
    assert run.conns_after <= BACKLOG + LEGIT, summary
    assert run.timers_after <= 2 * (BACKLOG + LEGIT) + 65, summary
    # a half-open connection per answered SYN would be 6.5 kB each (200+ MB for an idle
    # host's 35,000): the flood must cost no memory at all
    assert run.rss_after - run.rss_before < 16, summary


def test_without_cookies_the_same_flood_shuts_linux_clients_out(netns: NetNamespace) -> None:
    run = asyncio.run(syn_flood(netns, syncookies=0, rate=5_000, seconds=1.0, legit=3,
                                backlog=BACKLOG, connect_timeout=1.2, warmup=0.3))
    summary = run.summary()
    print(summary)
    assert run.connected == 0, summary  # the SYN queue is full of spoofed half-open entries
    assert run.dropped > 0 and run.counters["SyncookiesSent"] == 0, summary
    assert run.syn_queue_after == BACKLOG, summary
