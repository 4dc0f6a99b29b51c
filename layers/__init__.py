"""layers: a userspace TCP/IP stack built as a pluggy framework.

The core defines the hooks (:mod:`layers.hookspecs`), composes stacks from plugins
(:class:`layers.Stack`), drives them (:mod:`layers.runtime`, :mod:`layers.virtual`) and owns
the link drivers (:mod:`layers.links`) and the shared wire formats (:mod:`layers.wire`).
Every protocol, ARP to TCP, is a plugin.
"""

from layers.errors import (
    CompositionError,
    ConfigurationError,
    LayersError,
    MalformedPacket,
    PluginError,
    os_error,
)
from layers.hookspecs import hookimpl, hookspec
from layers.interface import Interface
from layers.stack import Stack

__version__ = "0.1.0"

__all__ = [
    "CompositionError",
    "ConfigurationError",
    "Interface",
    "LayersError",
    "MalformedPacket",
    "PluginError",
    "Stack",
    "__version__",
    "hookimpl",
    "hookspec",
    "os_error",
]
