"""The echo bookkeeping the icmp and icmpv6 plugins share (``layers.ping.PendingEchoes``),
through both plugins on the virtual clock: one result per request (reply, timeout, or the
stack stopping), and a callback that raises is counted and reported as an internal error while
the stack goes on."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from layers.protocols import EchoReply
from layers.stack import Stack
from layers.virtual import VirtualNetwork
from layers.wire import ip4
from layers.wire.ipv6 import ip6

#: (IP plugins, the echo service's name, our address, the peer's, its address parser)
FAMILIES = {
    "ipv4": (["arp", "ipv4", "icmp"], "icmp", "10.0.0.1/24", "10.0.0.2/24", ip4),
    "ipv6": (["ipv6", "icmpv6", "ndp"], "icmpv6", "2001:db8::1/64", "2001:db8::2/64", ip6),
}
Result = EchoReply | OSError


def pair(family: str, peer_answers: bool = True) -> tuple[VirtualNetwork, Stack, int, str]:
    plugins, service, ours, theirs, parse = FAMILIES[family]
    net = VirtualNetwork()
    settings = {"ndp.dad_transmits": 0} if family == "ipv6" else {}
    a = net.new_stack(plugins, name="a", settings=settings)
    quiet = {f"{service}.echo_ignore_all": not peer_answers}
    b = net.new_stack(plugins, name="b", settings={**settings, **quiet})
    net.link(a, b, addresses=(ours, theirs), latency=0.001)
    a.start()
    b.start()
    net.run_for(0.01)
    return net, a, parse(theirs.split("/")[0]), service


def send(a: Stack, service: str, dst: int, seq: int, callback: Callable[[Result], None],
         timeout: float = 1.0) -> None:
    a.protocol(service).echo(dst, ident=9, seq=seq, payload=b"abc", callback=callback,
                             timeout=timeout)


@pytest.mark.parametrize("family", FAMILIES)
def test_reply_then_nothing_more_and_timeout_when_unanswered(family: str) -> None:
    net, a, dst, service = pair(family)
    got: list[Result] = []
    send(a, service, dst, 1, got.append)
    assert net.run_until_true(lambda: bool(got), timeout=2.0)
    assert isinstance(got[0], EchoReply) and got[0].seq == 1
    net.run_for(3.0)  # the timeout was cancelled
    assert len(got) == 1 and not a.protocol(service).pending

    net, a, dst, service = pair(family, peer_answers=False)
    lost: list[Result] = []
    send(a, service, dst, 2, lost.append, timeout=0.5)
    assert len(a.protocol(service).pending) == 1
    net.run_for(0.49)
    assert lost == []
    net.run_for(0.02)
    (err,) = lost
    assert isinstance(err, TimeoutError) and err.errno == errno.ETIMEDOUT
    assert not a.protocol(service).pending


@pytest.mark.parametrize("family", FAMILIES)
def test_stopping_the_stack_fails_what_waits_with_enetdown(family: str) -> None:
    net, a, dst, service = pair(family, peer_answers=False)
    got: list[Result] = []
    send(a, service, dst, 1, got.append, timeout=30.0)
    send(a, service, dst, 2, got.append, timeout=30.0)
    net.run_for(0.1)
    a.stop()
    assert [e.errno if isinstance(e, OSError) else e for e in got] == [errno.ENETDOWN] * 2
    assert not a.protocol(service).pending
    net.run_for(60.0)  # their timeouts were cancelled
    assert len(got) == 2


@pytest.mark.internal_errors
@pytest.mark.parametrize("family", FAMILIES)
def test_a_raising_callback_is_an_internal_error_and_the_stack_goes_on(family: str) -> None:
    net, a, dst, service = pair(family)

    def broken(result: Result) -> None:
        raise RuntimeError("the application's bug")

    send(a, service, dst, 1, broken)
    counters = a.counter(service)
    assert net.run_until_true(lambda: counters["echo_callback_errors"] == 1, timeout=2.0)
    failure = a.internal_failures[("core", "echo callback")]
    assert failure.count == 1 and "the application's bug" in failure.message
    assert a.counter("stack").drops["internal_error"] == 1
    got: list[Result] = []
    send(a, service, dst, 2, got.append)
    assert net.run_until_true(lambda: bool(got), timeout=2.0)
    assert isinstance(got[0], EchoReply) and got[0].seq == 2
    assert not a.protocol(service).pending
