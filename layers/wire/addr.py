"""Address helpers. IPv4 addresses are plain ``int`` on every internal path (hashable, cheap to
mask and compare); MAC addresses are 6-byte ``bytes``. These functions convert at the edges."""

from __future__ import annotations

import socket
import struct

from layers.errors import ConfigurationError

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
IPV4_BROADCAST = 0xFFFFFFFF
_U32 = struct.Struct("!I")


def ip4(value: str | int | bytes) -> int:
    """Parse an IPv4 address given as dotted text, 4 bytes, or an int."""
    if isinstance(value, int):
        if not 0 <= value <= 0xFFFFFFFF:
            raise ConfigurationError(f"IPv4 address {value} is out of range 0..2**32-1")
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        if len(value) != 4:
            raise ConfigurationError(f"an IPv4 address is 4 bytes, got {len(value)}")
        return int(_U32.unpack(value)[0])
    try:
        return (
            int(_U32.unpack(socket.inet_aton(value))[0]) if value.count(".") == 3 else _bad(value)
        )
    except OSError:
        return _bad(value)


def _bad(value: str) -> int:
    raise ConfigurationError(f"{value!r} is not an IPv4 address; write it as a.b.c.d")


def ip4_bytes(value: int) -> bytes:
    return _U32.pack(value)


def ip4_str(value: int) -> str:
    return socket.inet_ntoa(_U32.pack(value))


def ip4_network(text: str) -> tuple[int, int]:
    """Parse ``a.b.c.d/n`` into ``(address, prefix_length)``; the host bits are kept."""
    if "/" not in text:
        ip4(text)  # "foo" is not an address at all: say that first
        raise ConfigurationError(f"{text!r} needs a prefix length, for example {text}/24")
    addr, _, plen = text.partition("/")
    if not plen.isdigit() or not 0 <= int(plen) <= 32:
        raise ConfigurationError(f"prefix length in {text!r} must be 0..32")
    return ip4(addr), int(plen)


def host_address_problem(address: int, prefix_length: int) -> str | None:
    """Why ``address/prefix_length`` cannot be a host's own address, or None if it can: the
    unspecified address, a subnet's network or broadcast address (prefixes up to /30), the
    limited broadcast, multicast."""
    text = f"{ip4_str(address)}/{prefix_length}"
    mask = prefix_mask(prefix_length)
    if address == 0:
        return f"{text}: 0.0.0.0 means 'no address' and cannot be the stack's own"
    if address == IPV4_BROADCAST:
        return f"{text}: 255.255.255.255 is the limited broadcast address"
    if 0xE0000000 <= address <= 0xEFFFFFFF:
        return f"{text}: {ip4_str(address)} is a multicast address"
    if prefix_length <= 30:
        network = address & mask
        example = f"for example {ip4_str(network + 1)}/{prefix_length}"
        if address == network:
            return (f"{text} is the network address of {ip4_str(network)}/{prefix_length}; give "
                    f"the stack a host address, {example}")
        if address == network | (~mask & 0xFFFFFFFF):
            return (f"{text} is the broadcast address of {ip4_str(network)}/{prefix_length}; "
                    f"give the stack a host address, {example}")
    return None


def prefix_mask(prefix_length: int) -> int:
    return (0xFFFFFFFF << (32 - prefix_length)) & 0xFFFFFFFF if prefix_length else 0


def mac(value: str | bytes) -> bytes:
    """Parse ``aa:bb:cc:dd:ee:ff`` (or 6 bytes) into 6 bytes."""
    if isinstance(value, bytes | bytearray):
        if len(value) != 6:
            raise ConfigurationError(f"a MAC address is 6 bytes, got {len(value)}")
        return bytes(value)
    parts = value.replace("-", ":").split(":")
    try:
        if len(parts) != 6:
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ConfigurationError(
            f"{value!r} is not a MAC address; write it as aa:bb:cc:dd:ee:ff"
        ) from None


def mac_str(value: bytes) -> str:
    return ":".join(f"{b:02x}" for b in value)


def is_multicast_mac(value: bytes) -> bool:
    return bool(value[0] & 1)
