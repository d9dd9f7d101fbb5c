"""app.startup: the collector is off while a command loads, then the start-up heap is frozen."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from app import startup


@pytest.fixture
def restore_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


def test_begin_turns_collection_off_and_end_freezes_and_turns_it_back_on(
    restore_gc: None,
) -> None:
    gc.enable()
    startup.begin()
    assert not gc.isenabled()
    startup.end()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    frozen = gc.get_freeze_count()
    startup.end()  # a second end changes nothing
    assert gc.get_freeze_count() == frozen


def test_end_without_begin_leaves_the_collector_alone(restore_gc: None) -> None:
    gc.enable()
    gc.unfreeze()
    startup.end()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_a_peercall_process_collects_again_after_start_up() -> None:
    """The real entry point: a command that fails early still leaves the collector on."""
    code = (
        "import gc, sys\n"
        "from app import cli\n"
        "sys.argv = ['peercall', 'call', '--gather-timeout', '0', '--no-devices']\n"
        "status = cli.main()\n"
        "print(status, gc.isenabled(), gc.get_freeze_count() > 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["2", "True", "True"]
    assert "--gather-timeout must be positive" in out.stderr
