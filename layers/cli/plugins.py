"""``layers plugins``: every installed plugin, its layer, distribution and status."""

from __future__ import annotations

import argparse

from layers.cli.common import Commands
from layers.cli.report import table
from layers.loader import describe_plugins


def cmd_plugins(args: argparse.Namespace) -> int:
    infos = describe_plugins()
    if not infos:
        print("no plugins installed (pip install a distribution with entry points in group "
              "'layers')")
        return 0
    print(table(("NAME", "VERSION", "LAYER", "DISTRIBUTION", "STATUS"),
                [(i.name, i.version, i.layer, i.distribution, i.status) for i in infos]))
    return 0


def add_commands(commands: Commands) -> None:
    commands.add("plugins", cmd_plugins, help="list installed plugins")
