"""The ``lab`` fixture: a fresh NAT lab per test, deleted afterwards even when the test fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netlab.lab import Lab, netns_unavailable_reason


def require_netns() -> None:
    """Skip when namespaces are unavailable, with the reason; in CI (CI=true) fail instead."""
    reason = netns_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"NAT lab unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"NAT lab unavailable: {reason}")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """An empty lab (the internet namespace only); add LANs, hosts and services in the test."""
    require_netns()
    with Lab(workdir=tmp_path) as built:
        try:
            yield built
        finally:
            # On failure, the topology helps read the logs in tmp_path.
            (tmp_path / "lab.txt").write_text("\n".join(built.describe()) + "\n")
