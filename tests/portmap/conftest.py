"""The router lab for port mapping tests (tests/portmap/lab.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.portmap.lab import RouterLab, skip_unless_lab


@pytest.fixture
def router_lab(tmp_path: Path) -> Iterator[RouterLab]:
    """A router running miniupnpd (UPnP-IGD, NAT-PMP, PCP) with the host on its LAN."""
    skip_unless_lab()
    lab = RouterLab(tmp_path)
    try:
        yield lab.start()
    finally:
        lab.close()


@pytest.fixture
def plain_router_lab(tmp_path: Path) -> Iterator[RouterLab]:
    """The same router with no port mapping daemon at all (UPnP turned off)."""
    skip_unless_lab()
    lab = RouterLab(tmp_path, upnp=False)
    try:
        yield lab.start()
    finally:
        lab.close()
