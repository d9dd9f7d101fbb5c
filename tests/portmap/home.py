"""A home router running miniupnpd, built from the NAT lab (tests/netlab): no pytest here.

    internet 198.18.0.1 + 198.18.0.2 (coturn, STUN only, RFC 5780: miniupnpd's own check)
    router of LAN 1: WAN 198.18.0.10, LAN 198.19.1.1; masquerade + miniupnpd's chains
    host 198.19.1.10 (the one who hosts), friend 198.19.1.11 (same LAN)
    with ``far_nat``: a second router (cone or symmetric) with the far friend behind it

The addresses are those a fresh lab gives its first LAN; :func:`build_home` checks them.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.netlab.lab import (
    Host,
    Lab,
    LabError,
    Lan,
    NatKind,
    PortEntry,
    netns_unavailable_reason,
    upnp_unavailable_reason,
)

WAN_IP = "198.18.0.10"
ROUTER_LAN_IP = "198.19.1.1"
HOST_IP = "198.19.1.10"
FRIEND_IP = "198.19.1.11"
RELAY_LAB_IP = "198.18.0.5"  # a relay on the "internet" (the comparison in bench_host.py)


@dataclass
class HomeLab:
    """The lab seen from the host's home: its LAN, the host, a friend beside it, maybe afar."""

    lab: Lab
    lan: Lan
    host: Host
    friend: Host
    far: Host | None  # the far friend, with ``far_nat``

    @property
    def far_friend(self) -> Host:
        if self.far is None:
            raise LabError("this home was built without far_nat: there is no far friend")
        return self.far

    @property
    def dir(self) -> Path:
        return self.lab.dir

    @property
    def inet(self) -> Host:
        return self.lab.internet

    def popen(self, host: Host, *cmd: str, log: Path, **kw: Any) -> subprocess.Popen[bytes]:
        return self.lab.popen(host, list(cmd), log=log, **kw)

    def upnpc_list(self, host: Host | None = None) -> list[PortEntry]:
        """The router's forwardings as ``upnpc -l`` shows them from the LAN."""
        return self.lab.upnpc_list(host or self.host)


def build_home(
    lab: Lab, *, upnp: bool = True, min_lifetime: int = 120, far_nat: NatKind | None = None
) -> HomeLab:
    """The home LAN (first LAN of ``lab``) and, with ``far_nat``, the friend's far home."""
    lan = lab.add_lan("cone", upnp=upnp, min_lifetime=min_lifetime)
    host, friend = lan.add_host("host"), lan.add_host("friend")
    far = lab.add_lan(far_nat).add_host("far-friend") if far_nat else None
    seen = (lan.wan_address, lan.router_address, host.address, friend.address)
    if seen != (WAN_IP, ROUTER_LAN_IP, HOST_IP, FRIEND_IP):
        raise LabError(f"the home LAN must be the lab's first: addresses {seen}")
    return HomeLab(lab, lan, host, friend, far)


def lab_unavailable_reason(upnp: bool = True) -> str | None:
    """Why the home cannot be built (with ``upnp``: miniupnpd, upnpc, coturn needed), or None."""
    return upnp_unavailable_reason() if upnp else netns_unavailable_reason()
