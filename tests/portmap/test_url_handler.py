"""peercall:// links from the desktop: the .desktop handler, ``peercall URL``, ``peercall open``."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

from app.cli import _link_alias, build_parser

REPO = Path(__file__).resolve().parents[2]
DESKTOP = REPO / "packaging" / "linux" / "org.peercall.PeerCall.desktop"
LINK = "peercall://198.18.0.2:8765/kitchen#secret=abc"


def test_desktop_entry_handles_peercall_links():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(DESKTOP, encoding="utf-8")
    group = entry["Desktop Entry"]
    assert "x-scheme-handler/peercall" in group["MimeType"].split(";")
    assert group["Exec"] == "peercall gui %u"  # %u: the clicked link, or nothing from the menu


def test_gui_takes_the_link_the_desktop_passes():
    args = build_parser().parse_args(["gui", LINK])
    assert args.link == LINK
    assert build_parser().parse_args(["gui"]).link is None


def test_a_bare_link_means_open():
    assert _link_alias([LINK]) == ["open", LINK]
    assert _link_alias(["-v", LINK, "--send-tone"]) == ["-v", "open", LINK, "--send-tone"]
    assert _link_alias(["call", "--server", "ws://x"]) == ["call", "--server", "ws://x"]
    args = build_parser().parse_args(_link_alias([LINK]))
    assert (args.command, args.link) == ("open", LINK)


def run_peercall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_open_with_a_broken_link_is_one_line_and_exit_2():
    result = run_peercall("open", "peercall://198.18.0.2:8765/kitchen")
    assert result.returncode == 2
    assert result.stderr == (
        "peercall: error: the link has no secret (cut off when it was copied?)\n"
    )


def test_open_refuses_a_second_server():
    result = run_peercall("open", LINK, "--server", "ws://127.0.0.1:1")
    assert result.returncode == 2
    assert result.stderr == (
        "peercall: error: --server conflicts with the link: the link says where to go\n"
    )
