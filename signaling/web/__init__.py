"""The browser call page, served by the signaling server at its HTTP root.

Static files shipped as package data (plain HTML, CSS and JavaScript: no build step, no CDN,
so it works offline on a LAN). A plain ``GET /`` gets the page; a WebSocket upgrade on the
same port is left to the signaling protocol. The page joins the room named in the link's
fragment (``#room=kitchen&secret=s3cret``; the fragment never reaches the server).

The server calls :func:`serve_static` from websockets' ``process_request`` hook, in one place.
"""

from __future__ import annotations

import email.utils
import functools
import http
from importlib import resources
from typing import Final
from urllib.parse import quote, urlencode, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from signaling.errors import SignalingError
from signaling.ws_protocol import MAX_SECRET, ROOM_RE

# URL path -> file in this package. Nothing else is served: no directory walking.
FILES: Final = {
    "/": "index.html",
    "/index.html": "index.html",
    "/app.js": "app.js",
    "/sas.js": "sas.js",
    "/style.css": "style.css",
}
TYPES: Final = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
}
# The page needs only itself and its own server (the WebSocket is same-origin, CSP3 'self').
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


@functools.cache
def read(name: str) -> bytes:
    """One page file's bytes (read once per process)."""
    return resources.files(__name__).joinpath(name).read_bytes()


def page_size() -> int:
    """Bytes a browser downloads for the whole page (every served file once)."""
    return sum(len(read(name)) for name in set(FILES.values()))


def _response(status: http.HTTPStatus, content_type: str, body: bytes) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),  # revalidate: a server upgrade changes the page
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Content-Security-Policy", CSP),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def is_websocket(request: Request) -> bool:
    """Whether ``request`` asks for a WebSocket upgrade (RFC 6455 §4.1, item 6)."""
    tokens = request.headers.get("Upgrade", "").lower().replace(",", " ").split()
    return "websocket" in tokens


def serve_static(request: Request) -> Response | None:
    """The page file for a plain HTTP GET, a 404 for any other path; None for a WebSocket."""
    if is_websocket(request):
        return None
    path = urlsplit(request.path).path
    name = FILES.get(path)
    if name is None:
        body = f"not found: {quote(path)[:200]} (the call page is at /)\n".encode()
        return _response(http.HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", body)
    return _response(http.HTTPStatus.OK, TYPES[name.rpartition(".")[2]], read(name))


def call_link(server_url: str, room: str, secret: str) -> str:
    """The link that joins ``room`` from a browser: the page on ``server_url``'s own port.

    ``ws://host:port`` gives ``http://host:port/#room=…&secret=…`` and ``wss://`` gives
    ``https://``. Room and secret travel in the fragment, which browsers never send to a
    server (RFC 3986 §3.5), so they stay out of logs and proxies.
    """
    parts = urlsplit(server_url.strip())
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise SignalingError(
            f"signaling server URL {server_url!r} must be ws://HOST:PORT or wss://"
        )
    if not ROOM_RE.fullmatch(room):
        raise SignalingError(f"room {room!r} must be 1-64 characters of A-Z a-z 0-9 . _ ~ -")
    if not 1 <= len(secret) <= MAX_SECRET:
        raise SignalingError(f"a call link needs a room secret of 1-{MAX_SECRET} characters")
    fragment = urlencode({"room": room, "secret": secret}, quote_via=quote)
    return f"{scheme}://{parts.netloc}/#{fragment}"
