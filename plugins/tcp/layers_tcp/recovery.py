"""Loss recovery bookkeeping shared by every congestion control: proportional rate reduction
(RFC 6937). The SACK scoreboard and RFC 6675's pipe are in :mod:`layers_tcp.sack`.

The engine (:mod:`layers_tcp.connection`) detects loss (RACK-TLP, :mod:`layers_tcp.rack`; or
three duplicate ACKs, or SACKed data three segments above a hole), keeps RFC 6582's
``recover`` point and the partial-ACK rule, and during fast recovery lets PRR decide how much
may be sent per ACK so that what is in flight converges on the algorithm's ``ssthresh``
without bursts and without window inflation.
Without SACK, each duplicate ACK stands for one segment that left the network (RFC 6675 and
RFC 6937 both say so), counted in :attr:`Scoreboard.dup_bytes`.
"""

from __future__ import annotations


class Prr:
    """Proportional rate reduction (RFC 6937) for one recovery episode."""

    __slots__ = ("delivered", "out", "recover_fs")

    def __init__(self) -> None:
        self.delivered = 0
        self.out = 0
        self.recover_fs = 1

    def start(self, flight: int) -> None:
        self.delivered = 0
        self.out = 0
        self.recover_fs = flight if flight > 0 else 1

    def sndcnt(self, delivered: int, pipe: int, ssthresh: int, mss: int) -> int:
        """Bytes that may be sent in answer to an ACK that delivered ``delivered`` bytes."""
        self.delivered += delivered
        if pipe > ssthresh:
            # proportional part: -(-a // b) is ceil(a / b)
            n = -(-self.delivered * ssthresh // self.recover_fs) - self.out
        else:
            # slow-start reduction bound (PRR-SSRB)
            limit = self.delivered - self.out
            if delivered > limit:
                limit = delivered
            limit += mss
            n = ssthresh - pipe
            if limit < n:
                n = limit
        return n if n > 0 else 0
