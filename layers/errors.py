"""Error types shared by the core and every plugin.

Three families:

* :class:`MalformedPacket` is raised by wire parsers. The receive path catches it, drops the
  packet and counts the drop under ``reason``; it never escapes ``Stack.receive``.
* :class:`ConfigurationError` is a bad argument or setting, and its subclass
  :class:`CompositionError` a set of plugins and links that does not make a working stack (a
  missing service, two plugins claiming one number, a plugin that failed). Their message names
  the fix; catch ``ConfigurationError`` for both. :class:`PluginError` is the composition
  error for a plugin that raised or could not be imported: it names the plugin and its
  distribution and says how to run without it.
* Socket-level failures are ordinary :class:`OSError` subclasses carrying the errno a socket
  user expects (see :func:`os_error`).
"""

from __future__ import annotations

import errno as _errno
import os


class LayersError(Exception):
    """Base class of every error the framework defines itself."""


class MalformedPacket(LayersError, ValueError):
    """A packet failed validation. ``reason`` is a short counter key such as ``truncated``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ConfigurationError(LayersError, ValueError):
    """A bad argument or setting; the message says which and how to fix it."""


class CompositionError(ConfigurationError):
    """The selected plugins and links do not make a working stack (a kind of configuration
    error: the fix is a different ``--plugins``, link or setting)."""


class PluginError(CompositionError):
    """A plugin failed: raised in a hook while the stack was composed, or could not be
    imported. ``plugin`` is its name, ``distribution`` the package that installed it."""

    def __init__(self, message: str, plugin: str = "", distribution: str = "") -> None:
        super().__init__(message)
        self.plugin = plugin
        self.distribution = distribution


_ERRNO_CLASSES: dict[int, type[OSError]] = {
    _errno.ECONNREFUSED: ConnectionRefusedError,
    _errno.ECONNRESET: ConnectionResetError,
    _errno.ECONNABORTED: ConnectionAbortedError,
    _errno.EPIPE: BrokenPipeError,
    _errno.ETIMEDOUT: TimeoutError,
}


def os_error(code: int, detail: str | None = None) -> OSError:
    """An :class:`OSError` (of the builtin subclass Python itself would use) for ``code``.

    ``os_error(errno.EHOSTUNREACH)`` gives ``OSError(113, 'No route to host')``, exactly what a
    socket user catches from the kernel.
    """
    cls = _ERRNO_CLASSES.get(code, OSError)
    message = os.strerror(code)
    if detail:
        message = f"{message} ({detail})"
    return cls(code, message)
