"""``pipx install .`` gives a working ``peercall``: the lightweight install path of issue 6.

pipx runs from the test venv with its home and bin dir in a temp dir, installing a copy of the
working tree (so the repo never gets a build/ folder from it); the installed command must report
its version and pass the self-check.
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


def copy_tree(dest: Path) -> None:
    """The files git would ship (tracked and new, not ignored) copied to ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


@pytest.fixture
def pipx_dir(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path``, emptied afterwards: the pipx venv is ~500 MiB and pytest keeps 3 runs."""
    yield tmp_path
    for child in tmp_path.iterdir():
        shutil.rmtree(child, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pipx_install_gives_a_working_peercall(pipx_dir: Path) -> None:
    tmp_path = pipx_dir
    source = tmp_path / "peercall-src"
    copy_tree(source)
    env = {
        **os.environ,
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
    }
    install = subprocess.run(
        [sys.executable, "-m", "pipx", "install", str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr[-3000:]
    peercall = tmp_path / "bin" / "peercall"
    assert peercall.exists()

    version = subprocess.run(
        [str(peercall), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert version.stdout.strip() == "peercall 0.1.0"

    headless = {k: v for k, v in env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    check = subprocess.run(
        [str(peercall), "--self-check", "--call-seconds", "1"],
        cwd=tmp_path,  # not the repo: the installed package must stand on its own
        env=headless,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr[-2000:]
    assert "self-check passed: 5 steps" in check.stdout
