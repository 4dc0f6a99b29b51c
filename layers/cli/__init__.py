"""The ``layers`` command: compose and run stacks, ping, and look inside a running stack.

::

    layers up      --link tap:tap0 --address 10.0.0.2/24 [--gateway 10.0.0.1] [--trace FILE]
    layers ping    --link tap:tap0 --address 10.0.0.2/24 10.0.0.1 [-c N] [-i S] [-s SIZE]
    layers nc      --link tap:tap0 --address 10.0.0.2/24 [-u] [-l] 10.0.0.1 7
    layers plugins
    layers netstat [-s] | layers routes | layers arp      (against a running ``layers up``)
    layers ss [-i] [-l|-a]                                (TCP connections, like Linux's ss)
    layers plot TRACE... -o FIG.png|svg|pdf [--metrics cwnd,rtt,throughput] [--flows ...]
    layers demo
    layers experiment run|sweep FILE.toml     (scenario files: dumbbell experiments)

Each subcommand is a module in this package with an ``add_commands(commands)`` function (see
:mod:`layers.cli.common`); :data:`COMMAND_MODULES` lists them in the order ``--help`` shows.
Configuration mistakes print one line that names the fix and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from layers import __version__
from layers.cli import demo, experiment, netcat, ping, plot, plugins, report, ss, tap, up
from layers.cli.common import PROG, Commands, compose
from layers.control import NoStackRunning
from layers.errors import CompositionError, ConfigurationError

#: the modules that add subcommands, in ``--help`` order
COMMAND_MODULES = (up, ping, netcat, plugins, report, ss, plot, tap, demo, experiment)


def _err(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A userspace TCP/IP stack built from plugins.",
        epilog="Exit status: 0 success, 1 no reply / no stack running, 2 configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = Commands(parser)
    for module in COMMAND_MODULES:
        module.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except NoStackRunning as exc:
        _err(str(exc))
        return 1
    except (ConfigurationError, CompositionError) as exc:
        _err(str(exc))
        return 2
    except BrokenPipeError:
        # the reader went away (`layers netstat | head`): quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except ImportError as exc:
        _err(f"this installation lacks {exc.name or exc}; reinstall layers (make venv)")
        return 2
    except OSError as exc:
        _err(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))


__all__ = ["COMMAND_MODULES", "build_parser", "compose", "main"]
