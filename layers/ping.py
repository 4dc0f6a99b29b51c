"""ICMP echo from a running stack, as ``async for``, plus iputils-style statistics.

::

    async with running_stack([("tap:tap0", "10.0.0.2/24")]) as stack:
        results = []
        async for r in ping(stack, "10.0.0.1", count=3, interval=0.2):
            print(r)                  # 64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=0.081 ms
            results.append(r)
        print(summarize(results))     # 3 packets transmitted, 3 received, 0% packet loss, ...

The echo requests go through whatever protocol implements
:class:`~layers.protocols.EchoService` in the stack (the icmp plugin does); the core never
imports a plugin. The stack must be driven by :class:`~layers.runtime.AsyncioRunner` (its clock
is ``loop.time``), since ``ping`` waits on the asyncio loop.

An echo service keeps its requests waiting for an answer in a :class:`PendingEchoes` (the icmp
and icmpv6 plugins do): one result for each, a timeout on the stack's clock, callbacks that
raise reported as internal errors.
"""

from __future__ import annotations

import asyncio
import errno as _errno
import math
import os
import random
from collections.abc import AsyncIterator, Iterable, Iterator

import attrs

from layers.counters import Counters
from layers.errors import CompositionError, ConfigurationError, os_error
from layers.protocols import EchoCallback, EchoReply, EchoService
from layers.stack import Stack
from layers.timers import Timer
from layers.wire.ipv6 import ip_any, ip_str, is_ip6_int

#: ICMP destination-unreachable codes as iputils ping words them
_UNREACH_TEXT = {
    0: "Destination Net Unreachable",
    1: "Destination Host Unreachable",
    2: "Destination Protocol Unreachable",
    3: "Destination Port Unreachable",
    4: "Frag needed and DF set",
    5: "Source Route Failed",
    6: "Destination Net Unknown",
    7: "Destination Host Unknown",
    8: "Source Host Isolated",
    9: "Destination Net Prohibited",
    10: "Destination Host Prohibited",
    11: "Destination Net Unreachable for Type of Service",
    12: "Destination Host Unreachable for Type of Service",
    13: "Packet filtered",
    14: "Precedence Violation",
    15: "Precedence Cutoff",
}
#: extra seconds past the last expected answer before ping stops waiting on a silent stack
_GUARD = 1.0


@attrs.frozen
class PingResult:
    """What became of one echo request: a ``reply`` or an ``error`` (never both)."""

    dst: int
    seq: int
    #: the ICMP message length sent (header included), as ping prints "64 bytes from"
    size: int
    #: stack times the request left and the answer (or the error) came
    sent: float
    done: float
    reply: EchoReply | None = None
    error: OSError | None = None

    @property
    def ok(self) -> bool:
        return self.reply is not None

    @property
    def src(self) -> int:
        """Who answered: the replying host, the ICMP error's sender, or ``dst``."""
        if self.reply is not None:
            return self.reply.src
        reporter = getattr(self.error, "reporter", None)
        return reporter if isinstance(reporter, int) and reporter else self.dst

    @property
    def rtt(self) -> float | None:
        return self.reply.rtt if self.reply is not None else None

    @property
    def ttl(self) -> int | None:
        return self.reply.ttl if self.reply is not None else None

    def __str__(self) -> str:
        r = self.reply
        if r is not None:
            return (
                f"{r.size} bytes from {ip_str(r.src)}: icmp_seq={self.seq} ttl={r.ttl} "
                f"time={r.rtt * 1000:.3f} ms"
            )
        err = self.error
        if isinstance(err, TimeoutError):
            return f"no answer yet for icmp_seq={self.seq}"
        icmp_type = getattr(err, "icmp_type", None)
        code = getattr(err, "icmp_code", None) or 0
        if icmp_type == 3:
            text = _UNREACH_TEXT.get(code, f"Dest Unreachable, Bad Code: {code}")
        elif icmp_type == 11:
            text = "Time to live exceeded" if code == 0 else "Frag reassembly time exceeded"
        elif icmp_type == 12:
            text = "Parameter problem"
        elif err is not None and err.errno == _errno.EHOSTUNREACH:
            text = "Destination Host Unreachable"
        else:
            text = os.strerror(err.errno) if err is not None and err.errno else str(err)
        return f"From {ip_str(self.src)} icmp_seq={self.seq} {text}"


@attrs.frozen
class PingSummary:
    """iputils ping's closing statistics. Times are in seconds; ``loss`` is a percentage."""

    transmitted: int
    received: int
    errors: int
    loss: float
    time: float
    rtt_min: float | None = None
    rtt_avg: float | None = None
    rtt_max: float | None = None
    rtt_mdev: float | None = None

    def __str__(self) -> str:
        line = f"{self.transmitted} packets transmitted, {self.received} received"
        if self.errors:
            line += f", +{self.errors} errors"
        if self.transmitted:
            line += f", {self.loss:g}% packet loss, time {round(self.time * 1000)}ms"
        if self.rtt_min is None:
            return line
        parts = (self.rtt_min, self.rtt_avg, self.rtt_max, self.rtt_mdev)
        return line + "\nrtt min/avg/max/mdev = " + "/".join(
            f"{(p or 0.0) * 1000:.3f}" for p in parts
        ) + " ms"


def summarize(results: Iterable[PingResult]) -> PingSummary:
    """Statistics over ping results: one result per request transmitted.

    ``mdev`` is iputils' ``sqrt(mean(rtt**2) - mean(rtt)**2)``; ``errors`` counts ICMP errors
    and local failures (not timeouts); ``time`` runs from the first request to the last answer.
    """
    results = list(results)
    transmitted = len(results)
    rtts = [r.reply.rtt for r in results if r.reply is not None]
    received = len(rtts)
    errors = sum(
        1 for r in results if r.error is not None and not isinstance(r.error, TimeoutError)
    )
    loss = (transmitted - received) * 100.0 / transmitted if transmitted else 0.0
    time = max(r.done for r in results) - min(r.sent for r in results) if results else 0.0
    if not rtts:
        return PingSummary(transmitted, received, errors, loss, time)
    avg = sum(rtts) / received
    mdev = math.sqrt(max(0.0, sum(t * t for t in rtts) / received - avg * avg))
    return PingSummary(transmitted, received, errors, loss, time, min(rtts), avg, max(rtts), mdev)


#: what an echo request is known by while it waits: (peer address, identifier, sequence)
EchoKey = tuple[int, int, int]


class PendingEcho:
    """One echo request waiting for its answer."""

    __slots__ = ("callback", "sent", "size", "timer")

    def __init__(self, callback: EchoCallback, sent: float, size: int) -> None:
        self.callback = callback
        #: stack time it left
        self.sent = sent
        #: the echo message's length, header included
        self.size = size
        self.timer: Timer | None = None


class PendingEchoes:
    """The echo requests an :class:`~layers.protocols.EchoService` has sent and not settled,
    by :data:`EchoKey`: the bookkeeping the icmp and icmpv6 plugins share.

    Each request gets exactly one result through :meth:`deliver`: its reply or an error found
    by the service (which takes the request out with :meth:`pop` first), ``ETIMEDOUT`` ("no
    echo reply") after its timeout of stack time, or what :meth:`fail_all` says. A callback
    that raises is counted (``echo_callback_errors`` in the service's ``counters``) and reported
    through :meth:`Stack.internal_error <layers.stack.Stack.internal_error>`; the stack goes on.
    """

    def __init__(self, stack: Stack, counters: Counters) -> None:
        self.stack = stack
        self._c = counters
        self._waiting: dict[EchoKey, PendingEcho] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, key: object) -> bool:
        return key in self._waiting

    def __iter__(self) -> Iterator[EchoKey]:
        return iter(self._waiting)

    def get(self, key: EchoKey) -> PendingEcho | None:
        return self._waiting.get(key)

    def add(self, key: EchoKey, callback: EchoCallback, size: int, timeout: float) -> PendingEcho:
        """Record a request sent now (``key`` must not be waiting), timed out after
        ``timeout`` seconds of stack time."""
        pending = PendingEcho(callback, self.stack.now, size)
        self._waiting[key] = pending
        pending.timer = self.stack.call_later(timeout, self._timeout, key, pending)
        return pending

    def pop(self, key: EchoKey) -> PendingEcho | None:
        """Take the request out (its timeout cancelled), or None when none waits by ``key``."""
        pending = self._waiting.pop(key, None)
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()
        return pending

    def deliver(self, pending: PendingEcho, result: EchoReply | OSError) -> None:
        """Give a request taken out by :meth:`pop` its one result."""
        try:
            pending.callback(result)
        except Exception:
            self._c["echo_callback_errors"] += 1
            self.stack.internal_error("echo callback", pending.callback)

    def fail_all(self, errno: int, detail: str) -> None:
        """Fail every waiting request with ``OSError(errno, detail)`` (the stack is stopping)."""
        waiting, self._waiting = self._waiting, {}
        for pending in waiting.values():
            if pending.timer is not None:
                pending.timer.cancel()
            self.deliver(pending, os_error(errno, detail))

    def _timeout(self, key: EchoKey, pending: PendingEcho) -> None:
        if self._waiting.get(key) is pending:
            del self._waiting[key]
            self.deliver(pending, os_error(_errno.ETIMEDOUT, "no echo reply"))


def echo_service(stack: Stack, ip_version: int = 4) -> EchoService:
    """The stack's :class:`EchoService` for IP version ``ip_version`` (a service answers for
    the versions in its ``ip_versions``, absent meaning ``(4,)``: icmp for 4, icmpv6 for 6),
    or a :class:`CompositionError` naming the fix."""
    for proto in stack.protocols.values():
        if isinstance(proto, EchoService) and ip_version in getattr(proto, "ip_versions", (4,)):
            return proto
    if ip_version == 4:  # the usual error, naming the usual provider
        return stack.require(EchoService, what="ICMP echo, so it cannot ping", plugin="icmp")  # type: ignore[type-abstract]
    have = ", ".join(sorted(stack.protocols)) or "none"
    raise CompositionError(
        f"this stack has no ICMP echo for IPv{ip_version}, so it cannot ping (its protocols: "
        f"{have}); add icmpv6 to --plugins (or remove it from LAYERS_DISABLE_PLUGINS)"
    )


def ping_payload(size: int) -> bytes:
    """``size`` bytes of iputils' fill pattern (0x08, 0x09, ... after its timestamp)."""
    pattern = bytes((i + 8) & 0xFF for i in range(256))
    return (pattern * (size // 256 + 1))[:size]


async def ping(
    stack: Stack,
    dst: int | str,
    *,
    count: int | None = 4,
    interval: float = 1.0,
    size: int = 56,
    timeout: float = 1.0,
    ttl: int | None = None,
    ident: int | None = None,
) -> AsyncIterator[PingResult]:
    """Send ``count`` echo requests (forever when None), one every ``interval`` seconds, and
    yield a :class:`PingResult` for each as its reply, error or ``timeout`` comes (so in
    arrival order, which may differ from sequence order). Sequence numbers start at 1.
    """
    target = ip_any(dst)
    service = echo_service(stack, 6 if is_ip6_int(target) else 4)
    if count is not None and count < 1:
        raise ConfigurationError(f"ping count must be at least 1 (or None), not {count}")
    if not interval > 0 or not timeout > 0:
        raise ConfigurationError("ping interval and timeout must be positive seconds")
    if not 0 <= size <= 65507:
        raise ConfigurationError(f"ping size {size} must be in 0..65507 (the IPv4 limit)")
    loop = asyncio.get_running_loop()
    if stack.clock != loop.time:
        raise ConfigurationError(
            "ping needs a stack run on this asyncio loop: Stack(clock=loop.time) started by "
            "AsyncioRunner (or layers.runtime.running_stack)"
        )
    ident = random.getrandbits(16) if ident is None else ident
    payload = ping_payload(size)
    msg_size = 8 + size
    queue: asyncio.Queue[PingResult] = asyncio.Queue()
    #: seq -> stack time it was sent, for requests with no result yet
    outstanding: dict[int, float] = {}

    def sender(seq: int, sent: float) -> None:
        def done(result: EchoReply | OSError) -> None:
            if outstanding.pop(seq, None) is None:
                return  # already given up on by the guard
            if isinstance(result, EchoReply):
                item = PingResult(target, seq, msg_size, sent, stack.now, reply=result)
            else:
                item = PingResult(target, seq, msg_size, sent, stack.now, error=result)
            queue.put_nowait(item)

        outstanding[seq] = sent
        service.echo(target, ident=ident, seq=seq, payload=payload, callback=done,
                     timeout=timeout, ttl=ttl)

    transmitted = 0
    next_send = stack.now
    while count is None or transmitted < count or outstanding:
        more = count is None or transmitted < count
        now = stack.now
        if more and now >= next_send:
            transmitted += 1
            sender(transmitted & 0xFFFF, now)
            next_send += interval
            if next_send < now:  # the loop fell behind: do not burst to catch up
                next_send = now + interval
            continue
        while not queue.empty():
            yield queue.get_nowait()
        if not more and not outstanding:
            break
        if more:
            wait = next_send - now
        else:
            wait = max(outstanding.values()) + timeout + _GUARD - now
        try:
            item = await asyncio.wait_for(queue.get(), max(wait, 0.0))
        except TimeoutError:
            if not more and outstanding and stack.now >= max(outstanding.values()) + timeout:
                # The stack never answered (stopped without failing its requests).
                for seq, sent in sorted(outstanding.items()):
                    yield PingResult(target, seq, msg_size, sent, stack.now,
                                     error=os_error(_errno.ETIMEDOUT, "no echo reply"))
                outstanding.clear()
            continue
        yield item
    while not queue.empty():
        yield queue.get_nowait()
