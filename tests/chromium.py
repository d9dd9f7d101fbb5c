"""A real headless Chromium driven over the DevTools protocol (with ``websockets``).

Shared by the browser tests and bench/bench_browser.py. One :class:`Chromium` process; one
:class:`DevTools` connection to it; each :class:`Page` is a tab (in its own browser context,
so permissions and storage are separate) whose JavaScript we evaluate. Replies are matched to
calls by id by one reader task, so several pages can be driven at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# The flags the issue lists, plus the DevTools port and autoplay (so remote audio plays and
# a WebAudio analyser hears it without a click).
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-port=0",
)


class ChromiumError(RuntimeError):
    """Chromium did not start, or a DevTools call failed."""


def available() -> bool:
    return Path(CHROMIUM).exists()


class Chromium:
    """A headless Chromium process with a fresh profile; :meth:`devtools` drives it.

    ``prefix`` runs it through a wrapper (e.g. ``ip netns exec NAME``); ``connect`` opens the
    TCP link to its DevTools port (a namespaced process's port is not on our loopback).
    """

    def __init__(
        self,
        *extra_flags: str,
        prefix: Sequence[str] = (),
        connect_tcp: Callable[[int], socket.socket] | None = None,
        without: Sequence[str] = (),
    ) -> None:
        self.flags = [f for f in FLAGS if f not in without] + list(extra_flags)
        self.prefix = tuple(prefix)
        self.connect_tcp = connect_tcp or (
            lambda port: socket.create_connection(("127.0.0.1", port), timeout=10)
        )
        self.profile = Path(tempfile.mkdtemp(prefix="peercall-chromium-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.path = ""

    def start(self) -> None:
        log = self.profile / "chromium.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    *self.prefix,
                    CHROMIUM,
                    *self.flags,
                    f"--user-data-dir={self.profile}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (active.exists() and len(active.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ChromiumError(f"chromium did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        port, self.path = active.read_text().splitlines()[:2]
        self.port = int(port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def devtools(self) -> DevTools:
        """``async with browser.devtools() as tools``: one DevTools connection."""
        return DevTools(self)


class DevTools:
    """A DevTools-protocol connection; replies are matched to calls by id."""

    def __init__(self, browser: Chromium) -> None:
        self.browser = browser
        self.ws: ClientConnection | None = None
        self._last_id = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.pages: list[Page] = []

    async def __aenter__(self) -> DevTools:
        sock = await asyncio.to_thread(self.browser.connect_tcp, self.browser.port)
        sock.settimeout(None)
        url = f"ws://127.0.0.1:{self.browser.port}{self.browser.path}"
        self.ws = await connect(url, sock=sock, max_size=2**24)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Tabs left in a call would go on encoding video and load the machine for the next test.
        for page in self.pages:
            await page.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self.ws is not None:
            await self.ws.close()

    async def _read(self) -> None:
        assert self.ws is not None
        async for raw in self.ws:
            reply = json.loads(raw)
            future = self._waiting.pop(reply.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(reply)

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        """One DevTools command; its ``result``, or :class:`ChromiumError`."""
        assert self.ws is not None
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        future = asyncio.get_running_loop().create_future()
        self._waiting[self._last_id] = future
        await self.ws.send(json.dumps(message))
        async with asyncio.timeout(60):
            reply = await future
        if "error" in reply:
            raise ChromiumError(f"{method}: {reply['error']}")
        return reply["result"]

    async def new_page(self, url: str = "about:blank", *, ignore_tls: bool = False) -> Page:
        """A tab in a fresh browser context (own permissions), navigated to ``url``."""
        context = (await self.call("Target.createBrowserContext"))["browserContextId"]
        target = await self.call("Target.createTarget", url="about:blank", browserContextId=context)
        session = (
            await self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        )["sessionId"]
        page = Page(self, target["targetId"], session, context)
        self.pages.append(page)
        if ignore_tls:  # a self-signed test certificate, as a user who clicked through
            await self.call("Security.setIgnoreCertificateErrors", session, ignore=True)
        if url != "about:blank":
            await page.goto(url)
        return page


class Page:
    """One tab: navigate, evaluate JavaScript, wait for a condition."""

    def __init__(self, tools: DevTools, target: str, session: str, context: str) -> None:
        self.tools = tools
        self.closed = False
        self.target = target
        self.session = session
        self.context = context

    async def goto(self, url: str) -> None:
        result = await self.tools.call("Page.navigate", self.session, url=url)
        if result.get("errorText"):
            raise ChromiumError(f"navigating to {url}: {result['errorText']}")

    async def deny(self, origin: str, *permissions: str) -> None:
        """Deny permissions ("camera", "microphone") to ``origin``, as a user who clicked Block."""
        for name in permissions:
            await self.tools.call(
                "Browser.setPermission",
                permission={"name": name},
                setting="denied",
                origin=origin,
                browserContextId=self.context,
            )

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` (promises awaited); a JS exception fails loudly."""
        result = await self.tools.call(
            "Runtime.evaluate",
            self.session,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise ChromiumError(f"JavaScript failed: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within: float = 30.0) -> Any:
        """Poll until ``expression`` is truthy; its value. Fails with the page's state shown."""
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(ChromiumError):  # the page may be mid-navigation
                value = await self.evaluate(expression)
                if value:
                    return value
            if time.monotonic() > deadline:
                state = await self.evaluate(
                    "JSON.stringify({state: document.body && document.body.dataset.state,"
                    " status: document.getElementById('status')?.textContent,"
                    " error: document.getElementById('error')?.textContent})"
                )
                raise ChromiumError(f"timed out waiting for {expression!r}; page: {state}")
            await asyncio.sleep(0.1)

    async def text(self, element_id: str) -> str:
        value = await self.evaluate(
            f"document.getElementById({json.dumps(element_id)}).textContent"
        )
        return str(value)

    async def click(self, element_id: str) -> None:
        await self.evaluate(f"document.getElementById({json.dumps(element_id)}).click()")

    async def type(self, element_id: str, text: str) -> None:
        """Focus the field and insert ``text`` as keyboard input would."""
        await self.evaluate(f"document.getElementById({json.dumps(element_id)}).focus()")
        await self.tools.call("Input.insertText", self.session, text=text)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(ChromiumError):
            await self.tools.call("Target.closeTarget", targetId=self.target)
        with contextlib.suppress(ChromiumError):
            await self.tools.call("Target.disposeBrowserContext", browserContextId=self.context)
