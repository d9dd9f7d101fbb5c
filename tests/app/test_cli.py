from __future__ import annotations

import subprocess
import sys

import pytest

from app import cli


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0
        assert name in capsys.readouterr().out


def test_unknown_command_is_one_line_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "frobnicate"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "invalid choice: 'frobnicate'" in proc.stderr
    assert "Traceback" not in proc.stderr
