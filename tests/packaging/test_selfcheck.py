"""``peercall --self-check``: the installation check, run as a real process from the venv."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli, selfcheck

ROOT = Path(__file__).resolve().parents[2]
PEERCALL = Path(sys.executable).with_name("peercall")


def run_peercall(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run(
        [str(PEERCALL), *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def step_lines(stdout: str) -> dict[str, str]:
    """``{step name: its line}`` for the ✓/✗ lines of a report."""
    lines = {}
    for line in stdout.splitlines():
        if line[:1] in ("✓", "✗"):
            name = line[2:16].strip()
            lines[name] = line
    return lines


@pytest.mark.slow
def test_self_check_passes_headless_with_a_relayed_call() -> None:
    # No QT_QPA_PLATFORM and no display: the check itself must fall back to offscreen.
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    proc = subprocess.run(
        [str(PEERCALL), "--self-check", "--call-seconds", "2"],
        cwd=ROOT,
        env={k: v for k, v in env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    steps = step_lines(proc.stdout)
    assert list(steps) == ["qt window", "audio devices", "relay", "call", "shutdown"]
    assert all(line.startswith("✓") for line in steps.values()), proc.stdout
    assert "platform offscreen" in steps["qt window"]
    assert "turn:127.0.0.1:" in steps["relay"]
    assert "relayed call connected" in steps["call"]
    assert "440 Hz tone" in steps["call"]
    # Each line carries its duration in seconds.
    assert all(" s  " in line for line in steps.values())
    assert "self-check passed: 5 steps" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_require_audio_without_devices_fails_naming_the_step() -> None:
    # No sound card here, and no PulseAudio server to reach: PortAudio lists no devices.
    empty = {"PULSE_SERVER": "unix:/nonexistent"}
    proc = run_peercall("self-check", "--require-audio", "--call-seconds", "0.5", env=empty)
    steps = step_lines(proc.stdout)
    if steps.get("audio devices", "").startswith("✓"):
        pytest.skip(f"this machine has audio devices: {steps['audio devices']}")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    assert "--require-audio needs at least one of each" in steps["audio devices"]
    # The other steps still ran and passed: one report names every problem.
    assert steps["call"].startswith("✓")
    assert "self-check failed at step 'audio devices'" in proc.stdout


def test_bad_call_seconds_is_a_one_line_error() -> None:
    proc = run_peercall("--self-check", "--call-seconds", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "peercall: error: --call-seconds must be between 0.5 and 60, got 0"
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--self-check"], ["self-check"]),
        (["-v", "--self-check", "--require-audio"], ["-v", "self-check", "--require-audio"]),
        (["call", "--self-check"], ["call", "--self-check"]),  # belongs to the subcommand
        (["relay"], ["relay"]),
    ],
)
def test_self_check_flag_is_an_alias_of_the_command(argv: list[str], expected: list[str]) -> None:
    assert cli._self_check_alias(argv) == expected


def test_report_marks_fall_back_to_ascii() -> None:
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    report = selfcheck.Report(out)
    report.add(selfcheck.StepResult("relay", False, 0.25, "port in use"))
    out.flush()
    text = out.buffer.getvalue().decode()
    assert text.startswith("FAIL relay")
    assert "0.25 s  port in use" in text
    assert report.failed is not None
    assert report.failed.name == "relay"


def test_selfcheck_module_does_not_import_qt_or_aiortc_at_import_time() -> None:
    code = (
        "import sys, app.selfcheck; "
        "bad = [m for m in ('PySide6', 'aiortc', 'av') if m in sys.modules]; print(bad)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "[]"


@pytest.mark.audio
@pytest.mark.slow
def test_require_audio_passes_with_the_virtual_sound_card(virtual_audio: object) -> None:
    # virtual_audio put PULSE_SERVER/XDG_RUNTIME_DIR in os.environ; the child inherits them.
    proc = run_peercall("--self-check", "--require-audio", "--call-seconds", "0.5")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    line = step_lines(proc.stdout)["audio devices"]
    assert line.startswith("✓")
    assert "default input" in line


async def test_steps_report_success_step_failures_and_unexpected_errors() -> None:
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    checker = selfcheck.SelfCheck(selfcheck.Report(out), require_audio=False, call_seconds=1)

    def unexpected() -> str:
        raise ValueError("boom")

    def failed() -> str:
        raise selfcheck.StepFailed("no relay")

    async def fine() -> str:
        return "all good"

    assert checker._step("ok", lambda: "fine")
    assert not checker._step("failed", failed)
    assert not checker._step("unexpected", unexpected)
    assert await checker._astep("async ok", fine)
    out.flush()
    lines = out.buffer.getvalue().decode().splitlines()
    assert [line[0] for line in lines] == ["✓", "✗", "✗", "✓"]
    assert lines[1].endswith("s  no relay")
    assert lines[2].endswith("s  ValueError: boom")
    assert lines[3].endswith("s  all good")
    assert checker.report.failed is not None
    assert checker.report.failed.name == "failed"
