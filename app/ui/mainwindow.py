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

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
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
    QMenu,
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
from app.settings import Settings, remember_room
from app.ui import callsetup, hostcall, memory, theme
from app.ui.adapter import CallAdapter
from app.ui.hosting import RelayHost, SignalingHost
from app.ui.lanpage import LanPage
from app.ui.presenters import BACKEND_LABELS, end_news, format_duration, user_message
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
SHUTDOWN_LIMIT = 8.0  # seconds a hang-up may take when the window closes


def _button_style(color: str, padding: str) -> str:
    """A coloured button that still looks disabled when it is (issue 12.9: a red Hang up
    with no call read as clickable)."""
    return (
        f"QPushButton {{ background: {color}; color: white; padding: {padding};"
        " border-radius: 3px; }"
        " QPushButton:disabled { background: #d1d5db; color: #6b7280; }"
    )


def _name(widget: QWidget, object_name: str, accessible: str) -> None:
    """Give a control the names tests and screen readers find it by."""
    widget.setObjectName(object_name)
    widget.setAccessibleName(accessible)


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
    _repainting = False  # inside changeEvent: restyling children must not recurse

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
        video: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.history = history
        self.loopback = loopback
        self._lan_interfaces = lan_interfaces
        self._lan_listen = lan_listen
        self._media_factory = media
        self._video = video  # negotiate video (camera or test pattern) in every call
        self._tap: Any = None  # the self-view tap on what we send
        self._frame_counts: dict[str, tuple[int, float]] = {}
        self._remote_sink: Any = None  # keeps the other side's newest frame
        self._audio_level: callsetup.LevelSink | None = None  # peak of the remote audio
        self._shutting_down = False
        self._shutdown_done = False
        self.error_boxes: list[QMessageBox] = []  # stays empty: errors are shown inline
        self.errors: list[str] = []
        self._call_error: str | None = None  # the failure to name when the call ends
        self._peer_label = "the other person"
        self._channel: Any = None  # the current call's NamedChannel
        self._ended_outcome: str | None = None  # how the last call ended
        self._leave_confirmed = False
        self.leave_box: QMessageBox | None = None
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
        geometry = settings["ui.geometry"]
        if geometry:
            from PySide6.QtCore import QByteArray

            self.restoreGeometry(QByteArray.fromBase64(geometry.encode("ascii")))
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
        self.hosting = QPushButton("")
        _name(self.hosting, "hostingIndicator", "Hosting status")
        self.hosting.setFlat(True)
        self.hosting.setToolTip("What this PeerCall hosts for others; click for the settings")
        theme.paint(self.hosting, "accent", "QPushButton {{ {}; font-weight: bold; }}")
        self.hosting.hide()
        self._hosting_timer = QTimer(self)
        self._hosting_timer.setInterval(2000)  # rooms come and go without a signal
        self._hosting_timer.timeout.connect(self._show_hosting)
        bar.addWidget(self.hosting)
        bar.addWidget(self.timer)
        self._top_bar = bar

        self.news = QLabel("")
        _name(self.news, "callNews", "Call status")
        self.news.setWordWrap(True)
        self.news.setTextFormat(Qt.TextFormat.PlainText)  # names and errors come from outside
        self.news.hide()

        self.incoming = QFrame()
        self.incoming.setObjectName("incomingBar")
        self.incoming.setStyleSheet(
            "#incomingBar { background: #fefcbf; border: 1px solid #d69e2e; border-radius: 6px; }"
            " #incomingBar QLabel { color: #1a202c; }"  # readable in dark mode too
        )
        self.incoming_label = QLabel("Incoming call")
        self.incoming_label.setObjectName("incomingLabel")
        # The peer chooses its name: never let it render as rich text.
        self.incoming_label.setTextFormat(Qt.TextFormat.PlainText)
        self.accept_button = QPushButton("Accept")
        _name(self.accept_button, "acceptButton", "Accept call")
        self.accept_button.setStyleSheet(_button_style("#2f855a", "4px 14px"))
        self.decline_button = QPushButton("Decline")
        _name(self.decline_button, "declineButton", "Decline call")
        self.decline_button.setStyleSheet(_button_style("#c53030", "4px 14px"))
        row = QHBoxLayout(self.incoming)
        row.addWidget(self.incoming_label, 1)
        row.addWidget(self.accept_button)
        row.addWidget(self.decline_button)
        self.incoming.hide()

    def _build_body(self) -> None:
        # Left: how to reach the peer.
        self.backend = QComboBox()
        _name(self.backend, "backendChoice", "How to reach the other person")
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
        self.recent = QComboBox()
        _name(self.recent, "recentRooms", "Recent rooms")
        self.recent.setToolTip("Rooms you joined lately: pick one to fill server and room")
        _name(self.server_url, "serverUrl", "Signaling server")
        _name(self.room, "room", "Room")
        _name(self.secret, "secret", "Room secret")
        _name(self.call_button, "callButton", "Call")
        _name(self.wait_button, "waitButton", "Wait for a call")
        self._fill_recent()
        form.addRow("Recent", self.recent)
        form.addRow("Server", self.server_url)
        form.addRow("Room", self.room)
        form.addRow("Secret", self.secret)
        # Someone without PeerCall joins the room from a browser (the server serves the page).
        self.copy_link_button = QPushButton("Copy call link")
        self.copy_link_button.setObjectName("copyCallLink")
        self.copy_link_button.setToolTip(
            "Copy the link that joins this room from a web browser, to send to someone"
            " who does not have PeerCall"
        )
        buttons = QHBoxLayout()
        buttons.addWidget(self.call_button)
        buttons.addWidget(self.wait_button)
        buttons.addWidget(self.copy_link_button)
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
        self.start_panel = start
        start_layout = QVBoxLayout(start)
        start_layout.addWidget(self.backend)
        start_layout.addWidget(self.pages)
        start_layout.addStretch(1)
        self.always_relay = QCheckBox("Always relay")
        _name(self.always_relay, "alwaysRelay", "Always relay")
        self.always_relay.setToolTip(
            "Send media only through a TURN relay, so the other person never learns your"
            " address (needs a turn: server in Settings)"
        )
        self.always_relay.setChecked(bool(self.settings["relay_only"]))
        start_layout.addWidget(self.always_relay)

        # Centre: video and controls.
        self.remote_video = VideoView("The other person's video appears here")
        # 320×240 still holds the 176-px self-view; wider kept the whole window from fitting
        # half of a 1920-px screen (its minimum was 963 px; issue 12.10).
        self.remote_video.setMinimumSize(320, 240)
        self.local_video = VideoView("Camera off")
        self.local_video.setFixedSize(176, 132)
        self.remote_video.set_overlay(self.local_video)
        self.hangup_button = QPushButton("Hang up")
        _name(self.hangup_button, "hangupButton", "Hang up")
        self.hangup_button.setStyleSheet(_button_style("#c53030", "6px 16px"))
        self.mute_button = QPushButton("Mute")
        _name(self.mute_button, "muteButton", "Mute microphone")
        self.mute_button.setCheckable(True)
        self.camera_button = QPushButton("Camera")
        _name(self.camera_button, "cameraButton", "Send camera video")
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
        layout.addWidget(self.news)
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

        # The call controls as menu entries with the shortcuts Jitsi users know (M, V), shown
        # in the menu and in each button's tooltip (issue 12.13). Single letters do not fire
        # while a text field has focus: typing "m" in the chat stays typing.
        call_menu = self.menuBar().addMenu("&Call")
        self.call_actions: dict[str, QAction] = {}
        for key, text, shortcut, button in (
            ("mute", "&Mute microphone", "M", self.mute_button),
            ("camera", "&Camera on/off", "V", self.camera_button),
            ("hangup", "&Hang up", "Ctrl+E", self.hangup_button),
            ("accept", "&Accept incoming call", "Ctrl+Shift+A", self.accept_button),
            ("decline", "&Decline incoming call", "Ctrl+Shift+D", self.decline_button),
        ):
            action = QAction(text, self)
            action.setShortcut(QKeySequence(shortcut))
            action.setObjectName(f"{key}Action")
            action.triggered.connect(lambda _=False, b=button: b.isEnabled() and b.click())
            shown = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            tip = button.toolTip() or button.text()
            button.setToolTip(f"{tip} ({shown})")
            call_menu.addAction(action)
            self.call_actions[key] = action
            self.addAction(action)  # the shortcut works with the menu closed

        help_menu = self.menuBar().addMenu("&Help")
        self.about_action = QAction("&About PeerCall", self)
        self.about_action.setObjectName("aboutAction")
        self.about_action.triggered.connect(self.show_about)
        help_menu.addAction(self.about_action)
        self.about_box: QMessageBox | None = None

    def about_text(self) -> str:
        """Version and the README sections a new user needs (a local README when there is
        one, the project page otherwise)."""
        from importlib import metadata
        from pathlib import Path

        try:
            version = metadata.version("peercall")
        except metadata.PackageNotFoundError:
            version = "unknown"
        readme = Path(__file__).resolve().parents[2] / "README.md"
        base = readme.as_uri() if readme.exists() else "https://github.com/peercall/peercall"
        links = (
            ("A first call", "a-first-call"),
            ("Hosting a relay for friends behind NAT", "hosting-a-relay-for-friends-behind-nat"),
            ("Troubleshooting with the debug panel", "troubleshooting-with-the-debug-panel"),
            ("The window", "the-window"),
        )
        items = "".join(f"<li><a href='{base}#{anchor}'>{t}</a></li>" for t, anchor in links)
        return (
            f"<b>PeerCall {version}</b><br>Peer-to-peer audio/video calls: your own signaling,"
            f" relay and media, no account.<br>Read in the README:<ul>{items}</ul>"
            "Shortcuts: M mute, V camera, Ctrl+E hang up, Ctrl+Shift+A accept,"
            " Ctrl+Shift+D decline, Ctrl+D debug panel."
        )

    def show_about(self) -> None:
        box = QMessageBox(self)
        box.setObjectName("aboutBox")
        box.setWindowTitle("About PeerCall")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(self.about_text())
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _=0: setattr(self, "about_box", None))
        self.about_box = box
        box.open()

    def _build_tray(self) -> None:
        self.tray: QSystemTrayIcon | None = None
        if not QSystemTrayIcon.isSystemTrayAvailable():
            logger.info("system tray unavailable: incoming calls ring in the window only")
            return
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MediaVolume)
        self.tray = QSystemTrayIcon(QIcon(icon), self)
        self.tray.setToolTip("PeerCall")
        self.tray.activated.connect(self._show_from_tray)
        menu = QMenu(self)
        menu.addAction("Show PeerCall", self._show_from_tray)
        menu.addAction(self.call_actions["mute"])
        menu.addAction(self.call_actions["hangup"])
        menu.addSeparator()
        menu.addAction(self.quit_action)
        self.tray.setContextMenu(menu)
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
        a.chatReceived.connect(
            lambda text: self.chat.add_message(self._learn_peer_name(), text, mine=False)
        )
        a.chatSent.connect(lambda text: self.chat.add_message(self.display_name(), text, mine=True))
        a.incomingCall.connect(self._on_incoming)
        a.callEnded.connect(self._on_call_ended)
        a.errorRaised.connect(self.show_error)
        a.busyChanged.connect(self._set_in_call)
        a.sessionStarted.connect(self._on_session_started)
        self.relay_host.errorRaised.connect(self.show_error)
        self.relay_host.statusChanged.connect(lambda _: self._show_hosting())
        self.relay_host.runningChanged.connect(lambda _: self._show_hosting())
        self.signaling_host.runningChanged.connect(lambda _: self._show_hosting())
        self.hosting.clicked.connect(self._open_hosting_settings)
        self.signaling_host.errorRaised.connect(self.show_error)
        self.chat.sendRequested.connect(a.send_chat)
        self.history_view.callBackRequested.connect(self.call_back)
        self.history_view.deleteRequested.connect(self._delete_history_row)
        self.history_view.clearRequested.connect(self._clear_history)
        self.backend.currentIndexChanged.connect(self._on_backend)
        self.lan.callRequested.connect(lambda request: self.start_call(*request))
        self.lan.errorRaised.connect(self.show_error)
        self.lan.reachableChanged.connect(self._on_lan_reachable)
        self.call_button.clicked.connect(self.call_room)
        self.recent.activated.connect(self._pick_recent)
        self.wait_button.clicked.connect(self.wait_in_room)
        self.copy_link_button.clicked.connect(self.copy_call_link)
        self.manual.offer_button.clicked.connect(self.manual_offer)
        self.manual.answer_button.clicked.connect(self.manual_answer)
        self.hangup_button.clicked.connect(self.hangup)
        self.mute_button.toggled.connect(self._on_mute)
        self.camera_button.toggled.connect(self._on_camera)
        self.accept_button.clicked.connect(self._accept)
        self.decline_button.clicked.connect(self._decline)
        self.always_relay.toggled.connect(self._on_always_relay)

    def _show_hosting(self) -> None:
        """The indicator: what we host, with its allocations / rooms and clients (issue 12.2)."""
        parts = []
        if self.relay_host.running:
            count = self.relay_host.status().allocations
            parts.append(f"relay: {count} allocation{'s' * (count != 1)}")
        server = self.signaling_host.server
        if server is not None:
            rooms, clients = server.room_count(), server.stats.connections
            parts.append(
                f"signaling: {rooms} room{'s' * (rooms != 1)} in use,"
                f" {clients} client{'s' * (clients != 1)}"
            )
        self.hosting.setText("Hosting " + " · ".join(parts) if parts else "")
        self.hosting.setVisible(bool(parts))
        if server is not None and not self._hosting_timer.isActive():
            self._hosting_timer.start()
        elif server is None:
            self._hosting_timer.stop()

    def _open_hosting_settings(self) -> None:
        dialog = self.open_settings()
        dialog.tabs.setCurrentWidget(dialog.relay if self.relay_host.running else dialog.signaling)

    def display_name(self) -> str:
        """How peers see us: the configured display name, else this machine's host name."""
        name: str = self.settings["display_name"]
        return name.strip() or socket.gethostname().split(".")[0] or "PeerCall"

    def _fill_recent(self) -> None:
        self.recent.blockSignals(True)
        self.recent.clear()
        self.recent.addItem("—", None)
        for url, room in self.settings["signaling.recent"]:
            self.recent.addItem(f"{room} — {url}", [url, room])
        self.recent.setEnabled(self.recent.count() > 1)
        self.recent.blockSignals(False)

    def _pick_recent(self, index: int) -> None:
        entry = self.recent.itemData(index)
        if entry:
            self.server_url.setText(entry[0])
            self.room.setText(entry[1])

    def _remember_room(self) -> None:
        """Keep what the user typed for the next start and in the recent list (issue 12.5)."""
        url, room = self.server_url.text().strip(), self.room.text().strip()
        try:
            self.settings.update(
                {
                    "signaling.url": url,
                    "signaling.room": room,
                    "signaling.secret": self.secret.text(),
                    "signaling.backend": "websocket",
                    "signaling.recent": remember_room(self.settings["signaling.recent"], url, room),
                }
            )
        except ConfigError as exc:  # cannot happen after _websocket_channel's checks
            logger.warning("not remembering the room: %s", exc)
            return
        self._save_settings()
        self._fill_recent()

    def _on_backend(self, index: int) -> None:
        self.pages.setCurrentIndex(index)
        if self.settings["signaling.backend"] != BACKEND_PAGES[index]:
            self.settings.set("signaling.backend", BACKEND_PAGES[index])
            self._save_settings()
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
        import importlib.util

        # Only ask whether PyAV is there: importing it (and aiortc) costs start-up time.
        if not self._video or importlib.util.find_spec("av") is None:
            self._video = False
            self.camera_button.setToolTip("Video is not available in this build")
        else:
            self.camera_button.setToolTip("Send my camera video; without a camera, a test pattern")
        self.camera_button.setEnabled(False)

    # --- calls --------------------------------------------------------------------------

    def _new_session(self) -> Any:
        media = self._media_factory() if self._media_factory else self._device_media()
        self._tap = self._remote_sink = None
        self._audio_level = None
        if media.audio_sink is not None:
            media.audio_sink = self._audio_level = callsetup.LevelSink(media.audio_sink)
        if self._video:
            try:
                media, self._tap, self._remote_sink = callsetup.with_video(
                    media, self.settings["video.camera"]
                )
            except (PeerCallError, ImportError, OSError) as exc:
                self.show_error(f"Video: {user_message(exc)}; calling with audio only")
        options = callsetup.call_options(
            self.settings, loopback=self.loopback, video=self._tap is not None
        )
        session = callsetup.new_session(options, media)
        # The camera starts as the settings say ("Send video when a call starts"); a previous
        # call's button state does not carry over (issue 12.9).
        camera = bool(self.settings["video.enabled"]) and self._tap is not None
        session.set_video_enabled(camera)
        self.camera_button.blockSignals(True)
        self.camera_button.setChecked(camera)
        self.camera_button.blockSignals(False)
        self.camera_button.setEnabled(self._tap is not None)
        return session

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
        self._new_call_view(f"Calling {peer}…", "calling", peer)
        self._channel = callsetup.NamedChannel(channel, self.display_name())
        return self.adapter.call(self._channel, peer)

    def wait_for_call(self, channel: Any, peer: str) -> asyncio.Task[Any]:
        self._new_call_view(f"Waiting for a call ({peer})…", "waiting", peer)
        self._channel = callsetup.NamedChannel(channel, self.display_name())
        return self.adapter.listen(self._channel, peer)

    def call_back(self, record: CallRecord) -> None:
        """History → call back: the room this person was reached in (issue 12.8)."""
        if self.adapter.in_call:
            self.show_error("Call back: hang up first")
            return
        where = self.settings["signaling.contacts"].get(record.peer)
        if where is None and record.peer.startswith("room "):
            where = [self.server_url.text().strip(), record.peer.removeprefix("room ")]
        if where is None:
            self.show_error(
                f"Call back: {record.peer} was not reached through a server room;"
                " call them the way you did last time"
            )
            return
        self.backend.setCurrentIndex(BACKEND_PAGES.index("websocket"))
        self.server_url.setText(where[0])
        self.room.setText(where[1])
        self.call_room()

    def _remember_contact(self) -> None:
        channel = self._channel
        name = channel.peer_name if channel is not None else None
        inner = getattr(channel, "inner", None)
        url, room = getattr(inner, "url", None), getattr(inner, "room", None)
        if not (name and isinstance(url, str) and isinstance(room, str)):
            return
        contacts = self.settings["signaling.contacts"]
        if contacts.get(name) != [url, room]:
            contacts[name] = [url, room]
            self.settings.set("signaling.contacts", contacts)
            self._save_settings()

    def _delete_history_row(self, row: int) -> None:
        records = self.history.records
        index = len(records) - 1 - row  # the view shows the newest first
        if 0 <= index < len(records):
            del records[index]
            self.history_view.remove(row)
            self._save_history()

    def _clear_history(self) -> None:
        self.history.records.clear()
        self.history_view.set_records([])
        self._save_history()

    def _save_history(self) -> None:
        try:
            self.history.save()
        except OSError as exc:
            self.show_error(f"History: cannot save: {user_message(exc)}")

    def _learn_peer_name(self) -> str:
        """The peer's display name once their offer/answer or presence said it."""
        channel = self._channel
        name = channel.peer_name if channel is not None else None
        if name and name != self._peer_label:
            self._peer_label = name
            self.adapter.rename_peer(name)
            self.remote_video.off_text = f"{name}: camera off"
        return self._peer_label

    def _new_call_view(self, news: str, phase: str, peer: str) -> None:
        """Nothing of the previous call stays up when a new one starts (issue 12.9)."""
        self._call_error = None
        self._ended_outcome = None
        self._peer_label = peer
        self.chat.clear()
        self.chat.add_note(news)
        self.set_news(news)
        self.badge.set_phase(phase)
        self._clear_call_figures()

    def _clear_call_figures(self) -> None:
        self.sas.clear_sas()
        self.quality.reset()
        self.quality_label.setText("")
        self.timer.reset()

    def set_news(self, text: str, tone: str = "info") -> None:
        """Call-state news inline in the window, instead of a dialog (issue 12.6)."""
        colors = {"info": "#1e3a5f", "ok": "#22543d", "error": "#9b2c2c"}
        backgrounds = {"info": "#ebf4ff", "ok": "#f0fff4", "error": "#fff5f5"}
        self.news.setStyleSheet(
            f"QLabel {{ color: {colors[tone]}; background: {backgrounds[tone]};"
            " border-radius: 4px; padding: 4px 8px; }"
        )
        self.news.setText(text)
        self.news.setProperty("tone", tone)
        self.news.setVisible(bool(text))
        if self.tray is not None:
            self.tray.setToolTip(f"PeerCall — {text}" if text else "PeerCall")

    def call_room(self) -> None:
        try:
            channel = self._websocket_channel()
        except (PeerCallError, SignalingError, ImportError) as exc:
            self.show_error(f"Call: {user_message(exc)}")
            return
        self._remember_room()
        self.start_call(channel, f"room {self.room.text().strip()}")

    def wait_in_room(self) -> None:
        try:
            channel = self._websocket_channel()
        except (PeerCallError, SignalingError, ImportError) as exc:
            self.show_error(f"Waiting for a call: {user_message(exc)}")
            return
        self._remember_room()
        self.wait_for_call(channel, f"room {self.room.text().strip()}")

    def copy_call_link(self) -> None:
        """Put the browser link for this room on the clipboard (signaling.web.call_link)."""
        from signaling.web import call_link

        try:
            link = call_link(self.server_url.text(), self.room.text().strip(), self.secret.text())
        except SignalingError as exc:
            self.show_error(f"Copy call link: {user_message(exc)}")
            return
        QGuiApplication.clipboard().setText(link)
        self.statusBar().showMessage("Call link copied: send it, then Wait for a call", 15000)

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

    def _on_camera(self, on: bool) -> None:
        """Camera on/off mid-call: the peer gets black frames while off (its badge shows)."""
        self.adapter.set_video_enabled(on)
        self._show_self_view(on)

    def _show_self_view(self, on: bool) -> None:
        tap = self._tap
        if on and tap is not None:
            self.local_video.set_source(tap.latest_rgb)
        else:
            self.local_video.clear()

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
        sink = self._remote_sink
        self.remote_video.clear()
        self.remote_video.off_text = f"{self._peer_label}: camera off"
        self.remote_video.set_source(sink.latest_rgb if sink is not None else None)
        self._show_self_view(self.camera_button.isChecked())
        self.sas.clear_sas()
        self.quality.reset()
        self.quality_label.setText("")
        self.timer.reset()
        if self.debug_panel is not None:
            self.debug_panel.reset()

    def _on_state(self, change: ev.StateChanged) -> None:
        early = (
            ev.CallState.IDLE,
            ev.CallState.GATHERING,
            ev.CallState.OFFERING,
            ev.CallState.RINGING,
        )
        if not (change.new in early and self.badge.badge.key in ("waiting", "calling", "ringing")):
            self.badge.set_state(change.new)  # else keep saying we wait / call / ring
        if change.new is ev.CallState.CONNECTING:
            self.set_news("Connecting…")
        elif change.new.value == "reconnecting":  # the call core's RECONNECTING state
            self.set_news("Reconnecting…")
        if change.new is ev.CallState.CONNECTED:
            self.timer.start()
            self.chat.set_enabled(True)
            self.chat.add_note("Connected")
            self.set_news(f"In a call with {self._learn_peer_name()}", "ok")
            self._remember_contact()
            self.start_panel.hide()  # the call gets the room (issue 12.10)
        elif change.new in (ev.CallState.ENDED, ev.CallState.FAILED):
            self.timer.stop()
            self.chat.set_enabled(False)
            self._stop_ringing()

    def _on_stats(self, sample: ev.StatsSample) -> None:
        self.quality.set_sample(sample.rtt_ms, sample.fraction_lost)
        self.quality_label.setText(self.quality.quality.text)

    def _on_incoming(self, peer: str) -> None:
        self._peer_label = peer
        peer = self._learn_peer_name()
        self.incoming_label.setText(f"Incoming call from {peer}")
        self.badge.set_phase("ringing")
        self.set_news(f"Incoming call from {peer}")
        self.incoming.show()
        self.adapter.run(self.ringer.start(), "Ring")
        if self.tray is not None and not self.isActiveWindow():
            self.tray.showMessage(
                "PeerCall", f"Incoming call from {peer}", QSystemTrayIcon.MessageIcon.Information
            )
        QApplication.alert(self)

    def _on_call_ended(self, record: CallRecord) -> None:
        self._stop_ringing()
        # Once the peer connection has closed and been collected: return what it freed.
        QTimer.singleShot(1000, memory.release_free_memory)
        if self.lan.host is not None and not self._shutting_down:
            if record.outcome == "failed" and not self.adapter.last_recorded:
                # Our own room broke while we waited: stop advertising a dead end.
                self.adapter.run(self.lan.stop_hosting(), "Stop being reachable")
            else:  # still reachable: wait for the next call once this one is closed
                QTimer.singleShot(300, self._listen_on_lan)
        self._clear_call_figures()
        self.remote_video.clear()
        self.local_video.clear()
        self.camera_button.blockSignals(True)
        self.camera_button.setChecked(False)
        self.camera_button.blockSignals(False)
        self.camera_button.setEnabled(False)
        self.badge.set_phase(None)
        self.badge.set_state(None)
        self.start_panel.show()
        if not self.adapter.last_recorded:  # a wait that ended before anyone called
            self.chat.add_note("Stopped waiting")
            if self._call_error is None:
                self.set_news("")
            return
        self._ended_outcome = record.outcome
        self.history_view.prepend(record)
        route = {"relay": " via relay", "direct": " direct", "none": ""}[record.route]
        self.chat.add_note(f"Call {record.outcome}{route}, {format_duration(record.duration)}")
        servers = self.settings["ice_servers"]
        has_turn = any(u.startswith(("turn:", "turns:")) for s in servers for u in s["urls"])
        text = end_news(
            record.outcome, format_duration(record.duration), self._call_error, has_turn
        )
        self.set_news(text, "error" if record.outcome == "failed" else "info")

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
        """One line inline and in the status bar; never a modal box, never a traceback.

        Dialogs are kept for decisions (leaving a call); news is not a decision (issue 12.6).
        """
        line = message.splitlines()[0] if message else "unknown error"
        outcome = None if self.adapter.in_call else self._ended_outcome
        # The flow's own echo of an end already shown ("Call ended — declined", or "Failed:"
        # with this very reason; it may come before or after the end): one event, one line
        # (issue 12.6). A failure whose reason the end line lacked is still shown.
        failure = self._call_error
        echo = outcome not in (None, "failed") or (
            outcome == "failed" and failure is not None and failure in line
        )
        if echo and "call ended:" in line:
            logger.info("%s", line)
            return
        logger.warning("%s", line)
        self.errors.append(line)
        if self.adapter.in_call:
            self._call_error = line
        self.statusBar().showMessage(line, 15000)
        self.set_news(line, "error")

    # --- other windows ------------------------------------------------------------------

    def open_debug_panel(self) -> Any:
        if self.debug_panel is None:
            from app.ui.debugpanel import DebugPanel

            self.debug_panel = DebugPanel(
                self.adapter.export,
                servers=lambda: list(callsetup.ice_servers(self.settings)),
                run=self.adapter.run,
                streams=self._stream_figures,
                pairs=lambda: self.adapter.session.pairs if self.adapter.session else (),
            )
            self.debug_panel.resize(1200, 760)
            self._place_on_screen(self.debug_panel)
            self.adapter.engineEvent.connect(self.debug_panel.handle)
            if self.adapter.session is not None:
                for event in list(self.adapter.session.events):
                    self.debug_panel.handle(event)
        self.debug_panel.show()
        self.debug_panel.raise_()
        return self.debug_panel

    def _stream_figures(self) -> dict[str, Any]:
        """Video frames, size and rate in each direction, for the debug panel's Streams tab."""
        figures: dict[str, Any] = {"muted": self.mute_button.isChecked()}
        if self._audio_level is not None:
            figures["audio_level"] = self._audio_level.read()
        now = time.monotonic()
        for key, source in (("video_in", self._remote_sink), ("video_out", self._tap)):
            if source is None:
                continue
            frames = int(source.frames)
            size = source.size
            last = self._frame_counts.get(key)
            rate = None
            if last is not None and now > last[1]:
                rate = round((frames - last[0]) / (now - last[1]))
            self._frame_counts[key] = (frames, now)
            figures[key] = (frames, size, rate)
        return figures

    def _place_on_screen(self, window: QWidget) -> None:
        """Next to this window, shrunk and moved to fit the screen it is on (issue 12.10)."""
        area = (self.screen() or QGuiApplication.primaryScreen()).availableGeometry()
        width = min(window.width(), area.width())
        height = min(window.height(), area.height())
        window.resize(width, height)
        x = min(max(self.x() + 40, area.left()), area.right() - width + 1)
        y = min(max(self.y() + 40, area.top()), area.bottom() - height + 1)
        window.move(x, y)

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
        changed = self.settings_dialog.changed_keys if self.settings_dialog is not None else set()
        self.ringer.device = self.settings["audio.output"] or None
        self.always_relay.setChecked(bool(self.settings["relay_only"]))
        # Only fields the dialog changed: a Save elsewhere must not wipe what the user typed
        # in the window (issue 12.5).
        if "signaling.backend" in changed:
            self.backend.setCurrentIndex(BACKEND_PAGES.index(self.settings["signaling.backend"]))
        for key, edit in (
            ("signaling.url", self.server_url),
            ("signaling.room", self.room),
            ("signaling.secret", self.secret),
        ):
            if key in changed:
                edit.setText(self.settings[key])

    # --- exit ---------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Hang up, stop hosted servers; then the window really closes."""
        if self._shutdown_done:
            return
        self._shutting_down = True
        if self.settings_dialog is not None:
            self.settings_dialog.restore_hosting_on_cancel = False
        self._remember_geometry()
        try:
            try:
                # The window must close even if a session's teardown never finishes.
                await asyncio.wait_for(self.adapter.shutdown(), SHUTDOWN_LIMIT)
            except TimeoutError:
                logger.warning("hanging up took over %.0f s; quitting anyway", SHUTDOWN_LIMIT)
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

    def _remember_geometry(self) -> None:
        """Window size and place come back at the next start (issue 12.10)."""
        value = bytes(self.saveGeometry().toBase64().data()).decode("ascii")
        if value != self.settings["ui.geometry"]:
            self.settings.set("ui.geometry", value)
            self._save_settings()

    async def _release_echo_cancel(self) -> None:
        """Unload PulseAudio's echo canceller if a call or the settings loaded it: it must not
        outlive PeerCall in the user's sound server (a no-op when we did not load it)."""
        from app.audio_processing import disable_system_echo_cancel

        try:
            await asyncio.to_thread(disable_system_echo_cancel)
        except PeerCallError as exc:
            logger.warning("%s", exc)

    def _ask_to_leave(self) -> None:
        if self.leave_box is not None:
            self.leave_box.raise_()
            return
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Leave the call?",
            "Closing PeerCall hangs up the call. Leave it?",
            QMessageBox.StandardButton.NoButton,
            self,
        )
        box.setObjectName("leaveCallBox")
        leave = box.addButton("Hang up and quit", QMessageBox.ButtonRole.AcceptRole)
        _name(leave, "leaveCall", "Hang up and quit")
        stay = box.addButton("Stay in the call", QMessageBox.ButtonRole.RejectRole)
        _name(stay, "stayInCall", "Stay in the call")
        box.setDefaultButton(stay)

        def decided(button: Any) -> None:
            self.leave_box = None
            if button is leave:
                self._leave_confirmed = True
                self.close()  # shutdown() hangs up: the peer gets our Bye

        box.buttonClicked.connect(decided)
        box.finished.connect(lambda _=0: setattr(self, "leave_box", None))
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.leave_box = box
        box.open()

    def changeEvent(self, event: QEvent) -> None:
        """The system switched light/dark mode while running: re-colour our own texts."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and not self._repainting:
            self._repainting = True  # restyling children must not recurse into here
            try:
                theme.repaint(self)
                self.sas.restyle()
            finally:
                self._repainting = False

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._shutdown_done:
            event.accept()
            return
        event.ignore()
        talking = self.adapter.in_call and not self.adapter.waiting  # connected, not waiting
        if talking and not self._shutting_down and not self._leave_confirmed:
            self._ask_to_leave()  # a decision: the one kind of dialog we keep (issue 12.7)
            return
        if not self._shutting_down:
            self._shutting_down = True
            task = asyncio.ensure_future(self.shutdown())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            QTimer.singleShot(0, lambda: None)  # wake the loop so the task starts promptly
