"""``peercall open LINK``: join the call a friend hosts (``peercall host``), from the terminal.

The link carries the signaling server, the room and its secret; the host's server hands out
the relay credentials on join, so nothing else is typed. Every ``peercall call`` option
(``--send-tone``, ``--record``, ``--mic``…) works here too. ``peercall peercall://…`` is the
same as ``peercall open peercall://…``.
"""

from __future__ import annotations

import argparse

from app import call_cli
from app.errors import ConfigError
from app.link import parse_link

#: app.cli.main leaves app.startup.end() to call_cli.run, which imports the engine late.
ENDS_STARTUP = True


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("link", help="the peercall://… or https://…#room=… link you were sent")
    call_cli.configure_parser(parser)


def run(args: argparse.Namespace) -> int:
    link = parse_link(args.link)
    for option, value in (("--server", args.server), ("--secret", args.secret)):
        if value:
            raise ConfigError(f"{option} conflicts with the link: the link says where to go")
    args.server, args.room, args.secret = link.signaling_url, link.room, link.secret
    # The host waits in the room (`--answer`); whoever opens the link places the call.
    args.answer = False
    result: int = call_cli.run(args)
    return result
