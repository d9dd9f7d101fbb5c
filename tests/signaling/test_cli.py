"""`peercall signal`: options, help, start-up output, signals and one-line errors."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import build_parser, main
from signaling import cli, server
from signaling.client import WebSocketChannel
from signaling.errors import SignalingError
from signaling.messages import Offer
from tests.signaling.conftest import ROOT, ServerProcess


def signal_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peercall signal", description=cli.__doc__)
    cli.configure_parser(parser)
    return parser


def test_defaults_mirror_the_server() -> None:
    assert cli.DEFAULT_MAX_MESSAGE_BYTES == server.DEFAULT_MAX_MESSAGE_BYTES
    assert cli.DEFAULT_IDLE_TIMEOUT == server.DEFAULT_IDLE_TIMEOUT
    assert cli.DEFAULT_PING_INTERVAL == server.DEFAULT_PING_INTERVAL
    assert cli.DEFAULT_RESUME_GRACE == server.DEFAULT_RESUME_GRACE
    assert cli.DEFAULT_TURN_TTL == server.DEFAULT_TURN_TTL
    assert cli.DEFAULT_MAX_QUEUE == server.DEFAULT_MAX_QUEUE
    assert cli.DEFAULT_RATE_LIMIT == server.DEFAULT_RATE_LIMIT
    assert cli.DEFAULT_RATE_BURST == server.DEFAULT_RATE_BURST
    assert cli.DEFAULT_MAX_CONNECTIONS_PER_IP == server.DEFAULT_MAX_CONNECTIONS_PER_IP
    assert cli.DEFAULT_MAX_ROOM_BYTES == server.DEFAULT_MAX_ROOM_BYTES
    assert cli.DEFAULT_MAX_ADDRESS_BYTES == server.DEFAULT_MAX_ADDRESS_BYTES
    assert cli.DEFAULT_MAX_SEATS_PER_IP == server.DEFAULT_MAX_SEATS_PER_IP
    assert cli.DEFAULT_HANDSHAKE_TIMEOUT == server.DEFAULT_HANDSHAKE_TIMEOUT


def test_help_documents_every_option() -> None:
    parser = signal_parser()
    text = parser.format_help()
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help"
        assert action.help != argparse.SUPPRESS
        for option in action.option_strings:
            assert option in text
    assert "docs/signaling-protocol.md" in text
    assert cli.TURN_SECRET_ENV in text


def test_help_through_the_real_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "signal", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert "--max-message-bytes" in done.stdout
    assert "--turn-secret-file" in done.stdout


def test_options_reach_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    args = signal_parser().parse_args(
        [
            "--port",
            "0",
            "--turn-secret-file",
            str(secret_file),
            "--turn-uri",
            "turn:127.0.0.1:3478",
            "--turn-uri",
            "stun:127.0.0.1:3478",
            "--turn-ttl",
            "120",
            "--max-message-bytes",
            "8192",
            "--idle-timeout",
            "9",
            "--ping-interval",
            "0",
            "--resume-grace",
            "3",
            "--max-queue",
            "7",
        ]
    )
    srv = cli.build_server(args)
    assert srv.turn_secret == "from-file"
    assert srv.turn_uris == ("turn:127.0.0.1:3478", "stun:127.0.0.1:3478")
    assert (srv.turn_ttl, srv.max_message_bytes, srv.idle_timeout) == (120, 8192, 9)
    assert (srv.ping_interval, srv.resume_grace, srv.max_queue) == (None, 3, 7)
    monkeypatch.setenv(cli.TURN_SECRET_ENV, "from-env")
    assert cli.build_server(signal_parser().parse_args([])).turn_secret == "from-env"
    explicit = signal_parser().parse_args(["--turn-secret", "given"])
    assert cli.build_server(explicit).turn_secret == "given"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--turn-uri", "turn:h:3478"], "TURN URI 'turn:h:3478' needs a TURN shared secret"),
        (["--turn-secret-file", "/nonexistent/x"], "cannot read --turn-secret-file"),
        (["--turn-uri", "http://x", "--turn-secret", "s"], "ICE server URI 'http://x' must"),
    ],
)
def test_bad_values_are_one_line_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["signal", "--port", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"peercall: error: {message}")
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv", [["--port", "70000"], ["--idle-timeout", "-1"], ["--port", "x"]])
def test_argparse_rejects_bad_numbers(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["signal", *argv])
    assert info.value.code == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate-limit", "-1"], "argument --rate-limit: must not be negative: '-1'"),
        (["--rate-limit", "x"], "argument --rate-limit: not a number: 'x'"),
        (["--rate-burst", "0"], "argument --rate-burst: must be positive: '0'"),
        (["--max-connections-per-ip", "1.5"], "not a whole number: '1.5'"),
    ],
)
def test_bad_numbers_name_the_option_and_the_rule(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["signal", *argv])
    assert message in capsys.readouterr().err


def test_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "signal", "--port", str(port)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr == (
        f"peercall: error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_prints_its_url_serves_and_stops_cleanly_on_signals(signum: int) -> None:
    proc = ServerProcess()
    url = await proc.start()
    assert url.startswith("ws://127.0.0.1:")
    assert proc.port > 0
    a = WebSocketChannel(url, "r", "s")
    b = WebSocketChannel(url, "r", "s")
    await a.connect()
    await b.connect()
    await a.send(Offer("v=0\r\n"))
    async with asyncio.timeout(10):
        assert await b.receive() == Offer("v=0\r\n")
    assert proc.proc is not None
    assert proc.proc.stdout is not None
    proc.proc.send_signal(signum)
    rest = (await proc.proc.stdout.read()).decode()
    assert await proc.proc.wait() == 0
    assert rest.strip() == "stopped"
    await a.close()
    await b.close()


def test_gc_upkeep_freezes_what_survives_and_runs_a_full_collection_only_when_due() -> None:
    code = (
        "import asyncio, gc\n"
        "from signaling.cli import gc_upkeep\n"
        "full = []\n"
        "gc.callbacks.append(lambda p, i: full.append(1) if p == 'start' and i['generation'] == 2"
        " else None)\n"
        "async def run(every, full_every):\n"
        "    task = asyncio.create_task(gc_upkeep(freeze_every=every, full_every=full_every))\n"
        "    await asyncio.sleep(0.3)\n"
        "    task.cancel()\n"
        "async def main():\n"
        "    gc.freeze()\n"
        "    base = gc.get_freeze_count()\n"
        "    kept = [[i] for i in range(50000)]  # long-lived connection state\n"
        "    full.clear()\n"
        "    await run(0.05, 3600)\n"
        "    print(gc.get_freeze_count() - base >= len(kept), len(full))\n"
        "    await run(0.05, 0)\n"
        "    print(len(full) > 0, gc.get_freeze_count() >= len(kept))\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == ["True", "0", "True", "True"]


def test_tune_gc_freezes_start_up_objects_and_defers_full_collections() -> None:
    code = (
        "import gc; from signaling.cli import tune_gc; before = gc.get_threshold(); tune_gc(); "
        "print(gc.get_freeze_count() > 1000, before[:2] == gc.get_threshold()[:2], "
        "gc.get_threshold()[2])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == ["True", "True", "100"]


def test_event_loop_uvloop_when_missing_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_uvloop(name: str, *args: object, **kwargs: object) -> object:
        if name == "uvloop":
            raise ImportError("no uvloop")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    args = signal_parser().parse_args(["--event-loop", "uvloop", "--port", "0"])
    with pytest.raises(SignalingError) as info:
        cli.run(args)
    assert str(info.value) == "--event-loop uvloop: uvloop is not installed"


def test_limit_options_reach_the_server_and_zero_disables() -> None:
    built = cli.build_server(
        signal_parser().parse_args(
            ["--rate-limit", "5", "--rate-burst", "7", "--max-connections-per-ip", "9"]
        )
    )
    assert (built.rate_limit, built.rate_burst, built.max_connections_per_ip) == (5.0, 7, 9)
    off = cli.build_server(
        signal_parser().parse_args(["--rate-limit", "0", "--max-connections-per-ip", "0"])
    )
    assert off.rate_limit is None
    assert off.max_connections_per_ip is None


def test_a_long_collection_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cli, "GC_PAUSE_LOG", -1.0)  # every collection counts as long here
    cli._log_long_collections("start", {"generation": 2})
    cli._log_long_collections("stop", {"generation": 2})
    assert caplog.records[-1].name == "signaling.gc"
    assert (
        caplog.records[-1]
        .getMessage()
        .startswith("garbage collection of generation 2 paused the server ")
    )
