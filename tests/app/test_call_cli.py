"""`peercall call`: two real processes exchange blobs, audio and chat; bad input is one line."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import wave
from pathlib import Path
from queue import Empty, Queue
from typing import IO

import numpy as np
import pytest

from app.media.analysis import tone_power
from tests.calls import call_two_processes

ROOT = Path(__file__).resolve().parents[2]


def peercall(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "call", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Lines:
    """A process's stdout lines, read by a thread so the test can wait with a timeout."""

    def __init__(self, proc: subprocess.Popen[str], stream: str = "stdout") -> None:
        self.queue: Queue[str] = Queue()
        self.seen: list[str] = []
        out = proc.stdout if stream == "stdout" else proc.stderr
        assert out is not None
        threading.Thread(target=self._pump, args=(out,), daemon=True).start()

    def _pump(self, out: IO[str]) -> None:
        with contextlib.suppress(ValueError, OSError):  # the test closed the pipe
            for line in out:
                self.queue.put(line)

    def wait_for(self, prefix: str, timeout: float = 30) -> str:
        while True:
            try:
                line = self.queue.get(timeout=timeout)
            except Empty:
                raise AssertionError(f"no line starting {prefix!r}; saw {self.seen}") from None
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def rest(self) -> list[str]:
        while not self.queue.empty():
            self.seen.append(self.queue.get())
        return self.seen


def read_err(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    return proc.stderr.read()


def finish(proc: subprocess.Popen[str]) -> None:
    """Kill if still running, reap, and close every pipe (ResourceWarnings fail tests)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def dominant(path: Path, freqs: list[float]) -> float:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 48000
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    assert len(samples) > 48000, f"only {len(samples)} samples recorded"
    middle = samples[len(samples) // 4 : 3 * len(samples) // 4]
    return max(freqs, key=lambda f: tone_power(middle, f))


@pytest.mark.slow
def test_two_processes_call_over_copy_paste(tmp_path: Path) -> None:
    a_wav, b_wav = tmp_path / "a.wav", tmp_path / "b.wav"
    common = ["--loopback", "--duration", "3"]
    a = peercall(*common, "--send-tone", "440", "--record", str(a_wav), "--chat", "hello from A")
    b = peercall(
        *common, "--answer", "--send-tone", "1000", "--record", str(b_wav), "--chat", "hi from B"
    )
    assert a.stdin is not None
    assert b.stdin is not None
    a_out, b_out = Lines(a), Lines(b)
    try:
        offer = a_out.wait_for("peercall1:offer:")
        # Pasted as a mail client would: quoted and wrapped.
        b.stdin.write("> " + offer[:60] + "\n> " + offer[60:])
        b.stdin.flush()
        answer = b_out.wait_for("peercall1:answer:")
        a.stdin.write(answer)
        a.stdin.flush()
        a_code, b_code = a.wait(60), b.wait(60)
        a_err, b_err = read_err(a), read_err(b)
    finally:
        finish(a)
        finish(b)
    assert (a_code, b_code) == (0, 0), f"A: {a_err}\nB: {b_err}"
    for err in (a_err, b_err):
        assert "call connected" in err
        assert "path direct (host <-> host) over UDP: 127.0.0.1:" in err
        assert "Traceback" not in err
    sas = {line.split("SAS) ")[1][:7] for line in (a_err + b_err).splitlines() if "SAS)" in line}
    assert len(sas) == 1, sas  # both ends show the same code
    assert "<peer> hi from B\n" in a_out.rest()
    assert "<peer> hello from A\n" in b_out.rest()
    # Each side recorded the other's tone: audio went both ways through Opus.
    assert dominant(a_wav, [440, 1000]) == 1000
    assert dominant(b_wav, [440, 1000]) == 440


@pytest.mark.slow
def test_copy_paste_chat_after_connecting_and_hang_up_over_the_data_channel() -> None:
    a = peercall("--loopback", "--no-devices")
    b = peercall("--loopback", "--no-devices", "--answer")
    assert a.stdin is not None
    assert b.stdin is not None
    a_out, b_out = Lines(a), Lines(b)
    a_err, b_err = Lines(a, "stderr"), Lines(b, "stderr")
    try:
        b.stdin.write(a_out.wait_for("peercall1:offer:"))
        b.stdin.flush()
        a.stdin.write(b_out.wait_for("peercall1:answer:"))
        a.stdin.flush()
        a_err.wait_for("peercall: connected: type a line")
        b_err.wait_for("peercall: connected: type a line")
        # The very first line typed after "connected" is chat, not a paste attempt.
        a.stdin.write("first line\n")
        a.stdin.flush()
        b_out.wait_for("<peer> first line")
        b.stdin.write("and back\n")
        b.stdin.flush()
        a_out.wait_for("<peer> and back")
        a.stdin.write("\n")  # an empty line hangs up; no signaling server to carry a bye
        a.stdin.flush()
        b_err.wait_for("peercall: call ended (the other person hung up)")
        a_code, b_code = a.wait(30), b.wait(30)
    finally:
        finish(a)
        finish(b)
    assert (a_code, b_code) == (0, 0)
    for err in (a_err, b_err):
        text = "".join(err.rest())
        assert "not a PeerCall blob" not in text
        assert "lost the connection" not in text
        assert "Traceback" not in text


@pytest.mark.parametrize(
    ("paste", "message"),
    [
        ("hello there\n", "not a PeerCall blob"),
        ("peercall1:offer:5000:ABCDEFGH\n\n", "truncated"),
    ],
)
def test_bad_paste_is_one_line_and_asks_again(paste: str, message: str) -> None:
    b = peercall("--answer", "--loopback", "--no-devices")
    _out, err = b.communicate(paste, timeout=30)
    assert message in err
    assert "paste it again" in err
    assert "Traceback" not in err
    assert b.returncode == 1  # input ended before a valid offer: the call failed, cleanly


def test_corrupted_blob_is_named(tmp_path: Path) -> None:
    a = peercall("--loopback", "--no-devices")
    assert a.stdin is not None
    out = Lines(a)
    offer = out.wait_for("peercall1:offer:").strip()
    finish(a)
    flip = len(offer) // 2
    corrupted = offer[:flip] + ("A" if offer[flip] != "A" else "B") + offer[flip + 1 :]
    b = peercall("--answer", "--loopback", "--no-devices")
    _, err = b.communicate(corrupted + "\n", timeout=30)
    assert "corrupted" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mic", "no-such-mic-xyz"], "no input device matches 'no-such-mic-xyz'"),
        (["--ice-server", "stun://x"], "no '//' after 'stun:'"),
        (["--relay-only"], "--relay-only needs a TURN server"),
        (["--send-file", "/nonexistent.wav"], "/nonexistent.wav"),
        (["--ca-file", "/x.pem"], "--ca-file only applies to a wss:// --server"),
        (
            ["--no-devices", "--server", "wss://127.0.0.1:9", "--ca-file", "/nonexistent.pem"],
            "/nonexistent.pem",
        ),
    ],
)
def test_bad_options_are_one_line_errors(args: list[str], message: str) -> None:
    proc = peercall(*args)
    _, err = proc.communicate("", timeout=30)
    assert proc.returncode == 2, err
    assert message in err
    assert err.count("\n") == 1, err
    assert err.startswith("peercall: error: ")


@pytest.mark.slow
async def test_two_processes_call_through_a_wss_server_with_a_self_signed_certificate(
    tmp_path: Path,
) -> None:
    from signaling.server import SignalingServer
    from tests.certs import make_cert

    cert, key = make_cert(tmp_path)
    async with SignalingServer("127.0.0.1", 0, cert=cert, key=key) as server:
        assert server.url.startswith("wss://")
        await call_two_processes(server.url, server.url, "--ca-file", str(cert), room="tls")
