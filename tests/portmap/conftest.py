"""The router lab for port mapping tests: tests/portmap/home.py on the NAT lab."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netlab.lab import Lab
from tests.portmap.home import HomeLab, build_home, lab_unavailable_reason


def skip_unless_lab(upnp: bool = True) -> None:
    reason = lab_unavailable_reason(upnp)
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def router_lab(tmp_path: Path) -> Iterator[HomeLab]:
    """A router running miniupnpd (UPnP-IGD, NAT-PMP, PCP) with the host on its LAN."""
    skip_unless_lab()
    with Lab(workdir=tmp_path) as lab:
        yield build_home(lab)


@pytest.fixture
def plain_router_lab(tmp_path: Path) -> Iterator[HomeLab]:
    """The same router with no port mapping daemon at all (UPnP turned off)."""
    skip_unless_lab(upnp=False)
    with Lab(workdir=tmp_path) as lab:
        yield build_home(lab, upnp=False)
