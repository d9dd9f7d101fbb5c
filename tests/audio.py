"""A private PulseAudio server with null devices: a sound card for machines that have none.

The server runs in user mode (it works as root too) with its own runtime directory, so several
engineers or CI jobs can each run one at once without seeing each other's. It offers:

- ``vspeaker``: a null sink (48 kHz mono, ``norewinds=1``: without it PortAudio stalls on a
  null sink). It is the default sink, so whatever is played goes there.
- ``vspeaker.monitor``: the default source, so a recorder hears what is played (loopback).
- ``vmic``: a null source (silence), for a microphone that must hear nothing.

Clients reach it through ``PULSE_SERVER``; PortAudio reaches it through ALSA's ``pulse`` and
``default`` devices (libasound2-plugins). Used by the ``virtual_audio`` fixture in
``tests/conftest.py`` and by the media benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SINK = "vspeaker"
MONITOR = "vspeaker.monitor"
SILENT_SOURCE = "vmic"


class VirtualAudioError(RuntimeError):
    """The private PulseAudio server could not be started."""


class VirtualAudio:
    """One private PulseAudio daemon; ``env`` holds what a client process needs to reach it."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="peercall-pulse-"))
        self.socket = self.dir / "pulse" / "native"
        self.env = {
            "XDG_RUNTIME_DIR": str(self.dir),
            "PULSE_SERVER": f"unix:{self.socket}",
        }
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.dir / "pulseaudio.log"

    def start(self, timeout: float = 10.0) -> None:
        exe = shutil.which("pulseaudio")
        if exe is None:
            raise VirtualAudioError(
                "pulseaudio is not installed (run scripts/install-system-deps.sh)"
            )
        (self.dir / "pulse").mkdir(mode=0o700)
        (self.dir / "home").mkdir(mode=0o700)
        env = {
            **os.environ,
            **self.env,
            "HOME": str(self.dir / "home"),  # its cookie and state stay in the private dir
        }
        cmd = [
            exe,
            "--daemonize=no",
            "-n",  # no default.pa: exactly the modules below
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--disable-shm=yes",
            "--use-pid-file=no",
            "--system=false",
            "-L",
            f"module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
            "-L",
            f"module-null-sink sink_name={SINK} rate=48000 channels=1 norewinds=1",
            "-L",
            f"module-null-source source_name={SILENT_SOURCE} rate=48000 channels=1",
        ]
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise VirtualAudioError(f"pulseaudio exited at start: {self.log_tail()}")
            if self.socket.exists() and self._pactl("info", check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise VirtualAudioError(f"pulseaudio did not come up in {timeout} s")
            time.sleep(0.05)
        self._pactl("set-default-sink", SINK)
        self._pactl("set-default-source", MONITOR)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self._log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])

    def _pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["pactl", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if check and proc.returncode != 0:
            raise VirtualAudioError(f"pactl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def pactl(self, *args: str) -> str:
        """Run ``pactl`` against this server and return its output."""
        return self._pactl(*args).stdout

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def virtual_audio_env() -> Iterator[VirtualAudio]:
    """Run a private PulseAudio server and point this process (and its children) at it.

    Sets ``XDG_RUNTIME_DIR`` and ``PULSE_SERVER`` in ``os.environ`` and restarts PortAudio so that
    sounddevice sees the ``pulse`` device; restores both on exit.
    """
    from app.media import devices

    server = VirtualAudio()
    saved = {key: os.environ.get(key) for key in server.env}
    try:
        server.start()
        os.environ.update(server.env)
        devices.refresh()
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
        # PortAudio without a server is still usable: it just sees fewer devices.
        with contextlib.suppress(Exception):
            devices.refresh()


def main(argv: list[str]) -> int:
    """Run a command with the virtual sound card: ``python -m tests.audio CMD [ARGS...]``."""
    if not argv:
        print("usage: python -m tests.audio COMMAND [ARGS...]", file=sys.stderr)
        return 2
    server = VirtualAudio()
    try:
        server.start()
        print(f"virtual sound card: PULSE_SERVER={server.env['PULSE_SERVER']}", file=sys.stderr)
        return subprocess.run(argv, env={**os.environ, **server.env}, check=False).returncode
    except VirtualAudioError as exc:
        print(f"virtual-audio: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
