"""Bring one NAT-lab scenario up and leave it up for a person to try (needs root).

    sudo .venv/bin/python scripts/netlab.py cone-cone     # or: make netlab SCENARIO=cone-cone
    sudo .venv/bin/python scripts/netlab.py --list
    sudo .venv/bin/python scripts/netlab.py --down        # remove what a killed run left

It builds the scenario's LANs and two hosts ``a`` and ``b``, starts ``peercall signal`` and a
relay (``peercall relay``, or coturn with ``--relay coturn``) on the internet host, prints how
to enter each namespace and the ``peercall call`` command for each side, then waits. Ctrl-C
(or SIGTERM, or ``--down`` from another terminal) stops the services and deletes every
namespace. On a terminal it also reads commands that change the network under a running call:
``loss a 5``, ``outage b``, ``restore b``, ``new-address a`` (a's or b's router), ``quit``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.netlab.lab import Lab, clean_stale, netns_unavailable_reason
from tests.netlab.scenarios import SCENARIOS, build

PIDFILE = Path(tempfile.gettempdir()) / "peercall-netlab.pid"

HELP = """commands: loss a|b N  |  outage a|b  |  restore a|b  |  new-address a|b  |  quit"""


def _down() -> int:
    """Stop a running netlab.py (its pid file) and delete leftovers of dead runs."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        pid = int(PIDFILE.read_text())
        os.kill(pid, signal.SIGTERM)
        print(f"asked the lab in process {pid} to stop")
    for name in clean_stale():
        print(f"deleted stale namespace {name}")
    return 0


def _interact(lab: Lab, lans: dict[str, object]) -> None:
    print(HELP)
    while True:
        try:
            words = input("netlab> ").split()
        except EOFError:
            return
        if not words:
            continue
        if words[0] in ("quit", "exit"):
            return
        try:
            lan = lans[words[1]] if len(words) > 1 else None
            match words[0], lan:
                case "loss", lan if lan is not None and len(words) == 3:
                    lab.loss(lan, int(words[2]))  # type: ignore[arg-type]
                case "outage", lan if lan is not None:
                    lab.outage(lan)  # type: ignore[arg-type]
                case "restore", lan if lan is not None:
                    lab.restore(lan)  # type: ignore[arg-type]
                case "new-address", lan if lan is not None:
                    print("new WAN address", lab.change_public_address(lan))  # type: ignore[arg-type]
                case _:
                    print(HELP)
        except (KeyError, ValueError) as exc:
            print(f"error: {exc}")
        except Exception as exc:  # a failed nft/ip command: report and keep the lab up
            print(f"error: {exc}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", default="cone-cone", help="default cone-cone")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--down", action="store_true", help="tear a running lab down and exit")
    parser.add_argument("--relay", choices=("peercall", "coturn"), default="peercall")
    args = parser.parse_args()
    if args.list:
        for name, (kind_a, kind_b) in SCENARIOS.items():
            print(f"{name:22} a behind {kind_a}, b behind {kind_b or 'the same router'}")
        return 0
    if args.down:
        return _down()
    if args.scenario not in SCENARIOS:
        print(f"netlab: unknown scenario {args.scenario!r}; try --list", file=sys.stderr)
        return 2
    reason = netns_unavailable_reason()
    if reason:
        print(f"netlab: {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds through Lab.__exit__
    logs = Path(tempfile.mkdtemp(prefix="peercall-netlab-"))
    PIDFILE.write_text(str(os.getpid()))
    try:
        with Lab(workdir=logs) as lab:
            a, b = build(lab, args.scenario)
            url = lab.start_signal(log=logs / "signal.log")
            relay = lab.start_relay(args.relay, log=logs / "relay.log")
            print(f"scenario {args.scenario}, logs in {logs}")
            for line in lab.describe():
                print(line)
            ice = f"--ice-server {relay.stun} --ice-server {shlex.quote(relay.turn('udp'))}"
            for host, role in ((a, "--answer "), (b, "")):
                print(
                    f"\ncall from {host.label}:\n  ip netns exec {host.ns} {sys.executable} -m"
                    f" app.cli call {role}--server {url} --room lab {ice} --send-tone 440"
                    f" --record /tmp/{host.label}.wav --no-devices"
                )
            print("\nCtrl-C tears the lab down.")
            lans = {"a": a.lan, "b": b.lan}
            if sys.stdin.isatty():
                _interact(lab, lans)  # type: ignore[arg-type]
            else:
                signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            PIDFILE.unlink()
        print("lab torn down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
