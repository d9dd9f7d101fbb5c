"""The NAT lab: real NATs from network namespaces, for tests, benchmarks and people.

Topology (addresses only from the ranges reserved for it, only inside namespaces it creates)::

    internet host 198.18.0.1 (bridge br0: runs `peercall signal`, `peercall relay`, coturn)
      |-- router of LAN 1, WAN 198.18.0.10 --- LAN 198.19.1.0/24 (hosts .10, .11, …)
      |-- router of LAN 2, WAN 198.18.0.11 --- LAN 198.19.2.0/24
      |-- public host 198.18.0.100 (kind "public": no NAT)

Usage (needs root; the ``lab`` fixture in tests/netlab/conftest.py skips without it, and fails
in CI)::

    from tests.netlab import Lab

    with Lab() as lab:                      # or the pytest fixture ``lab``
        home = lab.add_lan("cone")          # "cone" | "symmetric" | "udp-blocked" | "public"
        alice = home.add_host("alice")      # Host: .ns (netns name), .address
        bob = lab.add_lan("public").add_host("bob")
        url = lab.start_signal()            # ws://198.18.0.1:8765
        relay = lab.start_relay()           # or start_relay("coturn", port=3479)
        relay.stun, relay.turn("udp"), relay.turn("tcp")   # --ice-server specs
        proc = lab.popen(alice, [sys.executable, "-m", "app.cli", "call", ...], log=path)
        lab.run(bob, ["ping", "-c1", "198.18.0.1"])         # CompletedProcess
        lab.loss(home, 5)                   # 5 % each way through the router; 0 clears
        lab.outage(home); lab.restore(home)
        lab.change_public_address(home)     # router's WAN address moves; returns the new one
        lab.block_between(home, other)      # no packet between two routers' WAN addresses
        lab.unblock_between(home, other)
        lab.block_udp(home); lab.unblock_udp(home)   # the router forwards TCP only, for a while
        upnp = lab.add_lan("cone", upnp=True)   # router runs miniupnpd (UPnP-IGD, NAT-PMP, PCP)
        lab.upnpc_list(upnp.add_host())     # its forwardings as `upnpc -l` lists them
    # every process stopped, every namespace deleted, also on errors

- NAT kinds: cone = plain masquerade (endpoint-independent mapping, port-restricted filtering);
  symmetric = masquerade random (a new port per destination); udp-blocked = only TCP leaves;
  public = host directly on the internet. Routers drop unsolicited WAN packets to themselves.
- ``upnp=True`` also starts coturn as an RFC 5780 STUN server on 198.18.0.1 and 198.18.0.2,
  port 3478 (miniupnpd 2.3 refuses a reserved WAN address unless its STUN check says the
  router is unfiltered): start a relay of that lab on another port. ``upnpc`` calls such a
  router "not connected", hence ``upnpc -u`` with :attr:`Lan.upnp_location`.
- Namespaces are named ``pcnl-<pid>-<lab>-<role>``: parallel runs never clash, and
  :func:`clean_stale` (run on every ``Lab()`` entry) deletes leftovers whose pid is dead.
- ``lab.popen`` runs in the repository root with this Python, so
  ``[sys.executable, "-m", "app.cli", …]`` is the ``peercall`` command. Set ``log=`` to a file
  to read its output while it runs.
- :mod:`tests.netlab.icepeers` drives two ICE test peers (tests/app/rtcfixes/icepeer.py).
- :mod:`tests.netlab.calls` starts and checks ``peercall call`` processes (tone, record, path);
  ``scripts/netlab.py`` brings one scenario up by hand.
"""

from tests.netlab.lab import (
    INTERNET_HOST,
    NAT_KINDS,
    Host,
    Lab,
    LabError,
    Lan,
    NatKind,
    PortEntry,
    Relay,
    clean_stale,
    netns_unavailable_reason,
    upnp_unavailable_reason,
)

__all__ = [
    "INTERNET_HOST",
    "NAT_KINDS",
    "Host",
    "Lab",
    "LabError",
    "Lan",
    "NatKind",
    "PortEntry",
    "Relay",
    "clean_stale",
    "netns_unavailable_reason",
    "upnp_unavailable_reason",
]
