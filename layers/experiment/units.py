"""The units a scenario file is written in: rates, times, sizes and queue limits.

Each parser takes what ``tomllib`` produced (a string or a number) and returns SI base units
(bits per second, seconds, bytes), or raises :class:`UnitError` whose message says what to
write instead. The vocabulary follows Linux ``tc``: ``100mbit`` is 100 000 000 bits/s, ``kB``,
``MB`` and ``GB`` are decimal, ``KiB``, ``MiB`` and ``GiB`` binary.
"""

from __future__ import annotations

import re

import attrs

__all__ = [
    "QueueLimit",
    "UnitError",
    "format_rate",
    "parse_duration",
    "parse_queue_limit",
    "parse_rate",
    "parse_size",
]


class UnitError(ValueError):
    """A value in the wrong unit; the message names the fix."""


_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

_RATE_UNITS = {
    "bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
    "b/s": 1.0, "kb/s": 1e3, "mb/s": 1e6, "gb/s": 1e9,
}
_RATE_RE = re.compile(rf"^{_NUMBER}\s*([a-z/]+)$")

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0}
_TIME_RE = re.compile(rf"^{_NUMBER}\s*(s|ms|us|µs|ns|min)$")

_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}
_SIZE_RE = re.compile(rf"^{_NUMBER}\s*([kmg]?i?b)$", re.IGNORECASE)


def parse_rate(value: object) -> float:
    """``"100mbit"`` -> 1e8 bits/s. A bare number is bits per second."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        rate = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(rf"{_NUMBER}\s*[kmgt]?bps", value.strip(), re.IGNORECASE):
            raise UnitError(
                f"{value!r} is ambiguous (tc reads 'bps' as bytes/s, most people as bits/s); "
                f"write bits per second as e.g. '100mbit'"
            )
        m = _RATE_RE.match(text)
        if m is None or m.group(2) not in _RATE_UNITS:
            raise UnitError(f"{value!r} is not a rate; write e.g. '100mbit', '1gbit', '500kbit'")
        rate = float(m.group(1)) * _RATE_UNITS[m.group(2)]
    else:
        raise UnitError(f"{value!r} is not a rate; write e.g. '100mbit'")
    if rate <= 0:
        raise UnitError(f"{value!r}: a rate must be positive, e.g. '100mbit'")
    return rate


def parse_duration(value: object, *, bare_seconds: bool = True) -> float:
    """``"20ms"`` -> 0.02 s. A bare number is seconds when ``bare_seconds`` (durations and
    start times); for delays, where ``20`` almost always means milliseconds, a unit is
    required (0 aside)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        t = float(value)
        if not bare_seconds and t != 0:
            raise UnitError(f"{value!r} needs a unit: write '{value}ms' or '{value}s'")
    elif isinstance(value, str):
        m = _TIME_RE.match(value.strip())
        if m is None:
            if re.fullmatch(_NUMBER, value.strip()):
                raise UnitError(f"{value!r} needs a unit: write '{value}ms' or '{value}s'")
            raise UnitError(f"{value!r} is not a time; write e.g. '20ms', '1.5s', '500us'")
        t = float(m.group(1)) * _TIME_UNITS[m.group(2)]
    else:
        raise UnitError(f"{value!r} is not a time; write e.g. '20ms'")
    if t < 0:
        raise UnitError(f"{value!r}: a time must not be negative")
    return t


def parse_size(value: object) -> int:
    """``"10MB"`` -> 10 000 000 bytes, ``"64KiB"`` -> 65 536. A bare integer is bytes."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if float(value) != int(value):
            raise UnitError(f"{value!r}: a size in bytes must be a whole number")
        n = int(value)
    elif isinstance(value, str):
        m = _SIZE_RE.match(value.strip())
        if m is None:
            raise UnitError(f"{value!r} is not a size; write e.g. '10MB', '150kB', '64KiB'")
        n = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    else:
        raise UnitError(f"{value!r} is not a size; write e.g. '10MB'")
    if n <= 0:
        raise UnitError(f"{value!r}: a size must be positive")
    return n


@attrs.frozen
class QueueLimit:
    """A queue's capacity as written: ``packets``, ``bytes`` or ``bdp`` (a multiple of the
    bandwidth-delay product, resolved against the link by :meth:`resolve`)."""

    kind: str
    value: float

    def __str__(self) -> str:
        if self.kind == "packets":
            return f"{int(self.value)}p"
        if self.kind == "bytes":
            return f"{int(self.value)}B"
        return f"{self.value:g}bdp"

    def resolve(self, bdp_bytes: float, mtu: int) -> tuple[str, int]:
        """``("packets", n)`` or ``("bytes", n)``; a BDP multiple becomes packets of ``mtu``
        bytes (at least 2, as a queue shorter than that cannot absorb one ACK clock burst)."""
        if self.kind == "bdp":
            return "packets", max(2, round(self.value * bdp_bytes / mtu))
        return self.kind, int(self.value)


def parse_queue_limit(value: object) -> QueueLimit:
    """``"100p"`` (packets), ``"150kB"`` (bytes) or ``"1bdp"`` (BDP multiple); a bare
    integer is packets."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if float(value) != int(value) or int(value) < 1:
            raise UnitError(f"{value!r}: write a whole number of packets such as '100p'")
        return QueueLimit("packets", int(value))
    if not isinstance(value, str):
        raise UnitError(f"{value!r} is not a queue limit; write '100p', '150kB' or '1bdp'")
    text = value.strip()
    m = re.fullmatch(rf"{_NUMBER}\s*(p|pkts?|packets?)", text, re.IGNORECASE)
    if m:
        n = float(m.group(1))
        if n != int(n) or n < 1:
            raise UnitError(f"{value!r}: write a whole number of packets, at least '1p'")
        return QueueLimit("packets", int(n))
    m = re.fullmatch(rf"{_NUMBER}\s*bdp", text, re.IGNORECASE)
    if m:
        f = float(m.group(1))
        if f <= 0:
            raise UnitError(f"{value!r}: a BDP multiple must be positive, e.g. '1bdp'")
        return QueueLimit("bdp", f)
    try:
        return QueueLimit("bytes", parse_size(text))
    except UnitError:
        raise UnitError(
            f"{value!r} is not a queue limit; write packets '100p', bytes '150kB' or a "
            f"multiple of the bandwidth-delay product '1bdp'"
        ) from None


def format_rate(bps: float) -> str:
    """1e8 -> ``"100mbit"``: the shortest exact tc-style spelling."""
    for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bps >= scale and (bps / scale) == round(bps / scale, 3):
            return f"{bps / scale:g}{unit}"
    return f"{bps:g}bit"
