"""The settings dialog: ICE servers (with a Test), signaling, hosting a relay, audio and video.

Thin pages over :class:`app.settings.Settings` (which validates every value) and the hosting
controllers of :mod:`app.ui.hosting` (which start and stop the embedded servers). Fields are
validated as typed; the one-line error is shown next to the field and Save stays disabled
while anything is invalid. The hosting switches act at once (they are actions, not settings),
so their labels say so, and Cancel puts them back as they were when the dialog opened (a relay
switched on here stops again); "Start when PeerCall starts" is the setting. Long work (probing
servers, opening the microphone, playing the test tone) runs as coroutines through ``run`` (the
adapter's runner), never blocking Qt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QCloseEvent, QGuiApplication, QHideEvent, QImage, QPixmap, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.errors import ConfigError
from app.iceservers import IceServer
from app.probe import DEFAULT_TIMEOUT as PROBE_TIMEOUT
from app.probe import ProbeResult, probe_servers
from app.settings import BY_NAME, SIGNALING_BACKENDS, Settings
from app.ui import theme
from app.ui.callsetup import block_level
from app.ui.hosting import (
    HostAddress,
    RelayHost,
    RelaySettings,
    RelayStatus,
    SignalingHost,
    new_password,
    public_address,
    reachable_addresses,
    relay_settings_from,
    share_spec,
    uris_at,
)
from app.ui.presenters import BACKEND_LABELS, user_message
from app.ui.widgets import LevelMeter, VideoView

logger = logging.getLogger(__name__)

Runner = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]

TONE_SECONDS = 1.0
NOISE_LEVELS = ("Off", "Low", "Moderate", "High", "Very high")


class _ErrorLabel(QLabel):
    """A wrapping label whose height is what its text needs at its real width.

    QLabel's own size hint wraps at a width it guesses (about 240 px), so an error that fits on
    one line across the dialog was laid out two lines high and the controls above it moved up
    a line each time it appeared (issue 12.10)."""

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        if self.width() > 0:
            hint.setHeight(max(self.minimumHeight(), self.heightForWidth(self.width())))
        return hint


def _error_label() -> QLabel:
    label = _ErrorLabel()
    theme.paint(label, "error")
    label.setWordWrap(True)
    # Room for one line even when empty: the dialog must not jump as errors come and go
    # (issue 12.10).
    label.setMinimumHeight(label.fontMetrics().lineSpacing())
    return label


def _name(widget: QWidget, object_name: str, accessible: str) -> None:
    """Give a control the names tests and screen readers find it by."""
    widget.setObjectName(object_name)
    widget.setAccessibleName(accessible)


def split_urls(text: str) -> list[str]:
    """The URIs of one ICE server entry, separated by spaces or commas."""
    return [u for u in text.replace(",", " ").split() if u]


def entry_error(urls: str, username: str, credential: str) -> str | None:
    """The one-line problem with an ICE server entry as typed, or None if it is usable."""
    parts = split_urls(urls)
    if not parts:
        return "enter a stun:, turn: or turns: URI"
    try:
        IceServer(tuple(parts), username or None, credential or None)
    except ConfigError as exc:
        return str(exc)
    return None


def qr_image(text: str, scale: int = 4, border: int = 4) -> QImage:
    """A QR code of ``text`` (segno) as a black-on-white QImage, ``scale`` pixels per module."""
    import segno

    matrix = np.array([list(row) for row in segno.make(text, error="m").matrix], dtype=np.uint8)
    matrix = np.pad(matrix, border)  # the quiet zone (ISO/IEC 18004 §6.3.8) is light
    pixels = np.where(matrix > 0, 0, 255).astype(np.uint8)
    pixels = np.ascontiguousarray(np.kron(pixels, np.ones((scale, scale), dtype=np.uint8)))
    height, width = pixels.shape
    return QImage(pixels.data, width, height, width, QImage.Format.Format_Grayscale8).copy()


# --- ICE servers ------------------------------------------------------------------------------


class IceServersPage(QWidget):
    """A list of STUN/TURN entries, an editor for the selected one, and a Test button."""

    changed = Signal()
    testFinished = Signal(list)  # list[ProbeResult]

    COLUMNS = ("URI", "Username", "Test result")

    def __init__(self, run: Runner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._run = run
        self._entries: list[dict[str, str]] = []
        self._results: list[str] = []
        self.results: list[ProbeResult] = []
        self.time_limit = PROBE_TIMEOUT  # seconds per URI
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.add_button = QPushButton("Add")
        self.remove_button = QPushButton("Remove")
        self.up_button = QPushButton("Up")
        self.down_button = QPushButton("Down")
        self.test_button = QPushButton("Test")
        self.test_button.setToolTip("Ask each server for candidates (srflx, relay)")
        self.uri = QLineEdit()
        self.uri.setPlaceholderText("turn:relay.example.org:3478?transport=udp")
        _name(self.add_button, "iceAdd", "Add ICE server")
        _name(self.remove_button, "iceRemove", "Remove ICE server")
        _name(self.test_button, "iceTest", "Test ICE servers")
        _name(self.uri, "iceUri", "ICE server URI")
        _name(self.table, "iceTable", "ICE servers")
        self.uri.setToolTip(
            "One or more stun:/stuns:/turn:/turns: URIs (RFC 7064/7065), separated by spaces."
            " Pasting USER:PASSWORD@URI fills the credentials."
        )
        self.username = QLineEdit()
        self.credential = QLineEdit()
        self.credential.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        _name(self.username, "iceUsername", "ICE server username")
        _name(self.credential, "iceCredential", "ICE server credential")
        self.error = _error_label()
        self.error.setObjectName("iceError")
        self.status = QLabel()
        theme.paint(self.status, "note")
        self.status.setWordWrap(True)

        buttons = QHBoxLayout()
        for button in (self.add_button, self.remove_button, self.up_button, self.down_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.test_button)
        form = QFormLayout()
        form.addRow("URI", self.uri)
        form.addRow("", self.error)
        form.addRow("Username", self.username)
        form.addRow("Credential", self.credential)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addLayout(form)
        layout.addWidget(self.status)

        # clicked(bool) would land in add_entry's first parameter: the URI (issue 12.1).
        self.add_button.clicked.connect(lambda: self.add_entry())
        self.remove_button.clicked.connect(self.remove_entry)
        self.up_button.clicked.connect(lambda: self.move_entry(-1))
        self.down_button.clicked.connect(lambda: self.move_entry(1))
        self.test_button.clicked.connect(self.test)
        self.table.itemSelectionChanged.connect(self._load_selected)
        self.uri.textEdited.connect(self._uri_edited)
        self.username.textEdited.connect(self._edited)
        self.credential.textEdited.connect(self._edited)
        self._refresh()

    # --- model ------------------------------------------------------------------------------

    def set_entries(self, entries: list[dict[str, Any]]) -> None:
        """Show the settings' ``ice_servers`` value."""
        self._entries = [
            {
                "urls": " ".join(entry.get("urls", [])),
                "username": entry.get("username") or "",
                "credential": entry.get("credential") or "",
            }
            for entry in entries
        ]
        self._results = [""] * len(self._entries)
        self._refresh(select=0 if self._entries else None)

    def entries(self) -> list[dict[str, Any]]:
        """The entries in the settings' shape (call only when :meth:`first_error` is None)."""
        result: list[dict[str, Any]] = []
        for entry in self._entries:
            item: dict[str, Any] = {"urls": split_urls(entry["urls"])}
            if entry["username"]:
                item["username"] = entry["username"]
            if entry["credential"]:
                item["credential"] = entry["credential"]
            result.append(item)
        return result

    def servers(self) -> list[IceServer]:
        return [
            IceServer(tuple(e["urls"]), e.get("username"), e.get("credential"))
            for e in self.entries()
        ]

    def first_error(self) -> str | None:
        """The first invalid entry's one-line error, prefixed with its row number."""
        for row, entry in enumerate(self._entries):
            problem = entry_error(entry["urls"], entry["username"], entry["credential"])
            if problem is not None:
                return f"entry {row + 1}: {problem}"
        return None

    def add_entry(self, urls: str = "", username: str = "", credential: str = "") -> None:
        self._entries.append({"urls": urls, "username": username, "credential": credential})
        self._results.append("")
        self._refresh(select=len(self._entries) - 1)
        self.uri.setFocus()

    def remove_entry(self) -> None:
        row = self._selected()
        if row is None:
            return
        del self._entries[row]
        del self._results[row]
        self._refresh(select=min(row, len(self._entries) - 1) if self._entries else None)

    def move_entry(self, delta: int) -> None:
        row = self._selected()
        if row is None or not 0 <= row + delta < len(self._entries):
            return
        entries, results = self._entries, self._results
        entries[row], entries[row + delta] = entries[row + delta], entries[row]
        results[row], results[row + delta] = results[row + delta], results[row]
        self._refresh(select=row + delta)

    # --- editor -----------------------------------------------------------------------------

    def _selected(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].row() if rows else None

    def _load_selected(self) -> None:
        row = self._selected()
        entry = self._entries[row] if row is not None else None
        for edit, key in ((self.uri, "urls"), (self.username, "username")):
            edit.setText(entry[key] if entry else "")
        self.credential.setText(entry["credential"] if entry else "")
        for widget in (self.uri, self.username, self.credential, self.remove_button):
            widget.setEnabled(entry is not None)
        self._show_error()

    def _uri_edited(self, text: str) -> None:
        if "@" in text:  # USER:PASSWORD@URI pasted: no STUN/TURN URI contains '@'
            try:
                server = IceServer.from_spec(text.strip())
            except ConfigError:
                pass
            else:
                self.uri.setText(server.urls[0])
                self.username.setText(server.username or "")
                self.credential.setText(server.credential or "")
        self._edited()

    def _edited(self) -> None:
        row = self._selected()
        if row is None:
            return
        self._entries[row] = {
            "urls": self.uri.text(),
            "username": self.username.text(),
            "credential": self.credential.text(),
        }
        self._results[row] = ""
        self._fill_row(row)
        self._show_error()
        self.changed.emit()

    def _show_error(self) -> None:
        row = self._selected()
        problem = None
        if row is not None:
            entry = self._entries[row]
            problem = entry_error(entry["urls"], entry["username"], entry["credential"])
        self.error.setText(problem or "")
        self.test_button.setEnabled(bool(self._entries) and self.first_error() is None)

    def _fill_row(self, row: int) -> None:
        entry = self._entries[row]
        problem = entry_error(entry["urls"], entry["username"], entry["credential"])
        values = (entry["urls"] or "(empty)", entry["username"], self._results[row])
        for column, value in enumerate(values):
            item = QTableWidgetItem(value)
            if column == 0 and problem is not None:
                item.setForeground(theme.ink_color("error"))
                item.setToolTip(problem)
            elif column == 2:
                item.setToolTip(value)
            self.table.setItem(row, column, item)

    def _refresh(self, select: int | None = None) -> None:
        self.table.setRowCount(len(self._entries))
        for row in range(len(self._entries)):
            self._fill_row(row)
        if select is not None:
            self.table.selectRow(select)
        else:
            self.table.clearSelection()
        self._load_selected()
        self.changed.emit()

    # --- Test -------------------------------------------------------------------------------

    def test(self) -> asyncio.Task[Any] | None:
        """Probe every configured URI (app.probe) and show what each returned."""
        if not self._entries or self.first_error() is not None:
            return None
        servers = self.servers()
        self.test_button.setEnabled(False)
        self.status.setText("Testing…")
        return self._run(self._test(servers), "Test ICE servers")

    async def _test(self, servers: list[IceServer]) -> None:
        try:
            results = await probe_servers(servers, self.time_limit)
        finally:
            self.test_button.setEnabled(True)
        self.results = results
        start = 0
        for row, server in enumerate(servers):
            mine = results[start : start + len(server.urls)]  # probe_servers keeps the order
            start += len(server.urls)
            if len(mine) == 1:
                self._results[row] = mine[0].summary
            else:
                self._results[row] = "; ".join(f"{r.uri}: {r.summary}" for r in mine)
            self._fill_row(row)
        ok = sum(r.ok for r in results)
        self.status.setText(f"Tested {len(results)} URI(s): {ok} answered")
        self.table.resizeRowsToContents()  # long results wrap instead of being cut off
        self.testFinished.emit(results)

    def result_text(self, row: int) -> str:
        return self._results[row]


# --- Signaling --------------------------------------------------------------------------------


class SignalingPage(QWidget):
    """Backend and its options, and hosting the embedded signaling server."""

    changed = Signal()

    def __init__(
        self,
        host: SignalingHost,
        run: Runner,
        settings: Settings | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.host = host
        self._run = run
        self.settings = settings
        self.public_ip: str | None = None  # learned via STUN while hosting for others
        self._lookup: asyncio.Task[Any] | None = None
        self.backend = QComboBox()
        _name(self.backend, "signalingBackend", "Default way to reach the other person")
        # In the main window's order, so the same choice sits at the same place in both.
        for key in sorted(SIGNALING_BACKENDS, key=list(BACKEND_LABELS).index):
            self.backend.addItem(BACKEND_LABELS[key], key)
        self.url = QLineEdit()
        self.url_error = _error_label()
        self.room = QLineEdit()
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        self.ca_file = QLineEdit()
        self.ca_file.setPlaceholderText("system CAs")
        _name(self.ca_file, "caFile", "CA file for wss://")
        self.ca_file.setToolTip(
            "Only for a wss:// server with a self-signed or private-CA certificate:"
            " the PEM file to trust instead of the system CAs"
        )
        self.host_switch = QCheckBox("Host a signaling server — starts now; Cancel stops it again")
        _name(self.host_switch, "signalingSwitch", "Host a signaling server")
        self.for_others = QCheckBox("Others can use it (listen on every network interface)")
        _name(self.for_others, "signalingForOthers", "Others can use the signaling server")
        self.browse_button = QPushButton("Browse…")
        _name(self.browse_button, "caBrowse", "Choose the CA file")
        self.share_list = AddressList("signaling")
        self.listen = QLineEdit()
        _name(self.listen, "signalingListen", "Signaling server listen address")
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText("any free port")
        _name(self.port, "signalingPort", "Signaling server port")
        self.autostart = QCheckBox("Start when PeerCall starts")
        self.host_url = QLabel()
        self.host_url.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.host_error = _error_label()

        form = QFormLayout()
        form.addRow("Backend", self.backend)
        form.addRow("Server URL", self.url)
        form.addRow("", self.url_error)
        form.addRow("Room", self.room)
        form.addRow("Room secret", self.secret)
        ca_row = QHBoxLayout()
        ca_row.addWidget(self.ca_file, 1)
        ca_row.addWidget(self.browse_button)
        form.addRow("CA file (wss://)", ca_row)
        hosting = QGroupBox("Host signaling")
        hosting_form = QFormLayout(hosting)
        hosting_form.addRow(self.host_switch)
        hosting_form.addRow(self.for_others)
        hosting_form.addRow("Listen on", self.listen)
        hosting_form.addRow("Port", self.port)
        hosting_form.addRow(self.autostart)
        hosting_form.addRow("URL", self.host_url)
        hosting_form.addRow(self.share_list)
        hosting_form.addRow(self.host_error)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hosting)
        layout.addStretch(1)

        self.backend.currentIndexChanged.connect(lambda _: self._backend_changed(self.key()))
        for edit in (self.url, self.room, self.secret, self.ca_file, self.listen):
            edit.textEdited.connect(self._validate)
        self.host_switch.toggled.connect(self._toggled)
        self.for_others.toggled.connect(self._others_toggled)
        self.listen.textChanged.connect(self._listen_changed)
        self.browse_button.clicked.connect(self.browse_ca_file)
        host.runningChanged.connect(self._running)
        host.errorRaised.connect(self._host_failed)
        host.mapping.stateChanged.connect(lambda _: self._running(self.host.server is not None))

    def load(self, settings: Settings) -> None:
        self.backend.setCurrentIndex(max(0, self.backend.findData(settings["signaling.backend"])))
        self.url.setText(settings["signaling.url"])
        self.room.setText(settings["signaling.room"])
        self.secret.setText(settings["signaling.secret"])
        self.ca_file.setText(settings["signaling.ca_file"])
        self.listen.setText(settings["signaling_server.listen"])
        self.port.setValue(settings["signaling_server.port"])
        self.autostart.setChecked(settings["signaling_server.enabled"])
        self.host_error.clear()
        self._running(self.host.server is not None)
        self._backend_changed(self.key())

    def values(self) -> dict[str, Any]:
        return {
            "signaling.backend": self.key(),
            "signaling.url": self.url.text().strip(),
            "signaling.room": self.room.text(),
            "signaling.secret": self.secret.text(),
            "signaling.ca_file": self.ca_file.text().strip(),
            "signaling_server.listen": self.listen.text().strip(),
            "signaling_server.port": self.port.value(),
            "signaling_server.enabled": self.autostart.isChecked(),
        }

    def key(self) -> str:
        """The chosen backend's settings key (the combo shows the window's labels)."""
        return str(self.backend.currentData())

    def first_error(self) -> str | None:
        try:
            BY_NAME["signaling.url"].validate(self.url.text().strip())
            BY_NAME["signaling.ca_file"].validate(self.ca_file.text().strip())
            BY_NAME["signaling_server.listen"].validate(self.listen.text().strip())
        except ConfigError as exc:
            return str(exc)
        return None

    def _backend_changed(self, backend: str) -> None:
        for widget in (self.url, self.room, self.secret, self.ca_file):
            widget.setEnabled(backend == "websocket")
        self._validate()

    def _validate(self) -> None:
        problem = self.first_error()
        self.url_error.setText(problem or "")
        self.changed.emit()

    def _toggled(self, on: bool) -> None:
        if on == (self.host.server is not None):
            return
        if on:
            self.host_error.clear()
            listen = self.listen.text().strip() or "0.0.0.0"
            try:
                BY_NAME["signaling_server.listen"].validate(listen)
            except ConfigError as exc:
                self._host_failed(str(exc))
                self._running(False)
                return
            self._run(self.host.start(listen, self.port.value()), "Signaling server")
        else:
            self._run(self.host.stop(), "Signaling server")

    def _running(self, running: bool) -> None:
        running = self.host.server is not None
        self.host_switch.blockSignals(True)
        self.host_switch.setChecked(running)
        self.host_switch.blockSignals(False)
        for widget in (self.listen, self.port, self.for_others):
            widget.setEnabled(not running)
        self.host_url.setText(self.host.url or "not running")
        if not running:
            self.public_ip = None
        elif self.for_others.isChecked() and self._lookup is None and self.public_ip is None:
            self._lookup = self._run(self._learn_public_address(), "Public address")
        rows = self.share_rows()
        ports = f"TCP {self._port() or ''}"
        state = self.host.mapping.state
        if rows and rows[0][0] == "this machine only":
            note = "Only this machine can use it: tick “Others can use it” before starting."
        elif any(r[0] == "public (STUN)" for r in rows):
            lan = {r[1] for r in rows if r[0].startswith("LAN")}
            note = (
                f"This machine is behind NAT (public address {self.public_ip}) and no port"
                f" mapping is known: forward {ports} on your router to"
                f" {_first(lan).split('//')[-1].rpartition(':')[0] or 'this machine'},"
                " or people outside your network cannot use it."
            )
            if state is not None and state.status in ("mapping", "failed"):
                note = f"{state.line()}. {note}"
        else:
            note = mapping_note(state, ports)
            if running and not note and not self.public_ip and self.for_others.isChecked():
                note = "Public address unknown (add a STUN server under ICE servers to learn it)."
        self.share_list.set_rows(rows, note)

    async def _learn_public_address(self) -> None:
        """Ask the configured STUN/TURN servers how the internet sees us (once per start)."""
        try:
            entries = self.settings["ice_servers"] if self.settings is not None else []
            servers = [
                IceServer(tuple(e["urls"]), e.get("username"), e.get("credential")) for e in entries
            ]
            found = await public_address(servers) if servers else None
            self.public_ip = found if self.host.server is not None else None
        finally:
            self._lookup = None
        self._running(self.host.server is not None)

    def _host_failed(self, message: str) -> None:
        self.host_error.setText(message)

    def _others_toggled(self, on: bool) -> None:
        self.listen.setText("0.0.0.0" if on else "127.0.0.1")
        self._validate()

    def _listen_changed(self, text: str) -> None:
        listen = text.strip()
        self.for_others.blockSignals(True)
        self.for_others.setChecked(not (listen.startswith("127.") or listen == "::1"))
        self.for_others.blockSignals(False)

    def browse_ca_file(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        dialog = QFileDialog(
            self, "CA certificate (PEM) to trust", "", "PEM (*.pem *.crt);;All (*)"
        )
        dialog.setObjectName("caFileDialog")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.fileSelected.connect(self._ca_chosen)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def _ca_chosen(self, path: str) -> None:
        self.ca_file.setText(path)
        self._validate()

    def share_rows(self) -> list[tuple[str, str, str, str]]:
        """ws://ADDRESS:PORT for every address a peer may use (never ws://0.0.0.0)."""
        url = self.host.url
        if url is None:
            return []
        scheme, _, rest = url.partition("://")
        listen, _, port = rest.rpartition(":")
        listen = listen.strip("[]")
        port = port.rstrip("/")
        places = reachable_addresses(listen)
        state = self.host.mapping.state
        public = router_address(state, {p.ip for p in places})
        if public:
            external = state.external_port("TCP", int(port)) or int(port)
            places.append(HostAddress("public (router)", public))
        elif self.public_ip and self.public_ip not in {p.ip for p in places}:
            places.append(HostAddress("public (STUN)", self.public_ip))
        rows = []
        for place in places:
            host = f"[{place.ip}]" if ":" in place.ip else place.ip
            at = external if place.kind == "public (router)" else port
            where = f"{scheme}://{host}:{at}"
            rows.append((place.kind, where, where, where))
        return rows

    def _port(self) -> int | None:
        url = self.host.url
        return int(url.rpartition(":")[2].rstrip("/")) if url else None


def router_address(state: Any, lan: set[str]) -> str | None:
    """The router's external address when it forwards our ports (mapped or partly)."""
    if state is None or state.status not in ("mapped", "partial") or not state.external_ip:
        return None
    return None if state.external_ip in lan else str(state.external_ip)


def mapping_note(state: Any, ports: str) -> str:
    """One line on the router's forwarding: asking, done (and any refusal), or why not."""
    if state is None or state.status in ("off", "stopped"):
        return ""
    if state.status == "failed":
        return (
            f"{state.line()}. Forward {ports} on your router by hand, or people outside"
            " your network cannot use it."
        )
    return str(state.line())


# --- Relay ------------------------------------------------------------------------------------


def parse_users(text: str) -> tuple[tuple[str, str], ...]:
    """``name:password`` per line (password may hold ':'); ConfigError names a bad line."""
    users = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        name, colon, password = line.partition(":")
        if not colon or not name or not password:
            raise ConfigError(f"relay users: line {number} must be name:password")
        users.append((name, password))
    return tuple(users)


class AddressList(QWidget):
    """Addresses to give the other person: one row each with Copy and QR (issue 12.2)."""

    def __init__(self, what: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._what = what
        self.rows: list[tuple[str, str, str, str]] = []  # (kind, shown, copied, qr)
        self.qr_text = ""
        self._grid = QGridLayout()
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setColumnStretch(1, 1)
        self.qr = QLabel()
        self.qr.setObjectName(f"{what}Qr")
        self.qr.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.note = QLabel()
        self.note.setObjectName(f"{what}Note")
        self.note.setWordWrap(True)
        theme.paint(self.note, "note")
        self.note.hide()
        left = QVBoxLayout()
        left.addLayout(self._grid)
        left.addWidget(self.note)
        left.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(left, 1)
        layout.addWidget(self.qr)

    def set_rows(self, rows: list[tuple[str, str, str, str]], note: str = "") -> None:
        self.note.setText(note)
        self.note.setVisible(bool(note))
        if rows == self.rows:
            return
        self.rows = rows
        while self._grid.count():
            item = self._grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        for index, (kind, shown, copied, qr) in enumerate(rows):
            label = QLabel(kind)
            text = QLineEdit(shown)
            text.setReadOnly(True)
            text.setCursorPosition(0)
            _name(text, f"{self._what}Address{index}", f"{kind} address")
            copy = QPushButton("Copy")
            _name(copy, f"{self._what}Copy{index}", f"Copy the {kind} address")
            copy.setToolTip("Copy what the other person needs, with the credentials")
            copy.clicked.connect(lambda _=False, c=copied: QGuiApplication.clipboard().setText(c))
            show_qr = QPushButton("QR")
            _name(show_qr, f"{self._what}QrButton{index}", f"QR code of the {kind} address")
            show_qr.clicked.connect(lambda _=False, q=qr: self.show_qr(q))
            for column, widget in enumerate((label, text, copy, show_qr)):
                self._grid.addWidget(widget, index, column)
                widget.show()  # added after the page was shown: not shown by itself
        self.show_qr(rows[0][3] if rows else "")

    def show_qr(self, text: str) -> None:
        self.qr_text = text
        if text:
            self.qr.setPixmap(QPixmap.fromImage(qr_image(text, scale=3)))
            self.qr.setToolTip(text)
        else:
            self.qr.clear()


class RelayPage(QWidget):
    """ "Host a relay": one switch, its options, and while on its status and what to share."""

    changed = Signal()

    def __init__(
        self, host: RelayHost, settings: Settings, run: Runner, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.host = host
        self.settings = settings
        self._run = run
        self.status = RelayStatus(False)
        self.share = ""
        self.public_ip: str | None = None  # learned via STUN while running
        self._lookup: asyncio.Task[Any] | None = None
        self.switch = QCheckBox("Host a relay (STUN/TURN) — starts now; Cancel stops it again")
        _name(self.switch, "relaySwitch", "Host a relay")
        self.switch.setStyleSheet("QCheckBox { font-weight: bold; }")
        self.for_others = QCheckBox("Others can use it (listen on every network interface)")
        _name(self.for_others, "relayForOthers", "Others can use the relay")
        self.for_others.setToolTip(
            "Off: only this machine can reach the relay (127.0.0.1). On: it listens on all"
            " interfaces, so people on your network, or the internet with forwarded ports, can."
        )
        self.listen = QLineEdit()
        _name(self.listen, "relayListen", "Relay listen address")
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText("any free port")
        _name(self.port, "relayPort", "Relay port")
        self.min_port = QSpinBox()
        self.min_port.setRange(1, 65535)
        _name(self.min_port, "relayMinPort", "Lowest relayed port")
        self.max_port = QSpinBox()
        self.max_port.setRange(1, 65535)
        _name(self.max_port, "relayMaxPort", "Highest relayed port")
        self.realm = QLineEdit()
        self.external_ip = QLineEdit()
        self.external_ip.setPlaceholderText("public address, when behind NAT")
        self.users = QPlainTextEdit()
        self.users.setPlaceholderText("name:password per line (empty: one is generated)")
        self.users.setMaximumHeight(60)
        self.autostart = QCheckBox("Start when PeerCall starts (saved with Save)")
        self.error = _error_label()
        self.error.setObjectName("relayError")
        self.addresses = QLabel("—")
        self.allocations = QLabel("0")
        self.relayed = QLabel("0 B")
        self.share_list = AddressList("relay")
        self.use_button = QPushButton("Use it for my calls")
        _name(self.use_button, "relayUse", "Use my relay for my calls")
        self.use_button.setToolTip(
            "Add this relay, at an address the other person reaches, to my ICE servers"
        )

        options = QFormLayout()
        options.addRow(self.switch)
        options.addRow(self.for_others)
        options.addRow("Listen on", self.listen)
        options.addRow("Port", self.port)
        ports = QHBoxLayout()
        ports.addWidget(self.min_port)
        ports.addWidget(QLabel("to"))
        ports.addWidget(self.max_port)
        options.addRow("Relay ports", ports)
        options.addRow("Realm", self.realm)
        options.addRow("External IP", self.external_ip)
        options.addRow("Users", self.users)
        options.addRow(self.autostart)
        options.addRow(self.error)
        status = QGroupBox("Status — give the other person one of these")
        status_layout = QVBoxLayout(status)
        figures = QHBoxLayout()
        for caption, label in (
            ("Listening:", self.addresses),
            ("Allocations:", self.allocations),
            ("Relayed:", self.relayed),
        ):
            figures.addWidget(QLabel(caption))
            figures.addWidget(label)
        figures.addStretch(1)
        status_layout.addLayout(figures)
        status_layout.addWidget(self.share_list)
        buttons = QHBoxLayout()
        buttons.addWidget(self.use_button)
        buttons.addStretch(1)
        status_layout.addLayout(buttons)
        # Status first: while the relay runs that is what the user came for (no scrolling).
        layout = QVBoxLayout(self)
        layout.addWidget(status)
        layout.addLayout(options)
        layout.addStretch(1)

        self.switch.toggled.connect(self._toggled)
        self.for_others.toggled.connect(self._others_toggled)
        for edit in (self.listen, self.realm, self.external_ip):
            edit.textEdited.connect(self._validate)
        self.listen.textChanged.connect(self._listen_changed)
        for spin in (self.port, self.min_port, self.max_port):
            spin.valueChanged.connect(self._validate)
        self.users.textChanged.connect(self._validate)
        host.runningChanged.connect(self._running)
        host.statusChanged.connect(self.show_status)
        host.errorRaised.connect(self._failed)
        host.mapping.stateChanged.connect(lambda _: self.show_status(self.host.status()))
        self._running(host.running)

    def load(self, settings: Settings) -> None:
        self.listen.setText(settings["relay.listen"])
        self.port.setValue(settings["relay.port"])
        self.min_port.setValue(settings["relay.min_port"])
        self.max_port.setValue(settings["relay.max_port"])
        self.realm.setText(settings["relay.realm"])
        self.external_ip.setText(settings["relay.external_ip"])
        self.users.setPlainText("\n".join(f"{n}:{p}" for n, p in settings["relay.users"]))
        self.autostart.setChecked(settings["relay.enabled"])
        self.error.clear()
        self._running(self.host.running)

    def values(self) -> dict[str, Any]:
        """The relay settings as typed (ConfigError if the users text is malformed)."""
        return {
            "relay.listen": self.listen.text().strip(),
            "relay.port": self.port.value(),
            "relay.min_port": self.min_port.value(),
            "relay.max_port": self.max_port.value(),
            "relay.realm": self.realm.text().strip(),
            "relay.external_ip": self.external_ip.text().strip(),
            "relay.users": [list(u) for u in parse_users(self.users.toPlainText())],
            "relay.enabled": self.autostart.isChecked(),
        }

    def first_error(self) -> str | None:
        try:
            self.settings.check(self.values())
        except ConfigError as exc:
            return str(exc)
        return None

    def _validate(self) -> None:
        problem = self.first_error()
        if not self.host.running:
            self.error.setText(problem or "")
        self.changed.emit()

    def _others_toggled(self, on: bool) -> None:
        self.listen.setText("0.0.0.0" if on else "127.0.0.1")
        self._validate()

    def _listen_changed(self, text: str) -> None:
        listen = text.strip()
        self.for_others.blockSignals(True)
        self.for_others.setChecked(not (listen.startswith("127.") or listen == "::1"))
        self.for_others.blockSignals(False)

    def relay_settings(self) -> RelaySettings:
        """What the switch starts; a user is generated (and shown) when none is given."""
        values = self.values()
        self.settings.check(values)
        users = tuple((n, p) for n, p in values["relay.users"])
        if not users:
            users = (("peercall", new_password()),)
            self.users.setPlainText(f"{users[0][0]}:{users[0][1]}")
        return relay_settings_from(values, users)

    def _toggled(self, on: bool) -> None:
        if on == self.host.running:
            return
        if on:
            self.error.clear()
            try:
                values = self.relay_settings()
            except ConfigError as exc:
                self._failed(f"Relay: {exc}")
                self._running(False)
                return
            self._run(self.host.start(values), "Relay")
        else:
            self._run(self.host.stop(), "Relay")

    def _running(self, running: bool) -> None:
        running = self.host.running
        self.switch.blockSignals(True)
        self.switch.setChecked(running)
        self.switch.blockSignals(False)
        for widget in (
            self.for_others,
            self.listen,
            self.port,
            self.min_port,
            self.max_port,
            self.realm,
            self.external_ip,
            self.users,
        ):
            widget.setEnabled(not running)
        if not running:
            self.public_ip = None
        elif self.for_others.isChecked() and self._lookup is None:
            self._lookup = self._run(self._learn_public_address(), "Public address")
        self.show_status(self.host.status())

    async def _learn_public_address(self) -> None:
        """Ask the configured STUN/TURN servers how the internet sees us (once per start)."""
        try:
            servers = [
                IceServer(tuple(e["urls"]), e.get("username"), e.get("credential"))
                for e in self.settings["ice_servers"]
            ]
            self.public_ip = await public_address(servers)
        finally:
            self._lookup = None
        self.show_status(self.host.status())

    def _failed(self, message: str) -> None:
        self.error.setText(message)

    def listen_host(self) -> str:
        return self.status.listen or self.listen.text().strip() or "0.0.0.0"

    def share_rows(self) -> tuple[list[tuple[str, str, str, str]], str]:
        """One row per address a peer may use, and the NAT note (issue 12.2)."""
        status = self.status
        if not status.running or not status.users:
            return [], ""
        user, password = status.users[0]
        external = self.external_ip.text().strip()
        places = reachable_addresses(self.listen_host(), external)
        lan = {p.ip for p in places}
        note = ""
        mapping = self.host.mapping.state
        router = router_address(mapping, lan)
        ports = f"UDP+TCP {status.port} and UDP {status.min_port}-{status.max_port}"
        turn_port = {}
        if router and not external:
            turn_port[router] = mapping.external_port("UDP", status.port) or status.port
            places.append(HostAddress("public (router)", router))
            note = mapping_note(mapping, ports)
        elif self.public_ip and self.public_ip not in lan and not external:
            places.append(HostAddress("public (STUN)", self.public_ip))
            note = (
                f"This machine is behind NAT (public address {self.public_ip}) and no port"
                f" mapping is known: forward {ports} on your router to {_first(lan)} and set"
                f" External IP to {self.public_ip}, or people outside your network cannot use it."
            )
            if mapping is not None and mapping.status in ("mapping", "failed"):
                note = f"{mapping.line()}. {note}"
        elif mapping is not None and mapping.status in ("mapping", "failed"):
            note = mapping_note(mapping, ports)
        elif places and places[0].kind == "this machine only":
            note = "Only this machine can use it: tick “Others can use it” before starting."
        elif not self.public_ip and not external:
            note = "Public address unknown (add a STUN server under ICE servers to learn it)."
        rows = []
        for place in places:
            uris = uris_at(status.uris, place.ip)
            if place.ip in turn_port:
                uris = tuple(at_port(u, turn_port[place.ip]) for u in uris)
            # USER:PASSWORD@URI: one line that PeerCall's ICE editor, `peercall call --ice`
            # and the QR code all take.
            spec = share_spec(uris[0], user, password)
            rows.append((place.kind, spec, spec, spec))
        return rows, note

    def show_status(self, status: RelayStatus) -> None:
        """Paint a status snapshot (RelayHost refreshes it every second while running)."""
        self.status = status
        self.addresses.setText(", ".join(status.addresses) if status.running else "not running")
        self.allocations.setText(str(status.allocations))
        self.relayed.setText(
            f"{_bytes(status.relayed_bytes)} in {status.relayed_packets} packets"
            if status.running
            else "—"
        )
        rows, note = self.share_rows()
        self.share_list.set_rows(rows, note)
        self.share = self.share_text(rows[0][1]) if rows else ""
        self.use_button.setEnabled(status.running)

    def share_text(self, spec: str) -> str:
        """The URIs and credentials spelled out, for clients other than PeerCall."""
        user_password, _, uri = spec.partition("@")
        user, _, password = user_password.partition(":")
        host = uri.split("?")[0].split(":", 1)[1].rsplit(":", 1)[0].strip("[]")
        uris = uris_at(self.status.uris, host)
        lines = [*uris, f"username: {user}", f"credential: {password}", f"in PeerCall: {spec}"]
        return "\n".join(lines)

    @property
    def qr_text(self) -> str:
        return self.share_list.qr_text

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.share)

    def ice_entry(self) -> dict[str, str] | None:
        """My own relay as an ICE server entry, at an address the peer can reach too.

        The relay tells each client the relayed address at the address the client reached it
        on (nat.server); the peer sends media there, so 127.0.0.1 would fail across machines
        (issue 12.3). The first non-loopback address wins; loopback only if nothing else.
        """
        status = self.status
        if not status.running or not status.users:
            return None
        user, password = status.users[0]
        places = reachable_addresses(self.listen_host(), self.external_ip.text().strip())
        lan = [p for p in places if p.kind.startswith("LAN")]
        ip = (lan or places)[0].ip if places else "127.0.0.1"
        return {
            "urls": " ".join(uris_at(status.uris, ip)),
            "username": user,
            "credential": password,
        }


def at_port(uri: str, port: int) -> str:
    """``turn:HOST:P?x`` with the router's external port P (it may map to another)."""
    head, sep, query = uri.partition("?")
    return f"{head.rpartition(':')[0]}:{port}{sep}{query}"


def _first(addresses: set[str]) -> str:
    return sorted(addresses)[0] if addresses else "this machine"


def _bytes(n: int) -> str:
    """1234567 -> "1.2 MB" (decimal units, like network figures)."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


# --- Audio & video ----------------------------------------------------------------------------


class MediaPage(QWidget):
    """Devices, a live input level meter while shown, a test tone, noise suppression and gain."""

    changed = Signal()
    toneFinished = Signal()
    meterOpened = Signal(bool)
    echoApplied = Signal(bool)

    def __init__(self, run: Runner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._run = run
        self.track: Any = None
        self._meter_task: asyncio.Task[Any] | None = None
        self.peak = 0.0
        self.microphone = QComboBox()
        self.speaker = QComboBox()
        self.camera = QComboBox()
        _name(self.camera, "cameraChoice", "Camera")
        self.preview = VideoView("Camera preview")
        _name(self.preview, "cameraPreview", "Camera preview")
        self.preview.setFixedSize(192, 144)
        self._preview: tuple[Any, Any] | None = None  # (track, sink) while shown
        self.refresh_button = QPushButton("Rescan devices")
        self.meter = LevelMeter()
        self.meter.setObjectName("inputLevel")
        self.device_note = QLabel()
        theme.paint(self.device_note, "note")
        self.device_note.setWordWrap(True)
        self.tone_button = QPushButton("Play test tone")
        self.video = QCheckBox("Send video when a call starts")
        self.noise = QComboBox()
        self.noise.addItems(list(NOISE_LEVELS))
        self.noise.setToolTip("WebRTC noise suppression (webrtc-noise-gain); adds about 7 ms")
        self.gain = QSpinBox()
        self.gain.setRange(0, 31)
        self.gain.setSpecialValueText("Off")
        self.gain.setSuffix(" dBFS target")
        self.gain.setToolTip("WebRTC automatic gain control: the level it aims for, below full")
        self.echo = QCheckBox("Echo cancellation (system)")
        self.echo.setToolTip(
            "Loads PulseAudio's WebRTC echo canceller (module-echo-cancel) and records from it"
        )
        self.echo_error = _error_label()
        echo = QLabel(
            "The system canceller removes what your speaker plays from your microphone, for the"
            " pulse/default devices only (not raw hw: devices). Without it, use headphones."
        )
        echo.setWordWrap(True)
        theme.paint(echo, "note")

        form = QFormLayout(self)
        form.addRow("Microphone", self.microphone)
        form.addRow("Input level", self.meter)
        form.addRow("Speaker", self.speaker)
        form.addRow("", self.tone_button)
        form.addRow("Camera", self.camera)
        form.addRow("", self.preview)
        form.addRow("", self.video)
        form.addRow("", self.refresh_button)
        form.addRow(self.device_note)
        form.addRow("Noise suppression", self.noise)
        form.addRow("Auto gain", self.gain)
        form.addRow("", self.echo)
        form.addRow(self.echo_error)
        form.addRow(echo)

        self.microphone.currentIndexChanged.connect(self._microphone_changed)
        self.noise.currentIndexChanged.connect(self._processing_changed)
        self.gain.valueChanged.connect(self._processing_changed)
        self.tone_button.clicked.connect(self.play_tone)
        self.echo.toggled.connect(self._echo_toggled)
        self.refresh_button.clicked.connect(self.rescan)
        self.camera.currentIndexChanged.connect(self._camera_changed)
        self.video.setObjectName("sendVideo")

    # --- camera preview ---------------------------------------------------------------------

    def start_preview(self) -> None:
        """Show the chosen camera (or the test pattern calls would send) live (idempotent)."""
        if self._preview is not None:
            return
        from app.media.video import LatestFrameSink
        from app.ui.callsetup import video_source

        try:
            track = video_source(self.camera.currentData() or "", fps=15)
        except Exception as exc:
            self.device_note.setText(f"Camera: {user_message(exc)}")
            self.device_note.setVisible(True)
            return
        sink = LatestFrameSink()
        self._preview = (track, sink)
        self._run(sink.start(track), "Camera preview")
        self.preview.set_source(sink.latest_rgb)

    def stop_preview(self) -> None:
        preview, self._preview = self._preview, None
        self.preview.clear()
        if preview is not None:
            track, sink = preview
            track.stop()
            self._run(sink.stop(), "Camera preview")

    def _camera_changed(self) -> None:
        if self._preview is not None:
            self.stop_preview()
            self.start_preview()
        self.changed.emit()

    # --- devices ----------------------------------------------------------------------------

    def list_devices(self, settings: Settings | dict[str, Any]) -> None:
        """Fill the device choices (``settings`` says which to select); say so when none."""
        from app.media import devices
        from app.media.video import list_cameras

        notes = []
        try:
            found = devices.list_audio_devices()
        except Exception as exc:
            found = []
            notes.append(f"Audio unavailable: {user_message(exc)}")
        inputs = [d.name for d in found if d.supports("input")]
        outputs = [d.name for d in found if d.supports("output")]
        if found and not inputs:
            notes.append("No microphone found.")
        if found and not outputs:
            notes.append("No speaker found.")
        if not found and not notes:
            notes.append("No audio devices found (is a sound server running?).")
        from app.ui.callsetup import pulse_device_names

        pulse = pulse_device_names() if found else {}
        found_cameras = list_cameras()
        cameras = [c.path for c in found_cameras]
        self._camera_names = {c.path: f"{c.name} ({c.path})" for c in found_cameras}
        if not cameras:
            notes.append("No camera found: calls send the test pattern when video is on.")
        for combo, names, key, default in (
            (self.microphone, inputs, "audio.input", "System default"),
            (self.speaker, outputs, "audio.output", "System default"),
            (self.camera, cameras, "video.camera", "First found, else the test pattern"),
        ):
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(default, "")
            for name in names:
                combo.addItem(self._device_label(name, key, pulse), name)
            current = settings[key]
            if current and current not in names:
                combo.addItem(f"{current} (not present)", current)
            combo.setCurrentIndex(max(0, combo.findData(current)))
            combo.blockSignals(False)
        self.device_note.setText(" ".join(notes))
        self.device_note.setVisible(bool(notes))

    def _device_label(self, name: str, key: str, pulse: dict[str, str]) -> str:
        """``pulse``/``default`` say which sound card they lead to; cameras their driver name."""
        if key == "video.camera":
            return self._camera_names.get(name, name)
        kind = "input" if key == "audio.input" else "output"
        if name in ("pulse", "default") and kind in pulse:
            return f"{pulse[kind]} ({name})"
        return name

    def load(self, settings: Settings) -> None:
        self.list_devices(settings)
        self.video.setChecked(settings["video.enabled"])
        self.noise.setCurrentIndex(settings["audio.noise_suppression"])
        self.gain.setValue(settings["audio.auto_gain"])
        self.echo.blockSignals(True)
        self.echo.setChecked(settings["audio.echo_cancel"])
        self.echo.blockSignals(False)
        self.echo_error.clear()

    def values(self) -> dict[str, Any]:
        return {
            "audio.input": self.microphone.currentData() or "",
            "audio.output": self.speaker.currentData() or "",
            "video.camera": self.camera.currentData() or "",
            "video.enabled": self.video.isChecked(),
            "audio.noise_suppression": self.noise.currentIndex(),
            "audio.auto_gain": self.gain.value(),
            "audio.echo_cancel": self.echo.isChecked(),
        }

    def rescan(self) -> None:
        """Re-enumerate devices (PortAudio lists them once); the meter is closed meanwhile."""
        from app.media import devices

        was_open = self.track is not None
        self.stop_meter()
        try:
            devices.refresh()
        except Exception as exc:
            self.device_note.setText(f"Audio unavailable: {user_message(exc)}")
        self.list_devices(self.values())
        if was_open:
            self.start_meter()

    # --- level meter ------------------------------------------------------------------------

    def _processing(self) -> Any:
        from app.audio_processing import AudioProcessing

        processing = AudioProcessing(self.noise.currentIndex(), self.gain.value())
        return processing if processing.enabled else None

    def start_meter(self) -> None:
        """Open the chosen microphone and feed the meter (idempotent)."""
        if self.track is not None or (self._meter_task and not self._meter_task.done()):
            return
        self._meter_task = self._run(self._open_meter(), "Microphone")

    async def _open_meter(self) -> None:
        from app.media.audio import MicrophoneTrack

        device = self.microphone.currentData() or None
        track: Any = None
        try:
            track = MicrophoneTrack(device, on_block=self._on_block, process=self._processing())
            await track.start()
        except asyncio.CancelledError:  # stop_meter() while opening
            if track is not None:
                track.stop()
            raise
        except Exception as exc:
            self.device_note.setText(f"Microphone: {user_message(exc)}")
            self.device_note.setVisible(True)
            self.meterOpened.emit(False)
            return
        if self._meter_task is not asyncio.current_task():  # stopped or restarted meanwhile
            track.stop()
            return
        self.track = track
        self.meterOpened.emit(True)

    def _on_block(self, samples: Any, at: float) -> None:
        level = block_level(samples)
        self.peak = max(self.peak, level)
        self.meter.set_level(level)

    def stop_meter(self) -> None:
        track, self.track = self.track, None
        task, self._meter_task = self._meter_task, None
        if task is not None and not task.done():
            task.cancel()
        if track is not None:
            track.stop()
        self.meter.set_level(0.0)

    def _microphone_changed(self) -> None:
        if self.track is not None:
            self.stop_meter()
            self.start_meter()
        self.changed.emit()

    def _processing_changed(self) -> None:
        if self.track is not None:
            self.track.process = self._processing()
        self.changed.emit()

    # --- echo cancellation (by the sound server) -------------------------------------------

    def _echo_toggled(self, on: bool) -> None:
        self.echo_error.clear()
        self._run(self._apply_echo(on), "Echo cancellation")

    async def _apply_echo(self, on: bool) -> None:
        """Load/unload the canceller now (pactl, off the loop); reopen the meter on it."""
        from app.audio_processing import disable_system_echo_cancel, enable_system_echo_cancel

        reopen = self.track is not None
        self.stop_meter()
        try:
            await asyncio.to_thread(enable_system_echo_cancel if on else disable_system_echo_cancel)
        except Exception as exc:
            # A sentence for the user; pactl's own words stay in the tooltip and the log.
            self.echo_error.setText(
                "Echo cancellation is not available with these devices: PulseAudio refused"
                " to load its canceller. Use headphones, or pick a real microphone and speaker."
            )
            self.echo_error.setToolTip(user_message(exc))
            logger.info("echo cancellation refused: %s", exc)
            self.echo.blockSignals(True)
            self.echo.setChecked(False)
            self.echo.blockSignals(False)
        if reopen:
            self.start_meter()
        self.echoApplied.emit(self.echo.isChecked())
        self.changed.emit()

    # --- test tone --------------------------------------------------------------------------

    def play_tone(self) -> asyncio.Task[Any] | None:
        """Play a 440 Hz tone for about a second on the chosen speaker."""
        if not self.tone_button.isEnabled():
            return None
        self.tone_button.setEnabled(False)
        return self._run(self._play_tone(self.speaker.currentData() or None), "Test tone")

    async def _play_tone(self, device: str | None) -> None:
        from app.media.audio import SpeakerSink
        from app.media.synthetic import ToneTrack

        track = ToneTrack(440.0, 0.3)
        sink: Any = None
        try:
            sink = SpeakerSink(device)
            await sink.start(track)
            await asyncio.sleep(TONE_SECONDS)
        except Exception as exc:
            self.device_note.setText(f"Speaker: {user_message(exc)}")
            self.device_note.setVisible(True)
        finally:
            if sink is not None:
                await sink.stop()
            track.stop()
            self.tone_button.setEnabled(True)
            self.toneFinished.emit()


# --- the dialog -------------------------------------------------------------------------------


class SettingsDialog(QDialog):
    """Settings as pages; Save validates everything, writes atomically and emits ``saved``."""

    saved = Signal()

    def __init__(
        self,
        settings: Settings,
        relay_host: RelayHost,
        signaling_host: SignalingHost,
        run: Runner,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("PeerCall settings")
        self.settings = settings
        self.run = run
        self.ice = IceServersPage(run)
        self.signaling = SignalingPage(signaling_host, run, settings)
        self.relay = RelayPage(relay_host, settings, run)
        self.media = MediaPage(run)
        self.display_name = QLineEdit()
        self.changed_keys: set[str] = set()  # what the last Save changed
        self.tabs = QTabWidget()
        self.tabs.addTab(self.ice, "ICE servers")
        self.tabs.addTab(self.signaling, "Signaling")
        self.tabs.addTab(self.relay, "Host a relay")
        self.tabs.addTab(self.media, "Audio && video")
        self.error = _error_label()
        self.error.setObjectName("settingsError")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        _name(self.save_button, "settingsSave", "Save settings")
        self.cancel_button = self.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        _name(self.cancel_button, "settingsCancel", "Cancel settings")
        _name(self.display_name, "displayName", "Your name")
        _name(self.tabs, "settingsTabs", "Settings pages")
        name_row = QFormLayout()
        name_row.addRow("Your name", self.display_name)
        layout = QVBoxLayout(self)
        layout.addLayout(name_row)
        layout.addWidget(self.tabs)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.resize(640, 560)

        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        # Cancel undoes the hosting switches, except while the window shuts down (it has just
        # stopped the servers and closes this dialog, which must not start them again).
        self.restore_hosting_on_cancel = True
        for page in (self.ice, self.signaling, self.relay, self.media):
            page.changed.connect(self.validate)
        self.relay.use_button.clicked.connect(self.use_my_relay)
        self.tabs.currentChanged.connect(self._page_changed)

    def load(self) -> None:
        """Show the current settings (discarding unsaved edits)."""
        # The hosting switches act at once; Cancel returns them to this (see reject).
        self._hosts_at_open = (self.relay.host.started_with, self.signaling.host.started_with)
        self.display_name.setText(self.settings["display_name"])
        self.ice.set_entries(self.settings["ice_servers"])
        self.signaling.load(self.settings)
        self.relay.load(self.settings)
        self.media.load(self.settings)
        self.validate()

    def values(self) -> dict[str, Any]:
        return {
            "display_name": self.display_name.text().strip(),
            "ice_servers": self.ice.entries(),
            **self.signaling.values(),
            **self.relay.values(),
            **self.media.values(),
        }

    def first_error(self) -> str | None:
        for page in (self.ice, self.signaling, self.relay):
            problem = page.first_error()
            if problem is not None:
                return problem
        try:
            self.settings.check(self.values())
        except ConfigError as exc:
            return str(exc)
        return None

    def validate(self) -> bool:
        problem = self.first_error()
        self.error.setText(problem or "")
        self.save_button.setEnabled(problem is None)
        return problem is None

    def save(self) -> bool:
        """Store and write the settings; on failure the one-line reason stays on screen."""
        if not self.validate():
            return False
        try:
            values = self.values()
            before = self.settings.as_dict()
            self.settings.update(values)
            self.settings.save()
            # Only what this dialog changed: the window must not lose what the user typed
            # there since (issue 12.5).
            self.changed_keys = {k for k, v in values.items() if before.get(k) != v}
        except (ConfigError, OSError) as exc:
            self.error.setText(f"Cannot save settings: {user_message(exc)}")
            return False
        self.saved.emit()
        self.accept()
        return True

    def reject(self) -> None:
        """Cancel (or Escape, or closing the dialog): nothing is saved, and a relay or
        signaling server switched on or off in this dialog goes back to how it was."""
        relay_then, signaling_then = getattr(self, "_hosts_at_open", (None, None))
        relay, signaling = self.relay.host, self.signaling.host
        if not self.restore_hosting_on_cancel:
            super().reject()  # the app is quitting: it stops the servers itself
            return
        if relay.started_with != relay_then:
            self.run(self._restore_relay(relay_then), "Relay")
        if signaling.started_with != signaling_then:
            self.run(self._restore_signaling(signaling_then), "Signaling server")
        super().reject()

    async def _restore_relay(self, then: Any) -> None:
        await self.relay.host.stop()
        if then is not None:
            await self.relay.host.start(then)

    async def _restore_signaling(self, then: tuple[str, int, dict[str, Any]] | None) -> None:
        await self.signaling.host.stop()
        if then is not None:
            host, port, kwargs = then
            await self.signaling.host.start(host, port, **kwargs)

    def use_my_relay(self) -> None:
        entry = self.relay.ice_entry()
        if entry is not None:
            self.ice.add_entry(entry["urls"], entry["username"], entry["credential"])
            self.tabs.setCurrentWidget(self.ice)

    # --- the level meter runs only while the audio page is visible --------------------------

    def _page_changed(self) -> None:
        if self.isVisible() and self.tabs.currentWidget() is self.media:
            self.media.start_meter()
            self.media.start_preview()
        else:
            self.media.stop_meter()
            self.media.stop_preview()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._page_changed()

    def hideEvent(self, event: QHideEvent) -> None:
        self.media.stop_meter()
        self.media.stop_preview()
        super().hideEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.media.stop_meter()
        self.media.stop_preview()
        super().closeEvent(event)
