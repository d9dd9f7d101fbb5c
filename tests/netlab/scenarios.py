"""Named two-host topologies, shared by scripts/netlab.py and bench/bench_netlab.py.

A name is ``<kind of a>-<kind of b>``; ``same-lan`` puts both hosts behind one cone router.
"""

from __future__ import annotations

from tests.netlab.lab import Host, Lab, NatKind

# name -> (kind of a's LAN, kind of b's LAN or None for "the same LAN as a")
SCENARIOS: dict[str, tuple[NatKind, NatKind | None]] = {
    "same-lan": ("cone", None),
    "cone-cone": ("cone", "cone"),
    "public-cone": ("public", "cone"),
    "symmetric-public": ("symmetric", "public"),
    "symmetric-symmetric": ("symmetric", "symmetric"),
    "udp-blocked-cone": ("udp-blocked", "cone"),
}


def build(lab: Lab, name: str) -> tuple[Host, Host]:
    """Add the two LANs (or one) of scenario ``name`` and a host ``a`` and ``b`` on them."""
    try:
        kind_a, kind_b = SCENARIOS[name]
    except KeyError:
        raise ValueError(
            f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}"
        ) from None
    lan_a = lab.add_lan(kind_a)
    lan_b = lan_a if kind_b is None else lab.add_lan(kind_b)
    return lan_a.add_host("a"), lan_b.add_host("b")
