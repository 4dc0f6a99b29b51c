"""Stack settings (``--set PLUGIN.KEY=VALUE``): declared by plugins, checked once, read typed.

Every setting is ``PREFIX.KEY``. A plugin owns one or more prefixes and declares the keys under
each, with their defaults, through the ``layers_settings`` hook, either as an attrs class whose
fields are the keys (the arp plugin's ``ArpSettings``) or as a ``{key: default}`` mapping::

    @attrs.frozen
    class ShoutSettings:
        #: how many times each datagram is repeated
        repeat: int = 1

        def validate(self) -> None:          # optional: checked whenever the class is read
            if self.repeat < 1:
                raise ConfigurationError(f"setting shout.repeat={self.repeat} must be >= 1")

    @hookimpl
    def layers_settings(stack: Stack) -> Mapping[str, object]:
        return {"shout": ShoutSettings}

and reads them, when it builds its protocol objects, with ``read_settings(stack, "shout",
ShoutSettings)``: every value converted to the type of its default, then ``validate()``.

The stack collects the declarations before any other composition hook and checks every given
setting against them, so a typo is an error naming the keys that exist::

    unknown setting tcp.congestion_contrl; known tcp settings: tcp.congestion_control, ...

and a setting for a plugin that is not composed says which plugin to add. The congestion
controls offered through ``layers_congestion_controls`` are declared the same way, under their
own name: ``--set cubic.beta=0.7`` is checked against :attr:`~layers.congestion.
CongestionControlInfo.settings` of ``cubic``.

A plugin whose keys depend on the composition (like the congestion controls) may also call
:meth:`SettingsRegistry.declare` on ``stack.settings_registry`` from a composition hook; the
values already given for that prefix are checked at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

import attrs

from layers.errors import CompositionError, ConfigurationError

if TYPE_CHECKING:
    from layers.stack import Stack

T = TypeVar("T")

__all__ = [
    "SettingsRegistry",
    "convert_setting",
    "parse_port_range",
    "read_settings",
    "settings_defaults",
]

_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def convert_setting(key: str, value: Any, default: Any) -> Any:
    """``value`` (often text from ``--set``) converted to the type of ``default``.

    Booleans accept 1/0, true/false, yes/no, on/off; integers accept any base (``0x1818``);
    a default of None takes the value as given. Anything else is a ConfigurationError naming
    the key, the type wanted and the default."""
    if default is None:
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in _TRUE + _FALSE:
                    raise ValueError(value)
                return value.lower() in _TRUE
            if not isinstance(value, bool | int):
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, str):
                return int(value, 0)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        return type(default)(value)
    except (TypeError, ValueError):
        kind = _KINDS.get(type(default), f"a {type(default).__name__}")
        raise ConfigurationError(
            f"setting {key}={value!r} should be {kind} (default {default!r})"
        ) from None


def settings_defaults(spec: type | Mapping[str, Any]) -> dict[str, Any]:
    """``{key: default}`` of a declaration: an attrs class (its ``init`` fields) or a mapping."""
    if isinstance(spec, Mapping):
        return dict(spec)
    if attrs.has(spec):
        out: dict[str, Any] = {}
        for field in attrs.fields(spec):
            if not field.init:
                continue
            default = field.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = default.factory()
            out[field.name] = None if default is attrs.NOTHING else default
        return out
    raise CompositionError(
        f"settings declaration {spec!r} should be an attrs class or a {{key: default}} mapping"
    )


@attrs.frozen
class Declaration:
    prefix: str
    #: key (without the prefix) -> default
    defaults: Mapping[str, Any]
    #: the plugin that declared it, for messages
    owner: str


class SettingsRegistry:
    """Which ``PREFIX.KEY`` settings the composed plugins take (``stack.settings_registry``)."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self._settings = settings
        self.declared: dict[str, Declaration] = {}

    def declare(self, prefix: str, spec: type | Mapping[str, Any], owner: str) -> None:
        """``owner`` reads the settings ``prefix.KEY`` for each key of ``spec`` (an attrs class
        or ``{key: default}``). The values given for ``prefix`` are checked now: an unknown key
        or a value of the wrong type is a ConfigurationError."""
        if not prefix or "." in prefix:
            raise CompositionError(
                f"plugin {owner} declares settings under {prefix!r}; a prefix is one word such "
                f"as its own name"
            )
        old = self.declared.get(prefix)
        if old is not None and old.owner != owner:
            raise CompositionError(
                f"plugins {old.owner} and {owner} both declare the settings {prefix}.*; compose "
                f"only one of them"
            )
        defaults = settings_defaults(spec)
        if old is not None:
            defaults = {**old.defaults, **defaults}
        self.declared[prefix] = Declaration(prefix, defaults, owner)
        for key, value in self._settings.items():
            head, _, name = str(key).partition(".")
            if head == prefix:
                if name not in defaults:
                    raise ConfigurationError(self._unknown_key(str(key), prefix))
                convert_setting(str(key), value, defaults[name])

    def _unknown_key(self, key: str, prefix: str) -> str:
        known = ", ".join(f"{prefix}.{k}" for k in sorted(self.declared[prefix].defaults))
        return f"unknown setting {key}; known {prefix} settings: {known or '(none)'}"

    def check(self, installed: Iterable[str] = ()) -> None:
        """Every given setting belongs to a declared prefix (called once composition is done).
        ``installed``: plugin names installed but maybe not composed, for a better hint."""
        for key in self._settings:
            prefix, dot, name = str(key).partition(".")
            if not dot or not prefix or not name:
                raise ConfigurationError(
                    f"setting {key!r} should be PLUGIN.KEY, for example arp.timeout"
                )
            if prefix in self.declared:
                if name not in self.declared[prefix].defaults:
                    raise ConfigurationError(self._unknown_key(str(key), prefix))
                continue
            have = ", ".join(sorted(self.declared)) or "none"
            if prefix in set(installed):
                raise ConfigurationError(
                    f"setting {key} is for the {prefix} plugin, which is not composed in this "
                    f"stack; add {prefix} to --plugins (or remove it from "
                    f"LAYERS_DISABLE_PLUGINS), or drop the setting"
                )
            raise ConfigurationError(
                f"unknown setting {key}: no composed plugin takes {prefix}.* settings "
                f"(settings exist for: {have})"
            )

    def owner(self, prefix: str) -> str | None:
        decl = self.declared.get(prefix)
        return decl.owner if decl is not None else None


@overload
def read_settings(stack: Stack, prefix: str, spec: type[T]) -> T: ...
@overload
def read_settings(stack: Stack, prefix: str, spec: Mapping[str, Any]) -> dict[str, Any]: ...
def read_settings(stack: Stack, prefix: str, spec: Any) -> Any:
    """The settings ``prefix.*`` of ``stack``: an instance of the attrs class ``spec`` (then
    its ``validate()``, if it has one), or a dict for a ``{key: default}`` mapping. Each value
    is the given one converted to its default's type, or the default. A prefix nobody declared
    yet is declared now, for the plugin ``prefix``."""
    registry: SettingsRegistry = stack.settings_registry
    if prefix not in registry.declared:
        registry.declare(prefix, spec, owner=prefix)
    defaults = settings_defaults(spec)
    converters: dict[str, Any] = {}
    if not isinstance(spec, Mapping):
        converters = {f.name: f.converter for f in attrs.fields(spec) if f.converter is not None}
    values: dict[str, Any] = {}
    for name, default in defaults.items():
        key = f"{prefix}.{name}"
        if key not in stack.settings:
            values[name] = default
        elif name in converters:
            try:
                values[name] = converters[name](stack.settings[key])
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"setting {key}={stack.settings[key]!r} is not valid (default {default!r})"
                ) from None
        else:
            values[name] = convert_setting(key, stack.settings[key], default)
    if isinstance(spec, Mapping):
        return values
    settings = spec(**values)
    validate = getattr(settings, "validate", None)
    if callable(validate):
        validate()
    return settings


def parse_port_range(text: str, key: str) -> tuple[int, int]:
    """``"32768-60999"`` -> ``(32768, 60999)``, for the setting ``key`` (error naming it)."""
    lo_s, sep, hi_s = str(text).replace(" ", "").partition("-")
    try:
        lo, hi = int(lo_s), int(hi_s)
    except ValueError:
        lo = hi = -1
    if not sep or not 1 <= lo <= hi <= 0xFFFF:
        raise ConfigurationError(
            f"setting {key}={text!r} should be LOW-HIGH with 1 <= LOW <= HIGH <= 65535, "
            f"e.g. 32768-60999"
        )
    return lo, hi
