"""The PyInstaller one-folder bundle: build it from packaging/peercall.spec and run it.

This is the CI check of issue 6: the built app (not the venv) passes ``--self-check`` with no
display, opens its real main window, and carries PortAudio but none of Qt's heavy modules.
The build takes well under a minute here, so it runs with the rest of the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYINSTALLER = Path(sys.executable).with_name("pyinstaller")

pytestmark = pytest.mark.slow


def headless_env() -> dict[str, str]:
    """No display at all and no QT_QPA_PLATFORM: the app must cope by itself."""
    drop = ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Build dist/peercall into a temp dir (never the repo's own build/ and dist/)."""
    assert PYINSTALLER.exists(), "pyinstaller missing: pip install -e '.[test]'"
    out = tmp_path_factory.mktemp("bundle")
    try:
        yield build_bundle(out)
    finally:  # hundreds of MiB: never leave them to pytest's 3-run retention
        shutil.rmtree(out, ignore_errors=True)


def build_bundle(out: Path) -> Path:
    proc = subprocess.run(
        [
            str(PYINSTALLER),
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            str(out / "dist"),
            "--workpath",
            str(out / "work"),
            str(ROOT / "packaging" / "peercall.spec"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    exe = out / "dist" / "peercall" / "peercall"
    assert exe.is_file()
    return exe


@pytest.mark.timeout(900)
def test_bundle_builds_with_portaudio_and_without_heavy_qt(bundle: Path) -> None:
    internal = bundle.parent / "_internal"
    assert list(internal.glob("libportaudio.so*")), "PortAudio is not in the bundle"
    assert (internal / "av").is_dir()
    assert (internal / "PySide6" / "QtWidgets.abi3.so").is_file()
    qt_libs = {p.name.split(".so")[0] for p in (internal / "PySide6" / "Qt" / "lib").iterdir()}
    for heavy in ("libQt6WebEngineCore", "libQt6Qml", "libQt6Quick", "libQt6Multimedia"):
        assert heavy not in qt_libs
    assert not list(internal.rglob("*pytest*")), "test tools leaked into the bundle"
    # The window icon (app/ui/peercall.svg) and the Qt plugin that renders SVG icons.
    assert (internal / "app" / "ui" / "peercall.svg").is_file()
    assert list((internal / "PySide6" / "Qt" / "plugins").rglob("libqsvg*.so"))
    # The spec strips debug info from unpatched extension modules (tens of MiB).
    readelf = shutil.which("readelf")
    assert readelf, "binutils missing: run scripts/install-system-deps.sh"
    for module in [*internal.glob("webrtc_noise_gain/*.so"), *internal.glob("uvloop/loop*.so")]:
        sections = subprocess.run(
            [readelf, "-S", "-W", str(module)], capture_output=True, text=True, check=True
        ).stdout
        assert ".debug_info" not in sections, f"{module.name} still carries debug info"


@pytest.mark.timeout(300)
def test_bundled_app_passes_its_self_check(bundle: Path) -> None:
    proc = subprocess.run(
        [str(bundle), "--self-check", "--call-seconds", "2"],
        cwd=bundle.parent,
        env=headless_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "self-check passed: 5 steps" in proc.stdout
    assert "relayed call connected" in proc.stdout


@pytest.mark.timeout(300)
def test_bundled_app_opens_its_main_window_and_exits_cleanly(bundle: Path, tmp_path: Path) -> None:
    env = {**headless_env(), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run(
        [str(bundle), "gui", "--print-ready", "--quit-after", "0", "--config-dir", str(tmp_path)],
        cwd=bundle.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "peercall: window shown" in proc.stdout
    version = subprocess.run(
        [str(bundle), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert version.stdout.strip() == "peercall 0.1.0"


@pytest.mark.audio
@pytest.mark.timeout(300)
def test_bundled_portaudio_sees_the_virtual_sound_card(bundle: Path, virtual_audio: object) -> None:
    """The bundled PortAudio finds PulseAudio through the system's ALSA plugins."""
    proc = subprocess.run(
        [str(bundle), "--self-check", "--require-audio", "--call-seconds", "0.5"],
        cwd=bundle.parent,
        env=headless_env(),  # carries PULSE_SERVER/XDG_RUNTIME_DIR set by virtual_audio
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "default input" in proc.stdout
