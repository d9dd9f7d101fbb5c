"""The "Host a call…" dialog: be the server for one call, and get the one link to send.

A thin face over :class:`app.host.CallHost` (the same engine as ``peercall host``): start
signaling + relay, ask the router for forwardings, then show the mapping line, the link, its
QR code and, plainly, that the friend will see the host's public address. "Wait for my
friend" fills the window's server room fields with the hosted room and waits there.
:func:`open_link` is the other end: a ``peercall://`` link (desktop URL handler, or pasted)
fills the same fields so a click on Call joins the host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QGuiApplication, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.host import CallHost, HostOptions, HostStatus
from app.link import CallLink, parse_link
from app.ui.presenters import user_message

logger = logging.getLogger(__name__)

INTRO = (
    "PeerCall becomes the server for this call: it starts a signaling server and a relay on "
    "this computer, asks your router to forward their ports, and gives you one link to send "
    "your friend by any chat. The forwardings are removed when you stop hosting or quit."
)
VISIBILITY = (
    "Your friend will see your public IP address, as in any direct call. Send the link "
    "only to the person you want to call."
)


class HostCallDialog(QDialog):
    """Start/stop hosting; shows the mapping state, the link and its QR code."""

    hostingChanged = Signal(bool)
    linkReady = Signal(str)

    def __init__(self, window: Any, options: HostOptions | None = None) -> None:
        super().__init__(window if isinstance(window, QWidget) else None)
        self.setObjectName("hostCallDialog")
        self.setWindowTitle("Host a call")
        self.window_ = window
        self.options = options or HostOptions()
        self.host: CallHost | None = None
        self.status_info: HostStatus | None = None
        self._busy = False

        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        self.map_ports = QCheckBox("Ask the router to forward the ports (UPnP, NAT-PMP, PCP)")
        self.map_ports.setObjectName("mapPorts")
        self.map_ports.setChecked(self.options.map_ports)
        self.start_button = QPushButton("Start hosting")
        self.start_button.setObjectName("startHosting")
        self.stop_button = QPushButton("Stop hosting")
        self.stop_button.setObjectName("stopHosting")
        self.stop_button.setEnabled(False)
        self.status = QLabel("Not hosting.")
        self.status.setObjectName("hostStatus")
        self.status.setWordWrap(True)
        self.address = QLabel("")
        self.address.setObjectName("publicAddress")
        self.link = QLineEdit()
        self.link.setObjectName("hostLink")
        self.link.setReadOnly(True)
        self.link.setAccessibleName("Link for the desktop app")
        self.browser_link = QLineEdit()
        self.browser_link.setObjectName("browserLink")
        self.browser_link.setReadOnly(True)
        self.browser_link.setAccessibleName("Link for a web browser")
        self.copy_button = QPushButton("Copy link")
        self.copy_button.setObjectName("copyLink")
        self.copy_button.setEnabled(False)
        self.qr = QLabel()
        self.qr.setObjectName("linkQr")
        self.warning = QLabel(VISIBILITY)
        self.warning.setObjectName("visibilityWarning")
        self.warning.setWordWrap(True)
        self.wait_button = QPushButton("Wait for my friend")
        self.wait_button.setObjectName("waitForFriend")
        self.wait_button.setEnabled(False)

        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        link_row = QHBoxLayout()
        link_row.addWidget(self.link, 1)
        link_row.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.map_ports)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.address)
        layout.addLayout(link_row)
        layout.addWidget(self.browser_link)
        layout.addWidget(self.qr)
        layout.addWidget(self.warning)
        layout.addWidget(self.wait_button)

        self.start_button.clicked.connect(self._start_clicked)
        self.stop_button.clicked.connect(self._stop_clicked)
        self.copy_button.clicked.connect(self._copy)
        self.wait_button.clicked.connect(self._wait)

    @property
    def hosting(self) -> bool:
        return self.host is not None

    def _start_clicked(self) -> None:
        task = asyncio.ensure_future(self.start())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _stop_clicked(self) -> None:
        task = asyncio.ensure_future(self.stop())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def start(self) -> bool:
        """Host; False (with the reason in the status line) if it cannot."""
        if self._busy or self.host is not None:
            return self.host is not None
        self._busy = True
        self.start_button.setEnabled(False)
        self.map_ports.setEnabled(False)
        self.status.setText("Starting the signaling server and the relay…")
        options = dataclasses.replace(self.options, map_ports=self.map_ports.isChecked())
        host = CallHost(options, on_mapping=self.status.setText)
        try:
            info = await host.start()
        except Exception as exc:  # a port in use, a bad address: one line, never a traceback
            self.status.setText(f"Cannot host: {user_message(exc)}")
            self.start_button.setEnabled(True)
            self.map_ports.setEnabled(True)
            return False
        finally:
            self._busy = False
        self.host, self.status_info = host, info
        self._show(info)
        self.stop_button.setEnabled(True)
        self.hostingChanged.emit(True)
        self.linkReady.emit(info.link.app_url())
        return True

    def _show(self, info: HostStatus) -> None:
        self.status.setText(info.mapping_line)
        self.address.setText(f"Public address: {info.link.host} ({info.address_source})")
        self.link.setText(info.link.app_url())
        self.browser_link.setText(info.link.browser_url())
        notes = [VISIBILITY, *(w for w in info.warnings if "public IP address" not in w)]
        self.warning.setText("\n".join(notes))
        self.qr.setPixmap(qr_pixmap(info.link.app_url()))
        self.copy_button.setEnabled(True)
        self.wait_button.setEnabled(True)

    async def stop(self) -> None:
        """Stop hosting: the router's forwardings go first. Idempotent."""
        host, self.host = self.host, None
        if host is None:
            return
        self.stop_button.setEnabled(False)
        self.wait_button.setEnabled(False)
        self.copy_button.setEnabled(False)
        try:
            await host.stop()
        except Exception as exc:
            logger.warning("stopping hosting: %s", exc)
        self.status.setText("Not hosting: the router's forwardings were removed.")
        self.link.clear()
        self.browser_link.clear()
        self.qr.clear()
        self.start_button.setEnabled(True)
        self.map_ports.setEnabled(True)
        self.hostingChanged.emit(False)

    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.link.text())

    def _wait(self) -> None:
        if self.status_info is None:
            return
        fill_call_fields(self.window_, self.status_info.local_link)
        self.window_.wait_in_room()


def qr_pixmap(text: str, scale: int = 4) -> QPixmap:
    """The link as a QR code image (segno renders the PNG)."""
    import segno

    data = io.BytesIO()
    segno.make(text, error="m").save(data, kind="png", scale=scale, border=2)
    pixmap = QPixmap()
    pixmap.loadFromData(data.getvalue(), "PNG")
    return pixmap


def fill_call_fields(window: Any, link: CallLink) -> None:
    """Point the window's server-room call at ``link`` (server URL, room, secret)."""
    from app.ui.mainwindow import BACKEND_PAGES

    window.backend.setCurrentIndex(BACKEND_PAGES.index("websocket"))
    window.server_url.setText(link.signaling_url)
    window.room.setText(link.room)
    window.secret.setText(link.secret)


def open_link(window: Any, text: str) -> bool:
    """Fill the window from a peercall:// link; a bad link is one line in the window."""
    try:
        link = parse_link(text)
    except Exception as exc:
        window.show_error(f"Cannot open the link: {user_message(exc)}")
        return False
    fill_call_fields(window, link)
    return True


def install(window: Any, menu: QMenu) -> None:
    """The menu hook: "Host a call…" opens (and keeps) one dialog per window."""
    action = QAction("&Host a call…", window)
    action.setObjectName("hostCallAction")
    menu.addAction(action)
    window.host_call_action = action
    window.host_call_dialog = None

    def show() -> None:
        if window.host_call_dialog is None:
            window.host_call_dialog = HostCallDialog(window)
        window.host_call_dialog.show()
        window.host_call_dialog.raise_()

    action.triggered.connect(show)


async def shutdown(window: Any) -> None:
    """The quit hook: remove the router's forwardings before the app exits."""
    dialog = getattr(window, "host_call_dialog", None)
    if dialog is not None:
        await dialog.stop()
        dialog.close()
