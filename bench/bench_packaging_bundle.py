"""Issue 6's bundle figures: PyInstaller build time, bundle size, cold and warm start.

1. Builds packaging/peercall.spec into a temp dir (or measures an existing ``--bundle``) and
   reports the wall time of the build and the size of the one-folder app (``du``-style bytes).
2. Start-up: spawn ``peercall gui --print-ready --quit-after 0`` offscreen and time spawn ->
   the ``peercall: window shown`` line on stdout (the main window is on screen). The first run
   after the build is reported as "first", then ``--drop-caches`` (root) empties the page cache
   before one truly cold run, then ``--runs`` warm runs give the median. The venv's own
   ``peercall`` is measured the same way for comparison.
3. The bundled ``--self-check`` wall time.

Usage: ``.venv/bin/python bench/bench_packaging_bundle.py [--bundle DIST/peercall/peercall]
[--runs 5] [--drop-caches]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "peercall: window shown"


def build(out: Path) -> tuple[Path, float]:
    start = time.perf_counter()
    subprocess.run(
        [
            str(Path(sys.executable).with_name("pyinstaller")),
            "--noconfirm",
            "--log-level",
            "ERROR",
            "--distpath",
            str(out / "dist"),
            "--workpath",
            str(out / "work"),
            str(ROOT / "packaging" / "peercall.spec"),
        ],
        cwd=ROOT,
        check=True,
    )
    return out / "dist" / "peercall" / "peercall", time.perf_counter() - start


def tree_bytes(folder: Path) -> int:
    """Allocated size of every file under ``folder``, like ``du -s`` (no double-counted links)."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_blocks * 512
    return total


def env() -> dict[str, str]:
    drop = ("DISPLAY", "WAYLAND_DISPLAY")
    return {
        **{k: v for k, v in os.environ.items() if k not in drop},
        "QT_QPA_PLATFORM": "offscreen",
    }


def start_time(command: list[str], config_dir: Path) -> float:
    """Seconds from spawn until the window-shown marker appears on stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*command, "gui", "--print-ready", "--quit-after", "0", "--config-dir", str(config_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env(),
    )
    assert proc.stdout is not None
    elapsed = None
    for line in proc.stdout:
        if line.startswith(MARKER):
            elapsed = time.perf_counter() - start
    if proc.wait(timeout=120) != 0 or elapsed is None:
        raise SystemExit(f"{command[0]} did not show its window (exit {proc.returncode})")
    return elapsed


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        print(f"  (cannot drop the page cache: {exc.strerror}; cold run skipped)")
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="measure this built bundle instead")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--drop-caches", action="store_true", help="one cold run (needs root)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="peercall-bundle-"))
    try:
        if args.bundle:
            exe = args.bundle.resolve()
        else:
            exe, seconds = build(tmp)
            print(f"build (pyinstaller packaging/peercall.spec): {seconds:.1f} s")
        size = tree_bytes(exe.parent)
        print(f"bundle size ({exe.parent.name}/): {size / 2**20:.0f} MiB")
        config = tmp / "config"
        config.mkdir()
        print(f"start, first run after build: {start_time([str(exe)], config):.2f} s")
        if args.drop_caches and drop_caches():
            print(f"start, cold (page cache dropped): {start_time([str(exe)], config):.2f} s")
        warm = [start_time([str(exe)], config) for _ in range(args.runs)]
        print(f"start, warm: median {statistics.median(warm):.2f} s over {len(warm)} runs")
        venv = [
            start_time([str(Path(sys.executable).with_name("peercall"))], config)
            for _ in range(args.runs)
        ]
        print(f"start, venv peercall (reference): median {statistics.median(venv):.2f} s")
        start = time.perf_counter()
        check = subprocess.run(
            [str(exe), "--self-check"],
            env=env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        verdict = "passed" if check.returncode == 0 else f"FAILED ({check.returncode})"
        print(f"bundled --self-check: {verdict} in {time.perf_counter() - start:.2f} s")
        return 0 if check.returncode == 0 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
