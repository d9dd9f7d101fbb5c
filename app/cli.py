"""The ``peercall`` command: a GUI by default, and headless subcommands.

Each subcommand lives in its own module exposing ``configure_parser(parser)`` and
``run(args) -> int``. Those modules keep heavy imports (aiortc, Qt) inside ``run`` so that
``peercall relay --help`` stays instant. User mistakes end as one line on stderr and exit
code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from app import __version__, startup
from app.errors import PeerCallError
from nat.errors import NatError
from signaling.errors import SignalingError

# command -> (module, one-line help). The GUI is the default when no command is given.
COMMANDS: dict[str, tuple[str, str]] = {
    "gui": ("app.ui.main", "open the desktop window (the default)"),
    "call": ("app.call_cli", "make or answer a call from the terminal"),
    "devices": ("app.devices_cli", "list audio devices"),
    "relay": ("nat.cli", "run the STUN/TURN relay server headless"),
    "signal": ("signaling.cli", "run the WebSocket signaling server headless"),
    "host": ("app.host", "host a call across the internet: map router ports, print one link"),
    "open": ("app.open_cli", "join a hosted call from its peercall:// or https:// link"),
    "self-check": ("app.selfcheck", "check this installation: Qt, audio, relay, a loopback call"),
}

USER_ERRORS = (PeerCallError, NatError, SignalingError)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with ``only`` set, one whose other subcommands are placeholders.

    Importing every subcommand module (the relay's config reader, port mapping, …) costs a
    tenth of a second or more before ``peercall call`` starts its own work; ``main`` imports
    only the command it runs. The placeholders keep ``peercall --help`` listing them all.
    """
    parser = argparse.ArgumentParser(
        prog="peercall",
        description="Peer-to-peer audio/video calls, with embedded signaling and STUN/TURN relay.",
    )
    parser.add_argument("--version", action="version", version=f"peercall {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)"
    )
    parser.add_argument(
        "--self-check",
        action="store_true",
        help="check this installation and exit (same as the self-check command)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.configure_parser(p)
        p.set_defaults(_module=module)
    return parser


def _self_check_alias(argv: list[str]) -> list[str]:
    """``peercall --self-check [options]`` means ``peercall self-check [options]``."""
    for i, arg in enumerate(argv):
        if arg in COMMANDS:
            break  # the flag after a command belongs to that command
        if arg == "--self-check":
            return [*argv[:i], "self-check", *argv[i + 1 :]]
    return argv


def _link_alias(argv: list[str]) -> list[str]:
    """``peercall peercall://…`` (what the desktop URL handler runs) means ``peercall open …``."""
    for i, arg in enumerate(argv):
        if arg.lower().startswith("peercall://"):
            return [*argv[:i], "open", *argv[i:]]
        if not arg.startswith("-"):
            break
    return argv


def _command(words: list[str]) -> str:
    """The subcommand ``words`` run: the first word that is not an option (none take values
    before the command), or the GUI, the default."""
    for word in words:
        if not word.startswith("-"):
            return word if word in COMMANDS else "gui"
    return "gui"


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the process's own entry point, not a test calling main([...])
        startup.begin()  # no garbage collection while the command loads (see app.startup)
    words = _link_alias(_self_check_alias(list(sys.argv[1:] if argv is None else argv)))
    parser = build_parser(only=_command(words))
    args = parser.parse_args(words)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command is None:
        args = parser.parse_args(["gui", *words])
    if not getattr(args._module, "ENDS_STARTUP", False):
        startup.end()  # else the command does once its own deferred imports are done
    try:
        result: int = args._module.run(args)
        return result
    except USER_ERRORS as exc:
        print(f"peercall: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
