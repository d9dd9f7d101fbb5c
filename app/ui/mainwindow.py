"""The call window: start/answer a call, media controls, video, chat, badge, SAS and history.

Everything here is a view over :class:`app.ui.adapter.CallAdapter`: buttons call its slots,
its signals update the widgets. Signaling channels are built here from the settings (the
window owns the text boxes the copy-paste backend reads and writes).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QStyle,
    QSystemTrayIcon,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import events as ev
from app.errors import ConfigError, PeerCallError
from app.history import CallRecord, History
from app.settings import Settings
from app.ui import callsetup, hostcall
from app.ui.adapter import CallAdapter
from app.ui.hosting import RelayHost, SignalingHost
from app.ui.lanpage import LanPage
from app.ui.presenters import format_duration, user_message
from app.ui.ring import Ringer
from app.ui.widgets import (
    CallTimer,
    ChatPane,
    ConnectionBadge,
    HistoryView,
    QualityIndicator,
    SasLabel,
    VideoView,
)
from signaling.errors import SignalingError

logger = logging.getLogger(__name__)

BACKEND_PAGES = ("websocket", "lan", "manual")
BACKEND_LABELS = {"websocket": "Server room", "lan": "LAN peer", "manual": "Copy / paste"}


class ManualPanel(QWidget):
    """The copy-paste backend's boxes: our blob (with Copy) and the peer's (with Paste/Use)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mine = QPlainTextEdit()
        self.mine.setReadOnly(True)
        self.mine.setPlaceholderText(
            "Your offer or answer appears here: send it to the other person"
        )
        self.mine.setMaximumHeight(90)
        self.copy_button = QPushButton("Copy")
        self.theirs = QPlainTextEdit()
        self.theirs.setPlaceholderText("Paste the other person's offer or answer here")
        self.theirs.setMaximumHeight(90)
        self.paste_button = QPushButton("Paste")
        self.use_button = QPushButton("Use pasted text")
        self.use_button.setEnabled(False)
        self.offer_button = QPushButton("Create offer")
        self.answer_button = QPushButton("Answer an offer")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.offer_button)
        row.addWidget(self.answer_button)
        layout.addLayout(row)
        layout.addWidget(QLabel("Yours:"))
        layout.addWidget(self.mine)
        layout.addWidget(self.copy_button)
        layout.addWidget(QLabel("Theirs:"))
        layout.addWidget(self.theirs)
        row2 = QHBoxLayout()
        row2.addWidget(self.paste_button)
        row2.addWidget(self.use_button)
        layout.addLayout(row2)
        self.copy_button.clicked.connect(
            lambda: QGuiApplication.clipboard().setText(self.mine.toPlainText())
        )
        self.paste_button.clicked.connect(
            lambda: self.theirs.setPlainText(QGuiApplication.clipboard().text())
        )
        self.use_button.clicked.connect(self._use)
        self._pastes: asyncio.Queue[str | None] | None = None

    def channel(self, notify: Callable[[str], None]) -> Any:
        """A fresh ManualChannel reading the "Theirs" box and writing the "Yours" box."""
        from signaling.manual import ManualChannel

        pastes: asyncio.Queue[str | None] = asyncio.Queue()
        self._pastes = pastes
        self.mine.clear()

        async def read_line() -> str | None:
            self.use_button.setEnabled(True)
            try:
                return await pastes.get()
            finally:
                self.use_button.setEnabled(False)

        async def write(text: str) -> None:
            self.mine.setPlainText(text)

        async def complain(text: str) -> None:
            notify(text)

        return ManualChannel(read_line, write, notify=complain)

    def _use(self) -> None:
        if self._pastes is not None:
            self._pastes.put_nowait(self.theirs.toPlainText() + "\n")
            self._pastes.put_nowait("\n")  # a blank line ends one paste (see ManualChannel)
            self.theirs.clear()


class MainWindow(QMainWindow):
    """The PeerCall window."""

    closed = Signal()  # emitted once shutdown finished (the app quits then)

    def __init__(
        self,
        settings: Settings,
        history: History,
        *,
        media: callsetup.MediaFactory | None = None,
        loopback: bool = False,
        name: str = "PeerCall",
        lan_interfaces: Sequence[str] | None = None,
        lan_listen: str = "0.0.0.0",
        ring_audio: bool | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.history = history
        self.loopback = loopback
        self._lan_interfaces = lan_interfaces
        self._lan_listen = lan_listen
        self._media_factory = media
        self._shutting_down = False
        self._shutdown_done = False
        self.error_boxes: list[QMessageBox] = []
        self.errors: list[str] = []
        self.setWindowTitle(name)
        self.resize(1100, 680)

        self.adapter = CallAdapter(self._new_session, history, self)
        self.relay_host = RelayHost(self)
        # Ring on the configured speaker; silent when calls use synthetic media (no sound card).
        self.ringer = Ringer(
            settings["audio.output"] or None,
            enabled=media is None if ring_audio is None else ring_audio,
        )
        self.signaling_host = SignalingHost(self)
        self.debug_panel: Any = None
        self.settings_dialog: Any = None

        self._build_top_bar()
        self._build_body()
        self._build_menu()
        self._build_tray()
        self._connect()
        self.history_view.set_records(history.records)
        self._set_in_call(False)
        for message in (settings.load_error, history.load_error):
            if message:
                self.show_error(message)

    # --- construction -------------------------------------------------------------------

    def _build_top_bar(self) -> None:
        self.badge = ConnectionBadge()
        self.quality = QualityIndicator()
        self.quality_label = QLabel("")
        self.quality_label.setObjectName("qualityLabel")
        self.sas = SasLabel()
        self.timer = CallTimer(time.monotonic)
        bar = QHBoxLayout()
        bar.addWidget(self.badge)
        bar.addWidget(self.quality)
        bar.addWidget(self.quality_label)
        bar.addStretch(1)
        bar.addWidget(self.sas)
        bar.addStretch(1)
        bar.addWidget(self.timer)
        self._top_bar = bar

        self.incoming = QFrame()
        self.incoming.setObjectName("incomingBar")
        self.incoming.setStyleSheet(
            "#incomingBar { background: #fefcbf; border: 1px solid #d69e2e; border-radius: 6px; }"
        )
        self.incoming_label = QLabel("Incoming call")
        self.accept_button = QPushButton("Accept")
        self.accept_button.setStyleSheet("background: #2f855a; color: white; padding: 4px 14px;")
        self.decline_button = QPushButton("Decline")
        self.decline_button.setStyleSheet("background: #c53030; color: white; padding: 4px 14px;")
        row = QHBoxLayout(self.incoming)
        row.addWidget(self.incoming_label, 1)
        row.addWidget(self.accept_button)
        row.addWidget(self.decline_button)
        self.incoming.hide()

    def _build_body(self) -> None:
        # Left: how to reach the peer.
        self.backend = QComboBox()
        for key in BACKEND_PAGES:
            self.backend.addItem(BACKEND_LABELS[key], key)
        self.pages = QStackedWidget()
        # Server room.
        server_page = QWidget()
        form = QFormLayout(server_page)
        form.setContentsMargins(0, 0, 0, 0)
        self.server_url = QLineEdit(self.settings["signaling.url"])
        self.room = QLineEdit(self.settings["signaling.room"])
        self.secret = QLineEdit(self.settings["signaling.secret"])
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.call_button = QPushButton("Call")
        self.call_button.setToolTip("Join the room and call whoever waits there")
        self.wait_button = QPushButton("Wait for a call")
        self.wait_button.setToolTip("Join the room and ring when someone calls")
        form.addRow("Server", self.server_url)
        form.addRow("Room", self.room)
        form.addRow("Secret", self.secret)
        buttons = QHBoxLayout()
        buttons.addWidget(self.call_button)
        buttons.addWidget(self.wait_button)
        form.addRow(buttons)
        # LAN.
        self.lan = LanPage(
            self.adapter.run,
            self.display_name,
            interfaces=self._lan_interfaces,
            listen=self._lan_listen,
        )
        self.lan_peers = self.lan.peers
        self.lan_call_button = self.lan.call_button
        self.lan_wait_button = self.lan.reachable_button
        # Manual.
        self.manual = ManualPanel()
        for page in (server_page, self.lan, self.manual):
            self.pages.addWidget(page)

        start = QGroupBox("Start a call")
        start_layout = QVBoxLayout(start)
        start_layout.addWidget(self.backend)
        start_layout.addWidget(self.pages)
        start_layout.addStretch(1)
        self.always_relay = QCheckBox("Always relay")
        self.always_relay.setToolTip(
            "Send media only through a TURN relay, so the other person never learns your"
            " address (needs a turn: server in Settings)"
        )
        self.always_relay.setChecked(bool(self.settings["relay_only"]))
        start_layout.addWidget(self.always_relay)

        # Centre: video and controls.
        self.remote_video = VideoView("No video from the other person (audio-only call)")
        self.remote_video.setMinimumSize(420, 300)
        self.local_video = VideoView("Camera off")
        self.local_video.setFixedSize(176, 132)
        self.remote_video.set_overlay(self.local_video)
        self.hangup_button = QPushButton("Hang up")
        self.hangup_button.setStyleSheet("background: #c53030; color: white; padding: 6px 16px;")
        self.mute_button = QPushButton("Mute")
        self.mute_button.setCheckable(True)
        self.camera_button = QPushButton("Camera")
        self.camera_button.setCheckable(True)
        self._set_camera_available()
        controls = QHBoxLayout()
        controls.addStretch(1)
        for button in (self.mute_button, self.camera_button, self.hangup_button):
            controls.addWidget(button)
        controls.addStretch(1)
        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 0, 0, 0)
        centre_layout.addWidget(self.remote_video, 1)
        centre_layout.addLayout(controls)

        # Right: chat and history.
        self.chat = ChatPane()
        self.history_view = HistoryView()
        side = QTabWidget()
        side.addTab(self.chat, "Chat")
        side.addTab(self.history_view, "History")
        self.side_tabs = side

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(start)
        splitter.addWidget(centre)
        splitter.addWidget(side)
        splitter.setSizes([270, 560, 270])
        splitter.setChildrenCollapsible(False)

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addLayout(self._top_bar)
        layout.addWidget(self.incoming)
        layout.addWidget(splitter, 1)
        self.setCentralWidget(body)
        backend = self.settings["signaling.backend"]
        self.backend.setCurrentIndex(BACKEND_PAGES.index(backend))
        self.pages.setCurrentIndex(BACKEND_PAGES.index(backend))
        if backend == "lan":
            self.lan.start_browsing()

    def _build_menu(self) -> None:
        menu = self.menuBar().addMenu("&PeerCall")
        self.settings_action = QAction("&Settings…", self)
        self.settings_action.setShortcut(QKeySequence.StandardKey.Preferences)
        self.debug_action = QAction("&Debug panel", self)
        self.debug_action.setShortcut(QKeySequence("Ctrl+D"))
        self.quit_action = QAction("&Quit", self)
        self.quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        hostcall.install(self, menu)  # "Host a call…" (issue 13)
        for action in (self.settings_action, self.debug_action, self.quit_action):
            menu.addAction(action)
        self.settings_action.triggered.connect(self.open_settings)
        self.debug_action.triggered.connect(self.open_debug_panel)
        self.quit_action.triggered.connect(self.close)

    def _build_tray(self) -> None:
        self.tray: QSystemTrayIcon | None = None
        if not QSystemTrayIcon.isSystemTrayAvailable():
            logger.info("system tray unavailable: incoming calls ring in the window only")
            return
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MediaVolume)
        self.tray = QSystemTrayIcon(QIcon(icon), self)
        self.tray.setToolTip("PeerCall")
        self.tray.activated.connect(self._show_from_tray)
        self.tray.show()

    def _show_from_tray(self) -> None:
        self.showNormal()
        self.activateWindow()

    def _connect(self) -> None:
        a = self.adapter
        a.stateChanged.connect(self._on_state)
        a.selectedPairChanged.connect(self.badge.set_selected)
        a.statsSampled.connect(self._on_stats)
        a.sasReady.connect(self.sas.set_sas)
        a.chatReceived.connect(lambda text: self.chat.add_message("Them", text))
        a.chatSent.connect(lambda text: self.chat.add_message("You", text))
        a.incomingCall.connect(self._on_incoming)
        a.callEnded.connect(self._on_call_ended)
        a.errorRaised.connect(self.show_error)
        a.busyChanged.connect(self._set_in_call)
        a.sessionStarted.connect(self._on_session_started)
        self.relay_host.errorRaised.connect(self.show_error)
        self.signaling_host.errorRaised.connect(self.show_error)
        self.chat.sendRequested.connect(a.send_chat)
        self.backend.currentIndexChanged.connect(self._on_backend)
        self.lan.callRequested.connect(lambda request: self.start_call(*request))
        self.lan.errorRaised.connect(self.show_error)
        self.lan.reachableChanged.connect(self._on_lan_reachable)
        self.call_button.clicked.connect(self.call_room)
        self.wait_button.clicked.connect(self.wait_in_room)
        self.manual.offer_button.clicked.connect(self.manual_offer)
        self.manual.answer_button.clicked.connect(self.manual_answer)
        self.hangup_button.clicked.connect(self.hangup)
        self.mute_button.toggled.connect(self._on_mute)
        self.camera_button.toggled.connect(a.set_video_enabled)
        self.accept_button.clicked.connect(self._accept)
        self.decline_button.clicked.connect(self._decline)
        self.always_relay.toggled.connect(self._on_always_relay)

    def display_name(self) -> str:
        """How peers see us: the configured display name, else this machine's host name."""
        name: str = self.settings["display_name"]
        return name.strip() or socket.gethostname().split(".")[0] or "PeerCall"

    def _on_backend(self, index: int) -> None:
        self.pages.setCurrentIndex(index)
        if BACKEND_PAGES[index] == "lan":
            self.lan.start_browsing()

    def _on_lan_reachable(self, on: bool) -> None:
        if on:
            self._listen_on_lan()
        elif self.adapter.waiting:
            self.adapter.hangup()  # stop waiting in our own room; a live call goes on

    def _listen_on_lan(self) -> None:
        channel = self.lan.host_channel()
        if channel is not None and not self.adapter.in_call:
            self.wait_for_call(channel, "LAN caller")

    def _set_camera_available(self) -> None:
        try:
            from app.media import video  # noqa: F401
        except ImportError:
            self.camera_button.setEnabled(False)
            self.camera_button.setToolTip("Camera support is not available in this build yet")

    # --- calls --------------------------------------------------------------------------

    def _new_session(self) -> Any:
        media = self._media_factory() if self._media_factory else self._device_media()
        return callsetup.new_session(
            callsetup.call_options(self.settings, loopback=self.loopback), media
        )

    def _device_media(self) -> callsetup.CallMedia:
        try:
            return callsetup.device_media(self.settings)
        except PeerCallError as exc:
            # No sound card (or a bad device name): say so once, call with silence anyway.
            self.show_error(f"Audio: {exc}; calling without microphone/speaker")
            return callsetup.synthetic_media()

    def _websocket_channel(self) -> Any:
        url, room, secret = (
            self.server_url.text().strip(),
            self.room.text().strip(),
            self.secret.text(),
        )
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"signaling server URL must start with ws:// or wss://, got {url!r}")
        if not room:
            raise ConfigError("type a room name both of you will join")
        if not secret:
            # The server refuses secret-less joins (docs/signaling-protocol.md): say it first.
            raise ConfigError("type a room secret both of you share, so strangers cannot join")
        from signaling.client import WebSocketChannel

        # The CA file only matters for wss:// (a self-signed server); ws:// ignores it.
        ca_file = self.settings["signaling.ca_file"] if url.startswith("wss://") else ""
        return WebSocketChannel(url, room, secret, ca_file=ca_file or None)

    def start_call(self, channel: Any, peer: str) -> asyncio.Task[Any]:
        """Dial over any SignalingChannel (also the entry point for tests and the self-test)."""
        self.chat.add_note(f"Calling {peer}…")
        return self.adapter.call(channel, peer)

    def wait_for_call(self, channel: Any, peer: str) -> asyncio.Task[Any]:
        self.chat.add_note(f"Waiting for a call ({peer})…")
        return self.adapter.listen(channel, peer)

    def call_room(self) -> None:
        try:
            channel = self._websocket_channel()
        except (PeerCallError, SignalingError, ImportError) as exc:
            self.show_error(f"Call: {user_message(exc)}")
            return
        self.start_call(channel, f"room {self.room.text().strip()}")

    def wait_in_room(self) -> None:
        try:
            channel = self._websocket_channel()
        except (PeerCallError, SignalingError, ImportError) as exc:
            self.show_error(f"Waiting for a call: {user_message(exc)}")
            return
        self.wait_for_call(channel, f"room {self.room.text().strip()}")

    def manual_offer(self) -> None:
        self.start_call(self.manual.channel(self.show_error), "copy-paste peer")

    def manual_answer(self) -> None:
        self.wait_for_call(self.manual.channel(self.show_error), "copy-paste peer")

    def hangup(self) -> None:
        self._stop_ringing()
        self.adapter.hangup()

    def _accept(self) -> None:
        self._stop_ringing()
        self.adapter.accept()

    def _decline(self) -> None:
        self._stop_ringing()
        self.adapter.decline()

    def _stop_ringing(self) -> None:
        self.incoming.hide()
        self.adapter.run(self.ringer.stop(), "Ring")

    def _on_mute(self, muted: bool) -> None:
        self.adapter.set_muted(muted)
        self.mute_button.setText("Unmute" if muted else "Mute")

    def _on_always_relay(self, on: bool) -> None:
        self.settings.set("relay_only", on)
        self._save_settings()
        if on and not any(
            u.startswith(("turn:", "turns:"))
            for s in self.settings["ice_servers"]
            for u in s["urls"]
        ):
            self.statusBar().showMessage(
                "Always relay needs a turn: server in Settings → ICE servers", 8000
            )

    def _save_settings(self) -> None:
        try:
            self.settings.save()
        except OSError as exc:
            self.show_error(f"Settings: cannot save: {user_message(exc)}")

    # --- engine signals -----------------------------------------------------------------

    def _on_session_started(self, session: object) -> None:
        self.sas.clear_sas()
        self.quality.reset()
        self.quality_label.setText("")
        self.timer.reset()
        if self.debug_panel is not None:
            self.debug_panel.reset()

    def _on_state(self, change: ev.StateChanged) -> None:
        self.badge.set_state(change.new)
        if change.new is ev.CallState.CONNECTED:
            self.timer.start()
            self.chat.set_enabled(True)
            self.chat.add_note("Connected")
        elif change.new in (ev.CallState.ENDED, ev.CallState.FAILED):
            self.timer.stop()
            self.chat.set_enabled(False)
            self._stop_ringing()

    def _on_stats(self, sample: ev.StatsSample) -> None:
        self.quality.set_sample(sample.rtt_ms, sample.fraction_lost)
        self.quality_label.setText(self.quality.quality.text)

    def _on_incoming(self, peer: str) -> None:
        self.incoming_label.setText(f"Incoming call from {peer}")
        self.incoming.show()
        self.adapter.run(self.ringer.start(), "Ring")
        if self.tray is not None and not self.isActiveWindow():
            self.tray.showMessage(
                "PeerCall", f"Incoming call from {peer}", QSystemTrayIcon.MessageIcon.Information
            )
        QApplication.alert(self)

    def _on_call_ended(self, record: CallRecord) -> None:
        self._stop_ringing()
        if self.lan.host is not None and not self._shutting_down:
            if record.outcome == "failed" and not self.adapter.last_recorded:
                # Our own room broke while we waited: stop advertising a dead end.
                self.adapter.run(self.lan.stop_hosting(), "Stop being reachable")
            else:  # still reachable: wait for the next call once this one is closed
                QTimer.singleShot(300, self._listen_on_lan)
        if not self.adapter.last_recorded:  # a wait that ended before anyone called
            self.chat.add_note("Stopped waiting")
            return
        self.history_view.prepend(record)
        route = {"relay": " via relay", "direct": " direct", "none": ""}[record.route]
        self.chat.add_note(f"Call {record.outcome}{route}, {format_duration(record.duration)}")

    def _set_in_call(self, busy: bool) -> None:
        for widget in (
            self.call_button,
            self.wait_button,
            self.manual.offer_button,
            self.manual.answer_button,
            self.backend,
        ):
            widget.setEnabled(not busy)
        self.lan.set_busy(busy)
        for widget in (self.hangup_button, self.mute_button):
            widget.setEnabled(busy)
        if not busy:
            self.mute_button.setChecked(False)

    # --- errors -------------------------------------------------------------------------

    def show_error(self, message: str) -> None:
        """One line in the status bar and a non-blocking dialog; never a traceback."""
        line = message.splitlines()[0] if message else "unknown error"
        logger.warning("%s", line)
        self.errors.append(line)
        self.statusBar().showMessage(line, 15000)
        box = QMessageBox(
            QMessageBox.Icon.Warning, "PeerCall", line, QMessageBox.StandardButton.Ok, self
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(
            lambda _=0, b=box: self.error_boxes.remove(b) if b in self.error_boxes else None
        )
        self.error_boxes.append(box)
        box.open()

    # --- other windows ------------------------------------------------------------------

    def open_debug_panel(self) -> Any:
        if self.debug_panel is None:
            from app.ui.debugpanel import DebugPanel

            self.debug_panel = DebugPanel(self.adapter.export)
            self.debug_panel.resize(1200, 760)
            self.adapter.engineEvent.connect(self.debug_panel.handle)
            if self.adapter.session is not None:
                for event in list(self.adapter.session.events):
                    self.debug_panel.handle(event)
        self.debug_panel.show()
        self.debug_panel.raise_()
        return self.debug_panel

    def open_settings(self) -> Any:
        if self.settings_dialog is None:
            from app.ui.settingsdialog import SettingsDialog

            self.settings_dialog = SettingsDialog(
                self.settings, self.relay_host, self.signaling_host, self.adapter.run, self
            )
            self.settings_dialog.saved.connect(self._on_settings_saved)
        self.settings_dialog.load()
        self.settings_dialog.show()
        self.settings_dialog.raise_()
        return self.settings_dialog

    def _on_settings_saved(self) -> None:
        self.ringer.device = self.settings["audio.output"] or None
        self.always_relay.setChecked(bool(self.settings["relay_only"]))
        backend = self.settings["signaling.backend"]
        self.backend.setCurrentIndex(BACKEND_PAGES.index(backend))
        self.server_url.setText(self.settings["signaling.url"])
        self.room.setText(self.settings["signaling.room"])
        self.secret.setText(self.settings["signaling.secret"])

    # --- exit ---------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Hang up, stop hosted servers; then the window really closes."""
        if self._shutdown_done:
            return
        self._shutting_down = True
        try:
            await self.adapter.shutdown()
            await self.ringer.stop()
            await self.lan.shutdown()
            await self.relay_host.stop()
            await self.signaling_host.stop()
            await hostcall.shutdown(self)  # remove the router's forwardings (issue 13)
            await self._release_echo_cancel()
        finally:
            self._shutdown_done = True
            if self.tray is not None:
                self.tray.hide()
            for window in (self.debug_panel, self.settings_dialog):
                if window is not None:
                    window.close()
            self.close()
            self.closed.emit()

    async def _release_echo_cancel(self) -> None:
        """Unload PulseAudio's echo canceller if a call or the settings loaded it: it must not
        outlive PeerCall in the user's sound server (a no-op when we did not load it)."""
        from app.audio_processing import disable_system_echo_cancel

        try:
            await asyncio.to_thread(disable_system_echo_cancel)
        except PeerCallError as exc:
            logger.warning("%s", exc)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._shutdown_done:
            event.accept()
            return
        event.ignore()
        if not self._shutting_down:
            self._shutting_down = True
            task = asyncio.ensure_future(self.shutdown())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            QTimer.singleShot(0, lambda: None)  # wake the loop so the task starts promptly
