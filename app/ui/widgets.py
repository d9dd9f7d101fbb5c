"""Small, thin widgets: badge, quality bars, SAS, video view, chat, level meter, history."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent, QPen, QResizeEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.events import CallState, SelectedPairChanged
from app.history import CallRecord
from app.ui import theme
from app.ui.presenters import (
    Badge,
    Quality,
    badge_for,
    format_duration,
    phase_badge,
    quality_for,
)


class ConnectionBadge(QLabel):
    """Always-visible call path: connecting / direct (host or srflx) / via relay / failed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._state: CallState | None = None
        self._selected: SelectedPairChanged | None = None
        self._phase: str | None = None
        self.badge: Badge = badge_for(None)
        self.setObjectName("connectionBadge")
        self._paint()

    def set_state(self, state: CallState | None) -> None:
        if state in (None, CallState.IDLE, CallState.GATHERING):
            self._selected = None
        self._state = state
        self._phase = None
        self._paint()

    def set_phase(self, phase: str | None) -> None:
        """Waiting / ringing / calling: shown until the engine reports a state."""
        self._phase = phase
        if phase is not None:
            self._selected = None
        self._paint()

    def set_selected(self, selected: SelectedPairChanged) -> None:
        self._selected = selected
        self._paint()

    def _paint(self) -> None:
        if self._phase is not None:
            self.badge = phase_badge(self._phase)
        else:
            self.badge = badge_for(self._state, self._selected)
        self.setText(self.badge.text)
        self.setToolTip(self.badge.tooltip)
        self.setStyleSheet(
            f"QLabel {{ background: {self.badge.color}; color: white; border-radius: 9px;"
            " padding: 3px 10px; font-weight: bold; }"
        )


class QualityIndicator(QWidget):
    """Three bars from RTT and loss, with the figures in the tooltip and label."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.quality: Quality = quality_for(None, None)
        self.setMinimumSize(QSize(28, 20))
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.setToolTip(self.quality.text)

    def sizeHint(self) -> QSize:
        return QSize(28, 20)

    def set_sample(self, rtt_ms: float | None, fraction_lost: float | None) -> None:
        self.quality = quality_for(rtt_ms, fraction_lost)
        self.setToolTip(self.quality.text)
        self.update()

    def reset(self) -> None:
        self.set_sample(None, None)

    def paintEvent(self, event: QPaintEvent) -> None:
        colors = {"good": "#2f855a", "fair": "#b7791f", "poor": "#c53030", "unknown": "#a0aec0"}
        painter = QPainter(self)
        width = self.width() // 3
        for i in range(3):
            height = int(self.height() * (i + 1) / 3)
            on = i < self.quality.bars
            color = QColor(colors[self.quality.level]) if on else theme.ink_color("off")
            painter.fillRect(QRect(i * width + 1, self.height() - height, width - 3, height), color)
        painter.end()


class SasLabel(QLabel):
    """The short authentication string, large, for both people to read aloud."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sas")
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setToolTip(
            "Read these words to each other. If they match, no one is in the middle"
            " (they come from both ends' DTLS fingerprints)."
        )
        self.clear_sas()

    def set_sas(self, sas: str) -> None:
        self.setText(f"Verify: <b style='font-size:15pt'>{html.escape(sas)}</b>")

    def clear_sas(self) -> None:
        self.setText(f"<span style='{theme.style('note')}'>Verify: —</span>")

    def restyle(self) -> None:
        """The palette changed: the grey placeholder gets the new palette's grey."""
        if "Verify: —" in self.text():
            self.clear_sas()


class CallTimer(QLabel):
    """m:ss since the call connected."""

    def __init__(self, clock: Callable[[], float], parent: QWidget | None = None) -> None:
        super().__init__("0:00", parent)
        self._clock = clock
        self._since: float | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self._tick)
        self.setToolTip("Call duration")
        self.setObjectName("callTimer")
        self.setStyleSheet("QLabel { font-weight: bold; font-size: 11pt; }")

    def start(self) -> None:
        self._since = self._clock()
        self._timer.start()
        self._tick()

    def stop(self) -> None:
        self._timer.stop()

    def reset(self) -> None:
        self.stop()
        self._since = None
        self.setText("0:00")

    def _tick(self) -> None:
        if self._since is not None:
            self.setText(format_duration(self._clock() - self._since))


class VideoView(QWidget):
    """Paints the latest frame of a video sink (RGB ``H×W×3`` uint8) scaled to fit."""

    cameraOffChanged = Signal(bool)

    def __init__(self, placeholder: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._placeholder = placeholder
        self._source: Callable[[], Any] | None = None
        self._image: QImage | None = None
        self._overlay: QWidget | None = None
        self._last: Any = None
        self.camera_off = False  # the frames are black: the sender's camera is off
        self.off_text = "Camera off"
        self.frames_painted = 0
        self._timer = QTimer(self)
        self._timer.setInterval(40)  # 25 fps is plenty for a preview
        self._timer.timeout.connect(self._poll)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    def set_source(self, source: Callable[[], Any] | None) -> None:
        """``source()`` returns the latest frame as an RGB ndarray, or None."""
        self._source = source
        self._image = None
        self._last = None
        if source is None:
            self._timer.stop()
        else:
            self._timer.start()
        self.update()

    def set_overlay(self, child: QWidget) -> None:
        """Keep ``child`` (the local preview) in the bottom-right corner of this view."""
        child.setParent(self)
        self._overlay = child
        self._place_overlay()
        child.raise_()

    def _place_overlay(self) -> None:
        child = self._overlay
        if child is not None:
            margin = 12
            child.move(
                self.width() - child.width() - margin, self.height() - child.height() - margin
            )

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place_overlay()

    def set_frame(self, rgb: Any) -> None:
        import numpy as np  # loaded with the first frame, not at start-up

        array = np.ascontiguousarray(rgb, dtype=np.uint8)
        height, width = array.shape[:2]
        self._image = QImage(
            array.data, width, height, 3 * width, QImage.Format.Format_RGB888
        ).copy()
        self.update()

    def _poll(self) -> None:
        if self._source is None:
            return
        frame = self._source()
        if frame is None or frame is self._last:
            return  # nothing new: no copy, no repaint
        self._last = frame
        # A disabled WebRTC video track sends black frames (W3C mediacapture-main, "enabled"):
        # that is the other side's camera switched off. Sampled, so it stays cheap.
        sample = frame[::16, ::16]
        off = int(sample.max()) < 40
        if off != self.camera_off:
            self.camera_off = off
            self.cameraOffChanged.emit(off)
        self.set_frame(frame)

    def clear(self) -> None:
        """Back to the placeholder (the call ended)."""
        self.set_source(None)
        self._last = None
        self.camera_off = False
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        inset = self.parentWidget() is not None and isinstance(self.parentWidget(), VideoView)
        painter.fillRect(self.rect(), QColor("#374151" if inset else "#111827"))
        if self._image is None or self.camera_off:
            painter.setPen(QColor("#d1d5db" if inset else "#9ca3af"))
            text = self.off_text if self.camera_off else self._placeholder
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, text)
        else:
            scaled = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            x = (self.width() - scaled.width()) // 2
            y = (self.height() - scaled.height()) // 2
            painter.drawImage(QRect(x, y, scaled.width(), scaled.height()), self._image)
            self.frames_painted += 1
        if inset:  # the local preview: a frame so it stands out from the remote video
            painter.setPen(QPen(QColor("#9ca3af"), 2))
            painter.drawRect(self.rect().adjusted(1, 1, -1, -1))
        painter.end()


class ChatPane(QWidget):
    """Text chat over the data channel: a transcript and an input line."""

    sendRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.transcript = QTextBrowser()
        self.transcript.setObjectName("chatTranscript")
        self.input = QLineEdit()
        self.input.setPlaceholderText("Message…")
        self.input.setObjectName("chatInput")
        self.input.setAccessibleName("Chat message")
        self.input.setMinimumWidth(120)  # never collapses at narrow widths (issue 12.10)
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("chatSend")
        row = QHBoxLayout()
        row.addWidget(self.input)
        row.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.transcript)
        layout.addLayout(row)
        self.input.returnPressed.connect(self._send)
        self.send_button.clicked.connect(self._send)
        self.set_enabled(False)

    def set_enabled(self, enabled: bool) -> None:
        self.input.setEnabled(enabled)
        self.send_button.setEnabled(enabled)

    def _send(self) -> None:
        text = self.input.text().strip()
        if text:
            self.sendRequested.emit(text)
            self.input.clear()

    def add_message(self, who: str, text: str, *, mine: bool | None = None) -> None:
        mine = who == "You" if mine is None else mine
        color = theme.ink("accent" if mine else "ok")
        stamp = dt.datetime.now().strftime("%H:%M")
        self.transcript.append(
            f"<span style='{theme.style('note')}'>{stamp}</span> "
            f"<b style='color:{color}'>{html.escape(who)}:</b> {html.escape(text)}"
        )

    def clear(self) -> None:
        """A new call starts with an empty transcript (issue 12.10)."""
        self.transcript.clear()

    def add_note(self, text: str) -> None:
        self.transcript.append(f"<i style='{theme.style('note')}'>{html.escape(text)}</i>")

    def messages(self) -> str:
        return self.transcript.toPlainText()


class LevelMeter(QProgressBar):
    """A 0..1 input level as a bar (fed by the microphone level callback)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(0, 100)
        self.setTextVisible(False)
        self.setMaximumHeight(10)
        self.setValue(0)

    def set_level(self, level: float) -> None:
        self.setValue(round(max(0.0, min(1.0, level)) * 100))


class HistoryView(QTableWidget):
    """Who, when and how it went, newest first; double-click or the context menu calls back.

    Three narrow columns so it never needs horizontal scrolling (issue 12.10).
    """

    COLUMNS = ("When", "Who", "Call")
    callBackRequested = Signal(object)  # CallRecord
    deleteRequested = Signal(int)  # row (0 = newest)
    clearRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(self.COLUMNS), parent)
        self.setObjectName("history")
        self.setAccessibleName("Call history")
        self.setHorizontalHeaderLabels(self.COLUMNS)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWordWrap(False)
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.records: list[CallRecord] = []  # row order
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.cellDoubleClicked.connect(lambda row, _c: self._call_back(row))
        self.menu: Any = None

    def set_records(self, records: list[CallRecord]) -> None:
        self.setRowCount(0)
        self.records = []
        for record in reversed(records):
            self._add(record)

    def prepend(self, record: CallRecord) -> None:
        self.insertRow(0)
        self.records.insert(0, record)
        self._fill(0, record)

    def _add(self, record: CallRecord) -> None:
        row = self.rowCount()
        self.insertRow(row)
        self.records.append(record)
        self._fill(row, record)

    def _fill(self, row: int, record: CallRecord) -> None:
        started = dt.datetime.fromtimestamp(record.started)
        today = dt.date.today() == started.date()
        when = started.strftime("%H:%M" if today else "%d %b %H:%M")
        arrow = "↗" if record.direction == "outgoing" else "↙"
        path = {"direct": "", "relay": " · relay", "none": ""}[record.route]
        duration = f" {format_duration(record.duration)}" if record.outcome == "completed" else ""
        values = (when, record.peer, f"{arrow} {record.outcome}{duration}{path}")
        tip = (
            f"{record.direction} call, {record.outcome}, {format_duration(record.duration)},"
            f" {record.route}; double-click to call back"
        )
        for column, value in enumerate(values):
            item = QTableWidgetItem(value)
            item.setToolTip(tip)
            self.setItem(row, column, item)

    def _call_back(self, row: int) -> None:
        if 0 <= row < len(self.records):
            self.callBackRequested.emit(self.records[row])

    def _menu(self, pos: Any) -> None:
        from PySide6.QtWidgets import QMenu

        row = self.rowAt(pos.y())
        menu = QMenu(self)
        menu.setObjectName("historyMenu")
        call_back = menu.addAction("Call back")
        delete = menu.addAction("Delete")
        menu.addSeparator()
        clear = menu.addAction("Clear history")
        for action in (call_back, delete):
            action.setEnabled(row >= 0)
        call_back.triggered.connect(lambda: self._call_back(row))
        delete.triggered.connect(lambda: self.deleteRequested.emit(row))
        clear.triggered.connect(self.clearRequested.emit)
        self.menu = menu
        menu.popup(self.viewport().mapToGlobal(pos))

    def remove(self, row: int) -> None:
        if 0 <= row < len(self.records):
            self.removeRow(row)
            del self.records[row]
