"""The signaling server serves the call page over plain HTTP(S) GETs on its own port.

No browser here: real HTTP requests to a real server on 127.0.0.1. WebSocket upgrades on the
same port still reach the signaling protocol; unknown paths are 404; the whole page stays
under 100 KB and fetches nothing from elsewhere.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling import web
from signaling.server import SignalingServer
from signaling.ws_protocol import Join, Joined
from tests.certs import make_cert
from tests.signaling.conftest import RawClient


async def get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    def fetch() -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(url, timeout=10, context=context) as reply:
                return reply.status, dict(reply.headers), reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    return await asyncio.to_thread(fetch)


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    async with SignalingServer("127.0.0.1", 0, ping_interval=None) as srv:
        yield srv


def http_url(server: SignalingServer) -> str:
    return server.url.replace("ws", "http", 1)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html"),
        ("/index.html", "text/html"),
        ("/app.js", "text/javascript"),
        ("/sas.js", "text/javascript"),
        ("/style.css", "text/css"),
    ],
)
async def test_serves_each_page_file(server: SignalingServer, path: str, content_type: str) -> None:
    status, headers, body = await get(http_url(server) + path)
    assert status == 200
    assert headers["Content-Type"].startswith(content_type)
    assert int(headers["Content-Length"]) == len(body) > 0
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_the_page_links_only_its_own_files(server: SignalingServer) -> None:
    _, _, body = await get(http_url(server) + "/")
    html = body.decode()
    assert '<script type="module" src="app.js">' in html
    # No CDN, no absolute URL: it must work offline on a LAN.
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    for name in ("app.js", "sas.js"):
        script = web.read(name).decode()
        # Module imports are relative; nothing is fetched at run time.
        for specifier in re.findall(r"\bfrom\s+\"([^\"]+)\"|\bimport\(\"([^\"]+)\"\)", script):
            assert "".join(specifier).startswith("./"), (name, specifier)
        assert "fetch(" not in script
        assert "XMLHttpRequest" not in script


@pytest.mark.parametrize("path", ["/nope", "/../pyproject.toml", "/__init__.py", "/web/app.js"])
async def test_other_paths_are_404(server: SignalingServer, path: str) -> None:
    status, _, body = await get(http_url(server) + path)
    assert status == 404
    assert body.startswith(b"not found: ")


async def test_health_check_is_unchanged(server: SignalingServer) -> None:
    status, _, body = await get(http_url(server) + "/healthz")
    assert (status, body) == (200, b"ok\n")


async def test_websocket_upgrade_on_the_same_path_is_signaling(server: SignalingServer) -> None:
    client = await RawClient.open(server.url + "/")
    try:
        await client.send(Join("kitchen", "pw", "peer-aaaaaaaa"))
        assert isinstance(await client.recv(), Joined)
    finally:
        await client.close()


async def test_page_is_served_over_https_with_a_certificate(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    async with SignalingServer("127.0.0.1", 0, ping_interval=None, cert=cert, key=key) as srv:
        assert srv.url.startswith("wss://")
        context = ssl.create_default_context(cafile=str(cert))
        status, _headers, body = await get(srv.url.replace("wss", "https", 1) + "/", context)
    assert status == 200
    assert b"PeerCall" in body


def test_page_is_under_100_kb() -> None:
    assert web.page_size() < 100 * 1024
