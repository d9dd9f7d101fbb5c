"""``--map-ports`` for ``peercall relay`` and ``peercall signal``: the option and its two calls.

Kept here so the relay and signaling command modules only gain one option and one call each.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TextIO

from nat.config import RelayConfig
from nat.portmap.mapper import PortMapper, ports_for_hosting

MAX_FORWARDED_RELAY_PORTS = 256  # each is one router forwarding; home routers hold ~100s


def add_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--map-ports",
        action="store_true",
        help="ask the home router (PCP, NAT-PMP, UPnP-IGD) to forward the listening ports "
        "while running, and remove the forwardings on exit",
    )


async def map_relay(config: RelayConfig, out: TextIO) -> tuple[RelayConfig, PortMapper]:
    """Forward TURN (UDP+TCP) and, if small enough, the relay range; adopt the external IP.

    The router's external address becomes the relay's external-ip (unless one is set), so
    XOR-RELAYED-ADDRESS advertises an address friends can reach (RFC 8656 §7.3).
    """
    size = config.max_port - config.min_port + 1
    relay_ports = range(config.min_port, config.max_port + 1)
    if size > MAX_FORWARDED_RELAY_PORTS:
        print(
            f"peercall: warning: --map-ports: the relay range has {size} ports, too many to "
            f"forward; only TURN is mapped (use --min-port/--max-port for at most "
            f"{MAX_FORWARDED_RELAY_PORTS})",
            file=out,
        )
        relay_ports = range(0)
    mapper = PortMapper(
        ports_for_hosting(
            turn_port=config.listening_port,
            relay_ports=relay_ports,
            turn_tcp=not config.no_tcp,
        )
    )
    state = await mapper.start()
    print(state.line(), file=out, flush=True)
    if state.status in ("mapped", "partial") and state.external_ip and not config.external_ip:
        config = dataclasses.replace(config, external_ip=state.external_ip)
        print(f"external-ip {state.external_ip} (from the router)", file=out, flush=True)
    return config, mapper


async def map_signaling(port: int, out: TextIO) -> PortMapper:
    """Forward the signaling server's TCP port; prints the one-line state."""
    mapper = PortMapper(ports_for_hosting(signaling_port=port))
    state = await mapper.start()
    print(state.line(), file=out, flush=True)
    if state.status in ("mapped", "partial") and state.external_ip:
        external = state.external_port("TCP", port) or port
        print(f"reachable from the internet at {state.external_ip}:{external}", file=out)
    return mapper


async def unmap(mapper: PortMapper | None, out: TextIO) -> None:
    if mapper is not None:
        await mapper.stop()
        if mapper.state.status == "stopped":
            print(mapper.state.line(), file=out, flush=True)
