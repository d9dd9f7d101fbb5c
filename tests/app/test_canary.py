"""Every private aiortc/aioice name app.rtcfixes uses still exists in the installed versions."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from app.rtcfixes.canary import PRIVATE_ATTRIBUTES, missing

ROOT = Path(__file__).resolve().parents[2]


async def test_no_private_attribute_went_missing() -> None:
    gone = await missing()
    assert not gone, f"aiortc/aioice upgrade removed: {', '.join(gone)} (see app/rtcfixes)"


def test_every_private_name_used_in_rtcfixes_is_listed() -> None:
    """A new private access in rtcfixes must join the canary list."""
    listed = {name for _, name in PRIVATE_ATTRIBUTES}
    ours = {"_peercall_rtp_hook", "_peercall_check_stats"}  # set by PeerCall itself
    used: set[str] = set()
    for path in (ROOT / "app" / "rtcfixes").glob("*.py"):
        if path.name == "canary.py":
            continue
        text = path.read_text()
        for _obj, name in re.findall(r"\b(conn|connection|pc|receiver|transceiver|sctp|"
                                    r"remote|g|gatherer)\.(_[A-Za-z_0-9]+)", text):  # fmt: skip
            used.add(name)
    unlisted = sorted(used - listed - ours)
    assert not unlisted, f"private names used in app/rtcfixes but not in the canary: {unlisted}"


def test_aiortc_and_aioice_are_pinned_to_the_tested_minor_versions() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    for package in ("aiortc", "aioice"):
        version = importlib.metadata.version(package)
        major, minor = version.split(".")[:2]
        pin = re.search(rf'"{package}([^"]*)"', text)
        assert pin is not None, package
        assert f"=={major}.{minor}." in pin.group(1) or f"~={major}.{minor}." in pin.group(1), (
            f"{package} {version} installed but pyproject says {pin.group(0)}"
        )
