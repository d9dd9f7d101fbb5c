"""`peercall relay`: options, config file layering, errors, and the real serving process."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import cli as app_cli
from nat import cli
from nat.auth import long_term_key
from nat.conffile import SETTINGS
from tests.nat.conftest import (
    LOOPBACK,
    REPO,
    free_udp_tcp_port,
    relay_port_range,
    service_available,
    stun_binding,
)

needs_service = pytest.mark.skipif(not service_available(), reason="nat.service not written yet")


def relay(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "relay", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


def parse(*argv: str) -> argparse.Namespace:
    parser = app_cli.build_parser()
    return parser.parse_args(["relay", *argv])


# --- help --------------------------------------------------------------------------------


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        app_cli.main(["relay", "--help"])
    assert exc.value.code == 0
    # argparse wraps lines at blanks and after hyphens: undo both.
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")
    for setting in SETTINGS:
        assert f"--{setting.key}" in text
        assert " ".join(setting.help.split()).replace("- ", "-") in text
    for option in (
        "--config",
        "--strict",
        "--check-config",
        "--print-credentials",
        "--event-loop",
        "--workers",
    ):
        assert option in text
    assert "turnserver.conf" in text
    assert "--user-quota N most allocations one user may hold at once (default 100" in text
    assert "--total-quota N most allocations in total (default 1000" in text


def test_help_is_instant_without_heavy_imports() -> None:
    # --help must not import the asyncio service, aiortc or Qt (app/cli.py's rule).
    code = (
        "import sys; from app import cli; "
        "cli.build_parser().format_help(); "
        "bad = [m for m in ('nat.service', 'aiortc', 'PySide6') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert out.strip() == "[]"


# --- building the config -----------------------------------------------------------------


def test_options_mirror_coturn_names_and_short_forms() -> None:
    args = parse(
        "-L",
        "127.0.0.1",
        "--listening-ip",
        "::1",
        "-p",
        "3479",
        "--min-port",
        "40000",
        "--max-port",
        "40100",
        "-r",
        "north.gov",
        "-u",
        "a:pw",
        "--user",
        "b:0x" + "11" * 16,
        "--allowed-peer-ip",
        "10.0.0.1-10.0.0.3",
        "--fingerprint=off",
        "--allow-loopback-peers",
        "-q",
        "2",
        "-Q",
        "7",
        "-s",
        "1000",
        "--stale-nonce",
        "--no-tcp",
    )
    config = cli.build_config(args)
    assert config.listening_ips == ("127.0.0.1", "::1")
    assert config.listening_port == 3479
    assert (config.min_port, config.max_port) == (40000, 40100)
    assert config.realm == "north.gov"
    assert config.users == (
        ("a", long_term_key("a", "north.gov", "pw")),
        ("b", b"\x11" * 16),
    )
    assert len(config.allowed_peer_ips) == 1
    assert config.fingerprint is False
    assert config.allow_loopback_peers is True
    assert (config.user_quota, config.total_quota, config.max_bps) == (2, 7, 1000)
    assert config.stale_nonce == 600
    assert config.no_tcp is True


def test_command_line_overrides_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "turnserver.conf"
    path.write_text("min-port=40000\nmax-port=41000\nrealm=file\nuser=a:pw\nuser=b:pw\n")
    config = cli.build_config(parse("-c", str(path), "--max-port", "42000", "--user", "c:pw"))
    assert (config.min_port, config.max_port, config.realm) == (40000, 42000, "file")
    assert [name for name, _ in config.users] == ["c"]


def test_notices_are_printed_as_warnings(tmp_path: Path) -> None:
    path = tmp_path / "turnserver.conf"
    path.write_text("realm=x\nfrobnicate=1\nrelay-threads=2\nno-cli\n")
    proc = relay("-c", str(path), "--check-config")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"peercall: warning: {path}:2: unknown option 'frobnicate'; ignored",
        f"peercall: warning: {path}:3: coturn option 'relay-threads' is not supported "
        "(runs single-threaded on asyncio); ignored",
        f"peercall: note: {path}:4: no-cli: no effect, PeerCall has no admin CLI",
    ]
    assert "configuration OK" in proc.stdout


# --- errors: one line, exit 2, no traceback -----------------------------------------------


@pytest.mark.parametrize(
    ("conf", "args", "message"),
    [
        (None, ["--min-port", "abc"], "command line: min-port: 'abc' is not a port number"),
        (None, ["--user", "nopass"], "command line: user: 'nopass' is not 'name:password'"),
        ("realm=x\nmin-port=abc\n", [], "{path}:2: min-port: 'abc' is not a port number"),
        ("realm=x\nfrobnicate\n", ["--strict"], "{path}:2: unknown option 'frobnicate'"),
        (
            "min-port=50000\n",
            ["--max-port", "40000"],
            "{path}:1: min-port 50000 is greater than max-port 40000",
        ),
        (
            None,
            ["--use-auth-secret"],
            "command line: use-auth-secret needs at least one static-auth-secret",
        ),
        (None, ["-c", "/nonexistent.conf"], "cannot read config file '/nonexistent.conf'"),
        (None, ["--print-credentials"], "--print-credentials needs a static-auth-secret"),
    ],
)
def test_bad_config_is_one_line_exit_2(
    tmp_path: Path, conf: str | None, args: list[str], message: str
) -> None:
    path = tmp_path / "turnserver.conf"
    if conf is not None:
        path.write_text(conf)
        args = ["-c", str(path), *args]
    proc = relay(*args, "--check-config")
    assert proc.returncode == 2
    assert proc.stderr.startswith("peercall: error: " + message.format(path=path))
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


# --- REST credentials ----------------------------------------------------------------------


def test_print_credentials_gives_a_valid_rest_credential() -> None:
    before = time.time()
    proc = relay(
        "--use-auth-secret",
        "--static-auth-secret",
        "north",
        "--static-auth-secret",
        "south",
        "--print-credentials",
        "--credential-user",
        "bob",
        "--credential-ttl",
        "600",
    )
    assert proc.returncode == 0, proc.stderr
    fields = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    expiry, name = fields["username"].split(":")
    assert name == "bob"
    assert before + 600 <= int(expiry) <= time.time() + 601
    # coturn's scheme: base64(HMAC-SHA1(first secret, username)).
    mac = hmac.new(b"north", fields["username"].encode(), hashlib.sha1).digest()
    assert fields["password"] == base64.b64encode(mac).decode()
    assert fields["uri"] == "turn:127.0.0.1:3478?transport=tcp"  # the last uri line
    assert "turn:127.0.0.1:3478?transport=udp" in proc.stdout


# --- the serving process -----------------------------------------------------------------


def start_relay(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], int, Path]:
    port = free_udp_tcp_port()
    low, high = relay_port_range(50)
    log = tmp_path / "relay.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "relay",
                "--listening-port",
                str(port),
                "--min-port",
                str(low),
                "--max-port",
                str(high),
                "--user",
                "alice:pw",
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
    deadline = time.monotonic() + 30
    while "relay ready" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"relay did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc, port, log


@needs_service
@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serves_prints_addresses_and_stops_cleanly_on_signal(
    tmp_path: Path, sig: signal.Signals, workers: str
) -> None:
    proc, port, log = start_relay(tmp_path, "--workers", workers)
    try:
        assert stun_binding(LOOPBACK, port, timeout=2)[0] == LOOPBACK
        startup = log.read_text()
        assert f"listening on udp 127.0.0.1:{port}" in startup
        assert f"listening on tcp 127.0.0.1:{port}" in startup
        assert f"uri: turn:127.0.0.1:{port}?transport=udp" in startup
        assert f"uri: turn:127.0.0.1:{port}?transport=tcp" in startup
    finally:
        proc.send_signal(sig)
        code = proc.wait(15)
    output = log.read_text()
    assert code == 0, output
    assert "relay stopped: 1 STUN requests" in output  # summed over the workers
    assert ("2 relay worker processes" in output) == (workers == "2")
    assert "Traceback" not in output


def test_workers_must_be_at_least_one() -> None:
    proc = relay("--workers", "0", "--user", "a:b")
    assert proc.returncode == 2
    assert proc.stderr == "peercall: error: --workers: 0 must be at least 1\n"


@needs_service
def test_port_in_use_is_one_line_exit_2(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOOPBACK, 0))
        port = taken.getsockname()[1]
        proc = relay("--listening-port", str(port), "--user", "a:b", timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("peercall: error: ")
    assert str(port) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


# --- event loop ---------------------------------------------------------------------------------


async def _loop_module() -> str:
    import asyncio

    return type(asyncio.get_running_loop()).__module__


@pytest.mark.parametrize(("choice", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_event_loop_choice_is_honoured(choice: str, module: str) -> None:
    pytest.importorskip("uvloop")
    name: object = cli._run_loop(_loop_module(), choice)  # type: ignore[arg-type]
    assert str(name).split(".")[0] == module
    assert parse("--event-loop", choice).event_loop == choice
    assert parse().event_loop == "auto"


def test_event_loop_uvloop_when_missing_is_one_line(tmp_path: Path) -> None:
    # A real process without uvloop: the error is the only line on stderr (no "coroutine was
    # never awaited" warning after it).
    (tmp_path / "uvloop.py").write_text("raise ImportError('uvloop hidden by the test')\n")
    proc = subprocess.run(
        [
            *(sys.executable, "-c", "import sys, app.cli; sys.exit(app.cli.main(sys.argv[1:]))"),
            *("relay", "-n", "--event-loop", "uvloop", "--user", "a:b"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr == "peercall: error: --event-loop uvloop: uvloop is not installed\n"
