"""Two real ``peercall call`` processes calling each other through a signaling server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def call_two_processes(
    answer_url: str,
    dial_url: str,
    *options: str,
    room: str = "room",
    duration: float = 2,
    limit: float = 90,
) -> list[str]:
    """Run an answering and a dialling ``peercall call`` (loopback, no devices) to the end.

    Each may reach a different server (two cluster nodes). Asserts both exited 0, said "call
    connected" and printed no traceback; returns their stderr texts (dialler first).
    """
    common: Sequence[str] = (
        sys.executable, "-m", "app.cli", "call", "--loopback", "--no-devices",
        "--duration", str(duration), "--room", room, "--secret", "pw", *options,
    )  # fmt: skip
    procs: list[asyncio.subprocess.Process] = []
    try:
        for url, extra in ((answer_url, ["--answer"]), (dial_url, [])):
            argv = [*common, "--server", url, *extra]
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT
            )
            procs.append(proc)
        callee, caller = procs
        results = await asyncio.wait_for(
            asyncio.gather(caller.communicate(), callee.communicate()), limit
        )
    finally:  # a timed-out call must not leave the two processes running
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    errs = [err.decode() for _, err in results]
    assert (caller.returncode, callee.returncode) == (0, 0), errs
    for err in errs:
        assert "call connected" in err
        assert "Traceback" not in err
    return errs
