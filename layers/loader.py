"""Finding and selecting plugins (pytest/tox style).

Plugins are registered under the entry-point group ``layers``; the entry-point name is the
plugin's name. Selection, in order:

1. ``plugins=[...]`` (``--plugins a,b`` on the command line) picks by name; anything else in the
   list (a module or object) is registered as an ad-hoc plugin. ``None`` means all installed.
2. ``LAYERS_DISABLE_PLUGINS=a,b`` (or ``block=[...]``) removes plugins by name. Asking for a
   blocked plugin by name is an error rather than a silent omission.

A plugin module that sets ``LAYERS_OPT_IN = True`` is installed but not part of the default
selection: it joins a stack only when named. Per-frame hooks (taps, counters, filters) and
examples should be opt-in, so that installing them never slows every stack on the machine.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable, Sequence
from importlib import metadata
from types import ModuleType
from typing import Any

import attrs
import pluggy

from layers import hookspecs
from layers.errors import CompositionError, PluginError

ENTRY_POINT_GROUP = "layers"
BLOCK_ENV = "LAYERS_DISABLE_PLUGINS"

_LAYER_BY_HOOK = (
    ("layers_link_drivers", "link"),
    ("layers_wrap_link", "link"),
    ("layers_queue_disciplines", "link"),
    ("layers_neighbour_resolver", "network"),
    ("layers_network_protocols", "network"),
    ("layers_transport_protocols", "transport"),
    ("layers_error_reporter", "transport"),
    ("layers_congestion_controls", "congestion-control"),
    ("layers_frame_received", "frame-hook"),
    ("layers_frame_sending", "frame-hook"),
)


@attrs.frozen
class PluginInfo:
    name: str
    version: str
    layer: str
    distribution: str
    module: str
    #: "default" (joins stacks composed without --plugins), "opt-in" or "disabled"
    status: str = "default"


def installed_entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            a, b = _dist_name(found[ep.name]), _dist_name(ep)
            raise CompositionError(
                f"two installed plugins are named {ep.name!r} ({a} and {b}); uninstall one or "
                f"add {ep.name} to {BLOCK_ENV} and select the other by a different name"
            )
        found[ep.name] = ep
    return found


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else ep.value


def distribution_of(name: str) -> str:
    """``"layers-shout 0.1.0"``: the installed distribution that provides the plugin ``name``,
    or a phrase saying that it was registered by the caller rather than installed."""
    for found in metadata.entry_points(group=ENTRY_POINT_GROUP).select(name=name):
        return _dist_name(found) if found.dist is not None else f"entry point {found.value}"
    return "not installed: registered by the caller"


def _where(exc: BaseException) -> str:
    """``layers_shout/__init__.py:12``: the innermost frame of ``exc``'s traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    parts = last.filename.replace("\\", "/").split("/")
    return f" at {'/'.join(parts[-2:])}:{last.lineno}"


def plugin_error(name: str, doing: str, exc: BaseException) -> PluginError:
    """The error for the plugin ``name`` that raised ``exc`` while ``doing`` something
    ("its layers_transport_protocols hook", "importing it"): names the plugin, its
    distribution and the exception, and says how to run without it."""
    dist = distribution_of(name)
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if dist.startswith("not installed"):
        fix = "leave it out of the plugins you pass to Stack()"
    else:
        fix = f"run without it: {BLOCK_ENV}={name} (or leave it out of --plugins)"
    return PluginError(
        f"plugin {name!r} ({dist}) failed in {doing}: {what}{_where(exc)}; {fix}",
        plugin=name,
        distribution=dist,
    )


def load_plugin(name: str, ep: metadata.EntryPoint) -> object:
    """``ep.load()``; an import that fails is a :class:`PluginError` naming the plugin."""
    try:
        return ep.load()
    except Exception as exc:
        raise plugin_error(name, "importing it", exc) from exc


def blocked_from_env() -> set[str]:
    return {p.strip() for p in os.environ.get(BLOCK_ENV, "").split(",") if p.strip()}


def parse_plugin_list(text: str | None) -> list[str] | None:
    """``"arp, ipv4"`` -> ``["arp", "ipv4"]``; ``None``/``""`` -> None (all installed)."""
    if not text:
        return None
    return [p.strip() for p in text.split(",") if p.strip()]


def make_plugin_manager(
    plugins: Sequence[str | ModuleType | object] | None = None,
    *,
    block: Iterable[str] | None = None,
) -> pluggy.PluginManager:
    """A PluginManager with the core and the selected plugins registered."""
    from layers import builtin

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name="core")
    blocked = set(block if block is not None else blocked_from_env())
    available = installed_entry_points()

    if plugins is None:
        selected: list[str | object] = [
            n for n in sorted(available) if n not in blocked and not _opt_in(available[n])
        ]
    else:
        selected = list(plugins)
    for item in selected:
        if isinstance(item, str):
            if item in blocked:
                raise CompositionError(
                    f"plugin {item!r} was asked for but is disabled by {BLOCK_ENV}; "
                    f"remove it from one of the two"
                )
            ep = available.get(item)
            if ep is None:
                names = ", ".join(sorted(available)) or "none"
                raise CompositionError(
                    f"unknown plugin {item!r}; installed plugins: {names}. "
                    f"Install it with pip (it must declare an entry point in group "
                    f"{ENTRY_POINT_GROUP!r}) or correct the name"
                )
            if pm.get_plugin(item) is not None:
                continue
            _register(pm, load_plugin(item, ep), item)
        else:
            name = getattr(item, "__name__", None) or type(item).__name__
            if pm.get_plugin(name) is None and not pm.is_registered(item):
                _register(pm, item, name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or "?"
        raise plugin_error(name, "the hook specification check", exc) from exc
    return pm


def _register(pm: pluggy.PluginManager, obj: object, name: str) -> None:
    try:
        pm.register(obj, name=name)
    except pluggy.PluginValidationError as exc:
        raise plugin_error(name, "the hook specification check", exc) from exc


def _opt_in(ep: metadata.EntryPoint) -> bool:
    return bool(getattr(load_plugin(ep.name, ep), "LAYERS_OPT_IN", False))


def plugin_layer(obj: Any) -> str:
    layers = [layer for hook, layer in _LAYER_BY_HOOK if hasattr(obj, hook)]
    return "/".join(dict.fromkeys(layers)) or "other"


def describe_plugins(pm: pluggy.PluginManager | None = None) -> list[PluginInfo]:
    """Every installed plugin (or every plugin in ``pm``), for ``layers plugins``."""
    infos: list[PluginInfo] = []
    eps = installed_entry_points()
    if pm is None:
        blocked = blocked_from_env()
        for name, ep in sorted(eps.items()):
            dist = ep.dist
            status = "default"
            try:
                obj = ep.load()
                layer = plugin_layer(obj)
                if getattr(obj, "LAYERS_OPT_IN", False):
                    status = "opt-in"
            except Exception as exc:  # a broken plugin is reported, not fatal to the listing
                layer = f"broken: {exc}"
            if name in blocked:
                status = "disabled"
            infos.append(
                PluginInfo(
                    name=name,
                    status=status,
                    version=dist.version if dist else "?",
                    layer=layer,
                    distribution=dist.name if dist else "?",
                    module=ep.value,
                )
            )
        return infos
    for name, obj in pm.list_name_plugin():
        if obj is None:
            continue
        found = eps.get(name)
        dist = found.dist if found else None
        infos.append(
            PluginInfo(
                name=name,
                version=dist.version if dist else "-",
                layer=plugin_layer(obj),
                distribution=dist.name if dist else "(not installed)",
                module=getattr(obj, "__name__", type(obj).__name__),
            )
        )
    return infos
