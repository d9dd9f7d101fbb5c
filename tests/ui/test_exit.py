"""Clean exit: a real `peercall gui` process calls, hangs up and exits 0; many signals survive."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QObject, Signal

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gui_process_exits_zero_after_a_loopback_call(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "gui", "--self-test-call", "--config-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert "Fatal Python error" not in proc.stderr
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "peercall: self-test connected" in proc.stdout
    assert "peercall: self-test hung up" in proc.stdout


class Emitter(QObject):
    ping = Signal(object)


def test_many_signals_across_the_qasync_loop(qtbot: Any, qloop: Any) -> None:
    """PySide6 6.12.0 aborted (bool_dealloc) after a few thousand emissions; 6.11.3 is pinned."""
    emitter = Emitter()
    received: list[object] = []
    emitter.ping.connect(received.append)
    count = 20_000

    def burst(start: int) -> None:
        for i in range(start, start + 1000):
            emitter.ping.emit(i % 2 == 0 or None)

    for start in range(0, count, 1000):
        qloop.call_soon(burst, start)
    qtbot.waitUntil(lambda: len(received) == count, timeout=30_000)
