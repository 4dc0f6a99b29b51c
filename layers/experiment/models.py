"""Analytic models of TCP throughput under random loss, to validate runs against.

**NewReno: the square-root law** (Mathis, Semke, Mahdavi and Ott, "The macroscopic behavior
of the TCP congestion avoidance algorithm", CCR 1997)::

    throughput = (MSS / RTT) * C / sqrt(p)

For a window that grows by one segment per round trip and halves at each loss, with losses
*periodic* (one every 1/p packets), the sawtooth between W/2 and W gives C = sqrt(3/2) ~ 1.22.
Two corrections apply to our runs:

* **Delayed ACKs.** With one ACK per b segments and a window grown per ACK, the window grows
  1/b segment per round trip and C = sqrt(3/(2b)) (0.87 for b = 2). Our NewReno counts bytes
  (RFC 3465 appropriate byte counting, L = 2): the window grows by one MSS per window of
  acknowledged bytes however many ACKs carry them, so b = 1 even though the receiver delays
  ACKs. :func:`mathis_constant` takes ``b`` for engines that count ACKs.
* **Random losses.** Our link drops each data packet independently with probability p
  (Bernoulli), not periodically. Ott, Kemperman and Mathis ("The stationary behavior of ideal
  TCP congestion avoidance", 1996) solve that case: for small p the mean window is
  1.31 / sqrt(p) segments, so C = 1.31 for b = 1; the periodic constant scaled by the same
  factor (1.31 / 1.22) for b > 1.

RTT is the round trip the flow actually sees (propagation plus serialisation and queueing), as
in the paper's measurements; the results' ``rtt_mean_s``.

**CUBIC: RFC 9438's response function** (section 5.1 and its Figure 5's derivation):
with the window following W(t) = C (t - K)^3 + W_max and multiplicative decrease beta, the
average window under random loss p is::

    W_avg = (C (3 + beta) / (4 (1 - beta)))^(1/4) * RTT^(3/4) / p^(3/4)     [segments, RTT in s]

which for C = 0.4 and beta = 0.7 is 1.054 * (RTT / p)^(3/4). CUBIC governs only where this
exceeds its Reno-friendly estimate, an AIMD with RFC 9438's alpha = 3 (1 - beta) / (1 + beta),
chosen so that its average window is Reno's, sqrt(3 / (2 p)): small p and long round trips.
:func:`cubic_governs` says which region a point is in.
"""

from __future__ import annotations

import math

__all__ = [
    "CUBIC_BETA",
    "CUBIC_C",
    "RANDOM_LOSS_C",
    "cubic_governs",
    "cubic_throughput",
    "cubic_window",
    "mathis_constant",
    "mathis_throughput",
    "reno_friendly_window",
]

#: Ott, Kemperman and Mathis's constant for independent losses (one ACK per segment)
RANDOM_LOSS_C = 1.31
#: RFC 9438's constants
CUBIC_C = 0.4
CUBIC_BETA = 0.7


def mathis_constant(*, random_loss: bool = True, acks_per_growth: int = 1) -> float:
    """C of the square-root law: sqrt(3 / (2 b)) for periodic losses, scaled by 1.31 / 1.22
    for independent (Bernoulli) losses. ``acks_per_growth`` is b: 1 when the window grows by
    one segment per window of acknowledged bytes (byte counting), 2 when it grows per ACK and
    the receiver acknowledges every second segment."""
    if acks_per_growth < 1:
        raise ValueError("acks_per_growth must be at least 1")
    periodic = math.sqrt(3.0 / (2.0 * acks_per_growth))
    if not random_loss:
        return periodic
    return periodic * RANDOM_LOSS_C / math.sqrt(1.5)


def mathis_throughput(mss: int, rtt: float, p: float, c: float | None = None) -> float:
    """Bits per second of the square-root law for segments of ``mss`` bytes."""
    if not 0 < p < 1 or rtt <= 0:
        raise ValueError("need 0 < p < 1 and rtt > 0")
    if c is None:
        c = mathis_constant()
    return mss * 8.0 / rtt * c / math.sqrt(p)


def cubic_window(rtt: float, p: float, c: float = CUBIC_C, beta: float = CUBIC_BETA) -> float:
    """RFC 9438's average window (segments) where the cubic function governs."""
    return (c * (3.0 + beta) / (4.0 * (1.0 - beta))) ** 0.25 * (rtt / p) ** 0.75


def reno_friendly_window(p: float, beta: float = CUBIC_BETA) -> float:
    """The average window (segments) of CUBIC's Reno-friendly estimate: AIMD with RFC 9438's
    alpha = 3 (1 - beta) / (1 + beta) averages sqrt(alpha (1 + beta) / (2 (1 - beta) p)),
    which is Reno's sqrt(3 / (2 p))."""
    alpha = 3.0 * (1.0 - beta) / (1.0 + beta)
    return math.sqrt(alpha * (1.0 + beta) / (2.0 * (1.0 - beta) * p))


def cubic_governs(rtt: float, p: float) -> bool:
    """True where the cubic window, not the Reno-friendly one, sets CUBIC's rate."""
    return cubic_window(rtt, p) > reno_friendly_window(p)


def cubic_throughput(mss: int, rtt: float, p: float) -> float:
    """Bits per second of RFC 9438's response function (the larger of the two regions)."""
    w = max(cubic_window(rtt, p), reno_friendly_window(p))
    return w * mss * 8.0 / rtt
