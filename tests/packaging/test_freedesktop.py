"""The .desktop entry, AppStream metadata and icons, checked with the freedesktop validators."""

from __future__ import annotations

import configparser
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "packaging" / "linux"
APP_ID = "org.peercall.PeerCall"
DESKTOP = LINUX / f"{APP_ID}.desktop"
METAINFO = LINUX / f"{APP_ID}.metainfo.xml"
ICONS = LINUX / "icons" / "hicolor"
SIZES = (16, 32, 48, 64, 128, 256, 512)


def tool(name: str) -> str:
    """The validator's path; scripts/install-system-deps.sh installs it, so it must be there."""
    path = shutil.which(name)
    assert path, f"{name} missing: run scripts/install-system-deps.sh"
    return path


def test_desktop_entry_validates() -> None:
    proc = subprocess.run(
        [tool("desktop-file-validate"), str(DESKTOP)], capture_output=True, text=True, check=False
    )
    # desktop-file-validate prints nothing at all for a clean file (not even hints).
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout + proc.stderr == ""


def test_desktop_entry_runs_peercall_with_our_icon() -> None:
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(DESKTOP, encoding="utf-8")
    group = entry["Desktop Entry"]
    assert group["Exec"].split()[0] == "peercall"
    assert group["Icon"] == APP_ID
    # The WM class is what Qt sets from QApplication.applicationName (app.ui.main: "PeerCall").
    assert group["StartupWMClass"] == "PeerCall"


def test_metainfo_validates_without_errors_or_warnings() -> None:
    proc = subprocess.run(
        [tool("appstreamcli"), "validate", "--no-net", "--explain", str(METAINFO)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    issues = [line for line in output.splitlines() if line[:2] in ("E:", "W:")]
    assert not issues, output


def test_metainfo_names_the_desktop_entry_and_binary() -> None:
    text = METAINFO.read_text(encoding="utf-8")
    assert f"<id>{APP_ID}</id>" in text
    assert f'<launchable type="desktop-id">{APP_ID}.desktop</launchable>' in text
    assert "<binary>peercall</binary>" in text


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (PNG spec §11.2.2)."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("size", SIZES)
def test_png_icon_exists_at_each_theme_size(size: int) -> None:
    path = ICONS / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
    assert path.is_file(), f"missing {path.relative_to(ROOT)}: run packaging/render_icons.py"
    assert png_size(path) == (size, size)


def test_scalable_icon_is_the_source_svg() -> None:
    scalable = ICONS / "scalable" / "apps" / f"{APP_ID}.svg"
    source = ROOT / "app" / "ui" / "peercall.svg"
    assert scalable.read_bytes() == source.read_bytes()
    assert b"<svg" in source.read_bytes()


def test_windows_icon_holds_png_frames() -> None:
    data = (ROOT / "packaging" / "windows" / "peercall.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    assert (reserved, kind) == (0, 1)
    sizes = []
    for i in range(count):
        width, _h, _c, _r, _p, _bpp, length, offset = struct.unpack(
            "<BBBBHHII", data[6 + 16 * i : 22 + 16 * i]
        )
        assert data[offset : offset + 8] == b"\x89PNG\r\n\x1a\n"
        assert offset + length <= len(data)
        sizes.append(width or 256)
    assert sizes == [16, 32, 48, 256]


def test_make_install_desktop_puts_files_where_desktops_look(tmp_path: Path) -> None:
    data_home = tmp_path / "share"
    subprocess.run(
        [tool("make"), "-s", "install-desktop", f"DATA_HOME={data_home}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert (data_home / "applications" / f"{APP_ID}.desktop").read_bytes() == DESKTOP.read_bytes()
    assert (data_home / "metainfo" / f"{APP_ID}.metainfo.xml").is_file()
    for size in SIZES:
        icon = data_home / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        assert png_size(icon) == (size, size)
    assert (data_home / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg").is_file()


def test_metainfo_screenshots_are_files_of_this_repo() -> None:
    text = METAINFO.read_text(encoding="utf-8")
    prefix = "https://raw.githubusercontent.com/peercall/peercall/main/"
    urls = [
        line.split("<image>")[1].split("</image>")[0]
        for line in text.splitlines()
        if "<image>" in line
    ]
    assert urls
    for url in urls:
        assert url.startswith(prefix), url
        assert (ROOT / url.removeprefix(prefix)).is_file(), f"{url} has no file in the repo"
