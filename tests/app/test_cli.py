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


def test_a_command_imports_only_its_own_module() -> None:
    # `peercall call` must not pay for the relay's config reader or port mapping at start.
    code = (
        "import sys\n"
        "from app import cli\n"
        "try:\n"
        "    cli.main(['call', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('nat.conffile', 'nat.portmap', 'app.link', 'app.ui.main')"
        " if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_top_level_help_still_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out
