"""The "LAN peer" page: PeerCalls on this network appear live; call one, or be reachable.

A view over ``signaling.lan``: a :class:`~signaling.lan.LanBrowser` fills the list while the
page is in use, "Call selected peer" dials the chosen host over an ordinary WebSocket channel
(:func:`~signaling.lan.channel_to`), and "Be reachable on the LAN" runs a
:class:`~signaling.lan.LanHost` (embedded signaling server + DNS-SD advertiser) and waits in
its room for a call. zeroconf's callbacks are turned into a Qt signal, so the list is only
ever touched on the GUI thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.ui import theme
from app.ui.presenters import user_message

logger = logging.getLogger(__name__)

Runner = Callable[[Any, str], "asyncio.Task[Any]"]


class _Relay(QObject):
    """Carries LanBrowser events (maybe from zeroconf's thread) to the GUI thread."""

    changed = Signal(object)  # signaling.lan.LanEvent


def peer_label(service: Any) -> str:
    """``"Alice — 192.168.1.5:8765"``, plus "(asks for a PIN)" for PIN rooms."""
    host = service.url.removeprefix("ws://").removeprefix("wss://")
    lock = "" if service.open else "  (asks for a PIN)"
    return f"{service.name} — {host}{lock}"


class LanPage(QWidget):
    """The list of peers, the PIN box and the two buttons; the window wires the calls."""

    callRequested = Signal(object)  # signaling channel to dial, after "Call selected peer"
    errorRaised = Signal(str)
    reachableChanged = Signal(bool)

    def __init__(
        self,
        run: Runner,
        display_name: Callable[[], str],
        *,
        interfaces: Sequence[str] | None = None,
        listen: str = "0.0.0.0",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._run = run
        self._display_name = display_name
        self.interfaces = list(interfaces) if interfaces is not None else None
        self.listen = listen
        self.browser: Any = None
        self.host: Any = None
        self._relay = _Relay(self)
        self._relay.changed.connect(self._on_change)
        self._starting: asyncio.Task[Any] | None = None

        self.peers = QListWidget()
        self.peers.setObjectName("lanPeers")
        self.status = QLabel("Looking for PeerCalls on this network…")
        self.status.setWordWrap(True)
        theme.paint(self.status, "note")
        self.pin = QLineEdit()
        self.pin.setPlaceholderText("PIN (only if the peer asks for one)")
        self.call_button = QPushButton("Call selected peer")
        self.call_button.setEnabled(False)
        self.reachable_button = QPushButton("Be reachable on the LAN")
        self.reachable_button.setCheckable(True)
        self.reachable_button.setToolTip(
            "Advertise this PeerCall on the local network (mDNS) and ring when someone calls"
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("People on this network:"))
        layout.addWidget(self.peers, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.pin)
        layout.addWidget(self.call_button)
        layout.addWidget(self.reachable_button)
        self.peers.itemSelectionChanged.connect(self._update_buttons)
        self.peers.itemDoubleClicked.connect(lambda _item: self.call_selected())
        self.call_button.clicked.connect(self.call_selected)
        self.reachable_button.toggled.connect(self._on_reachable)
        self._busy = False
        self._closed = False

    # --- discovery ----------------------------------------------------------------------

    def start_browsing(self) -> None:
        """Begin filling the list (idempotent; the window calls it when the page is shown)."""
        if self.browser is not None:
            return
        from signaling.lan import LanBrowser

        self.browser = LanBrowser(interfaces=self.interfaces, on_change=self._relay.changed.emit)
        self._starting = self._run(self.browser.start(), "LAN discovery")

    def _on_change(self, event: Any) -> None:
        service = event.service
        own = self.host.advertiser.instance if self._advertising() else None
        row = self._row_of(service.instance)
        if event.kind == "removed" or service.instance == own:
            if row is not None:
                self.peers.takeItem(row)
        else:
            item = self.peers.item(row) if row is not None else QListWidgetItem()
            item.setText(peer_label(service))
            item.setData(Qt.ItemDataRole.UserRole, service)
            item.setToolTip(f"{service.url}  room {service.room}")
            if row is None:
                self.peers.addItem(item)
        count = self.peers.count()
        self.status.setText(
            f"{count} PeerCall{'s' if count != 1 else ''} found on this network"
            if count
            else "Looking for PeerCalls on this network…"
        )
        self._update_buttons()

    def _row_of(self, instance: str) -> int | None:
        for row in range(self.peers.count()):
            if self.peers.item(row).data(Qt.ItemDataRole.UserRole).instance == instance:
                return row
        return None

    def services(self) -> list[Any]:
        """The peers in the list, in order (signaling.lan.LanService)."""
        return [
            self.peers.item(row).data(Qt.ItemDataRole.UserRole) for row in range(self.peers.count())
        ]

    def select(self, name: str) -> bool:
        """Select the first peer called ``name``; False if none is listed."""
        for row, service in enumerate(self.services()):
            if service.name == name:
                self.peers.setCurrentRow(row)
                return True
        return False

    # --- calling ------------------------------------------------------------------------

    def set_busy(self, busy: bool) -> None:
        """A call (or a wait for one) is in progress: no second dial."""
        self._busy = busy
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.call_button.setEnabled(bool(self.peers.selectedItems()) and not self._busy)

    def call_selected(self) -> None:
        from signaling.errors import SignalingError
        from signaling.lan import channel_to

        items = self.peers.selectedItems()
        if not items or self._busy:
            return
        service = items[0].data(Qt.ItemDataRole.UserRole)
        try:
            channel = channel_to(
                service, secret=self.pin.text().strip() or None, name=self._display_name()
            )
        except SignalingError as exc:
            self.errorRaised.emit(f"Call: {user_message(exc)}")
            return
        self.callRequested.emit((channel, service.name))

    # --- being reachable ----------------------------------------------------------------

    def _advertising(self) -> bool:
        return self.host is not None and self.host.advertiser is not None

    def _on_reachable(self, on: bool) -> None:
        if on:
            self._run(self._host(), "Be reachable on the LAN")
        else:
            self._run(self.stop_hosting(), "Stop being reachable")

    async def _host(self) -> None:
        from signaling.lan import LanHost

        if self.host is not None:
            return
        host = LanHost(self._display_name(), host=self.listen, interfaces=self.interfaces)
        try:
            await host.start()
        except asyncio.CancelledError:  # the window's shutdown: undo what started
            await asyncio.shield(self._stop_quietly(host))
            raise
        except Exception:
            self.reachable_button.setChecked(False)
            raise
        # Switched off, or on again (a second start won), or the window closed, meanwhile:
        # this host is nobody's, so it must not keep advertising. Shielded: a shutdown that
        # cancels this task must not leave zeroconf half-closed.
        if not self.reachable_button.isChecked() or self.host is not None or self._closed:
            await asyncio.shield(self._stop_quietly(host))
            return
        self.host = host
        if host.advertiser is not None and host.advertiser.instance is not None:
            row = self._row_of(host.advertiser.instance)
            if row is not None:
                self.peers.takeItem(row)
        self.status.setText(f"Reachable as “{host.name}” on port {host.server.port}")
        self.reachableChanged.emit(True)

    @staticmethod
    async def _stop_quietly(host: Any) -> None:
        try:
            await host.stop()
        except Exception as exc:
            logger.info("stopping an unused LAN host: %r", exc)

    def host_channel(self) -> Any:
        """Our own seat in the advertised room (the window waits for a call on it)."""
        if self.host is None:
            return None
        return self.host.channel()

    async def stop_hosting(self) -> None:
        host, self.host = self.host, None
        if host is None:
            return
        try:
            await host.stop()
        finally:
            if self.reachable_button.isChecked():
                self.reachable_button.blockSignals(True)
                self.reachable_button.setChecked(False)
                self.reachable_button.blockSignals(False)
            self.reachableChanged.emit(False)

    async def shutdown(self) -> None:
        """Stop advertising (DNS-SD goodbyes) and browsing."""
        self._closed = True
        await self.stop_hosting()
        browser, self.browser = self.browser, None
        if self._starting is not None and not self._starting.done():
            await asyncio.wait([self._starting], timeout=5)
        if browser is not None:
            await browser.stop()
