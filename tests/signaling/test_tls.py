"""wss:// signaling: TLS server (embedded and `peercall signal`), verifying client, bad files."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from websockets.exceptions import InvalidMessage

from app.cli import main
from signaling.client import WebSocketChannel
from signaling.errors import SignalingError
from signaling.messages import Answer, Offer
from signaling.server import SignalingServer
from signaling.tls import client_context, server_context
from tests.certs import make_cert
from tests.signaling.conftest import RawClient, ServerProcess

SDP = "v=0\r\n"


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return make_cert(tmp_path)


async def call_through(url: str, ca_file: Path) -> None:
    a = WebSocketChannel(url, "tls-room", "pw", ca_file=ca_file)
    b = WebSocketChannel(url, "tls-room", "pw", ca_file=ca_file)
    await a.connect()
    await b.connect()
    try:
        await a.send(Offer(SDP))
        await b.send(Answer(SDP))
        async with asyncio.timeout(10):
            assert await b.receive() == Offer(SDP)
            assert await a.receive() == Answer(SDP)
    finally:
        await a.close()
        await b.close()


async def test_embedded_wss_server_with_cert_and_key_files(cert: tuple[Path, Path]) -> None:
    async with SignalingServer("127.0.0.1", 0, cert=cert[0], key=cert[1]) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        await call_through(server.url, cert[0])


async def test_embedded_wss_server_with_an_ssl_context(cert: tuple[Path, Path]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    async with SignalingServer("127.0.0.1", 0, ssl_context=context) as server:
        assert server.url.startswith("wss://")
        await call_through(server.url, cert[0])


async def test_client_refuses_an_unknown_certificate_and_the_server_survives(
    cert: tuple[Path, Path], tmp_path: Path
) -> None:
    other_ca, _ = make_cert(tmp_path, "other")
    async with SignalingServer("127.0.0.1", 0, cert=cert[0], key=cert[1]) as server:
        for ca_file in (None, other_ca):  # the system CAs, then the wrong self-signed one
            channel = WebSocketChannel(server.url, "r", "pw", reconnect=False, ca_file=ca_file)
            with pytest.raises(SignalingError) as info:
                await channel.connect()
            assert str(info.value).startswith(f"TLS with signaling server {server.url} failed: ")
            assert "certificate" in str(info.value)
            assert "\n" not in str(info.value)
        # A plain-text WebSocket client on the TLS port fails; the server keeps serving.
        plain = server.url.replace("wss://", "ws://")
        with pytest.raises(InvalidMessage):
            await RawClient.open(plain)
        await call_through(server.url, cert[0])


async def test_peercall_signal_serves_wss(cert: tuple[Path, Path]) -> None:
    proc = ServerProcess("--cert", str(cert[0]), "--key", str(cert[1]))
    url = await proc.start()
    try:
        assert url.startswith("wss://127.0.0.1:")
        await call_through(url, cert[0])
    finally:
        code, _ = await proc.terminate()
    assert code == 0


def test_bad_files_are_one_line_errors_naming_the_file(
    cert: tuple[Path, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    _, other_key = make_cert(tmp_path, "other")
    cases = [
        ((missing, cert[1]), f"cannot read certificate file '{missing}': No such file"),
        ((garbage, cert[1]), f"certificate file '{garbage}' holds no PEM certificate"),
        ((cert[0], missing), f"cannot read key file '{missing}': No such file"),
        ((cert[0], garbage), f"key file '{garbage}' holds no PEM private key"),
        ((cert[0], other_key), f"key file '{other_key}' does not match certificate file"),
    ]
    for (cert_file, key_file), message in cases:
        with pytest.raises(SignalingError) as info:
            server_context(cert_file, key_file)
        assert str(info.value).startswith(message), str(info.value)
    with pytest.raises(SignalingError, match="cannot read CA file"):
        client_context(missing)
    with pytest.raises(SignalingError, match="only used with wss:// URLs"):
        WebSocketChannel("ws://127.0.0.1:1", "r", "pw", ca_file=cert[0])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cert", "{missing}", "--key", "{key}"], "cannot read certificate file '{missing}'"),
        (["--cert", "{cert}"], "--cert and --key go together"),
        (["--cert", "{cert}", "--key", "{cert}"], "key file '{cert}' holds no PEM private key"),
    ],
)
def test_cli_bad_tls_options_exit_2_with_one_line(
    argv: list[str],
    message: str,
    cert: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = {"cert": cert[0], "key": cert[1], "missing": tmp_path / "nope.pem"}
    assert main(["signal", "--port", "0", *(a.format(**names) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"peercall: error: {message.format(**names)}"), err
    assert err.count("\n") == 1
