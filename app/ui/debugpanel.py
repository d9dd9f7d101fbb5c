"""The debug panel: candidates, pairs, a state timeline and live graphs, like the WebRTC
samples' Trickle ICE page and chrome://webrtc-internals, filled from engine events only."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import events as ev
from app.settings import write_json_atomic
from app.ui import theme
from app.ui.presenters import (
    CANDIDATE_COLUMNS,
    PAIR_COLUMNS,
    candidate_row,
    host_port,
    pair_row,
    user_message,
)

logger = logging.getLogger(__name__)

TYPE_COLORS = {"host": "#e6f4ea", "srflx": "#e8f0fe", "prflx": "#fef7e0", "relay": "#fce8e6"}
SELECTED_COLOR, NOMINATED_COLOR = "#b7e4c7", "#e6f4ea"
MAX_POINTS = 600  # ten minutes of once-a-second samples per curve


SECRET_KEYS = frozenset({"credential", "password", "secret"})
CHAT_EVENTS = frozenset({"ChatReceived", "ChatSent"})


def scrub(value: Any, *, include_chat: bool) -> Any:
    """An export safe to attach to a public bug report: no TURN credentials or secrets, and
    chat messages only when the user asked for them (issue 12.12)."""
    if isinstance(value, dict):
        if value.get("event") in CHAT_EVENTS and not include_chat:
            return {**value, "text": "(chat not included)"}
        return {
            k: "(removed)" if k in SECRET_KEYS and v else scrub(v, include_chat=include_chat)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub(v, include_chat=include_chat) for v in value]
    return value


def candidate_line(c: ev.CandidateInfo) -> str:
    """The candidate as its SDP attribute (RFC 8839 §5.1), what chrome://webrtc-internals and
    the Trickle ICE page print."""
    line = (
        f"candidate:{c.foundation} {c.component} {c.protocol} {c.priority} {c.address}"
        f" {c.port} typ {c.type}"
    )
    if c.related_address:
        line += f" raddr {c.related_address} rport {c.related_port or 0}"
    if c.tcp_type:
        line += f" tcptype {c.tcp_type}"
    return line


def negotiated_codecs(sdp: str) -> dict[str, str]:
    """The codec each media section settled on: the first payload type of its m= line
    (RFC 8866 §5.14; the answer lists the chosen one first) looked up in its a=rtpmap."""
    codecs: dict[str, str] = {}
    kind, first = "", ""
    maps: dict[str, str] = {}
    for line in [*sdp.splitlines(), "m=end 0 x"]:
        if line.startswith("m="):
            if kind and first in maps and kind not in codecs:
                codecs[kind] = maps[first]
            parts = line[2:].split()
            kind, first, maps = parts[0], (parts[3] if len(parts) > 3 else ""), {}
        elif line.startswith("a=rtpmap:"):
            payload, _, name = line[len("a=rtpmap:") :].partition(" ")
            maps[payload] = name.strip()
    return codecs


STREAM_COLUMNS = (
    "Stream",
    "Codec",
    "Frames",
    "Resolution",
    "Level / rate",
    "Packets",
    "Bytes",
    "Lost",
    "Jitter (ms)",
)
STREAM_NAMES = {
    ("audio", "in"): "audio ↓ received",
    ("audio", "out"): "audio ↑ sent",
    ("video", "in"): "video ↓ received",
    ("video", "out"): "video ↑ sent",
}


def _figure(value: float | None, form: str = "{:.0f}") -> str:
    """A cell: "n/a" when aiortc does not report the figure (never a made-up zero)."""
    return "n/a" if value is None else form.format(value)


def legend() -> str:
    """The row colours explained; swatch text is dark on its light background in either
    palette, the rest follows the palette (dark mode)."""

    def swatch(color: str, text: str) -> str:
        return (
            f"<span style='background:{color}; color:{theme.DARK_TEXT}'>&nbsp;{text}&nbsp;</span>"
        )

    return (
        f"Rows: {swatch(TYPE_COLORS['host'], 'host')}"
        f" {swatch(TYPE_COLORS['srflx'], 'srflx (via STUN)')}"
        f" {swatch(TYPE_COLORS['prflx'], 'prflx (learned from checks)')}"
        f" {swatch(TYPE_COLORS['relay'], 'relay (via TURN)')} ·"
        f" pairs: {swatch(SELECTED_COLOR, '<b>selected</b>')}"
        f" {swatch(NOMINATED_COLOR, 'nominated')}"
        f" <span style='{theme.style('note')}'>grey: no longer checked</span>"
    )


def _table(columns: tuple[str, ...], name: str) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setObjectName(name)
    table.setHorizontalHeaderLabels(columns)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def _append(table: QTableWidget, values: tuple[str, ...], background: str | None = None) -> int:
    row = table.rowCount()
    table.insertRow(row)
    for column, value in enumerate(values):
        item = QTableWidgetItem(value)
        if background is not None:
            # A light row keeps dark text in dark mode too (the palette's text is light there).
            item.setBackground(QBrush(QColor(background)))
            item.setForeground(QBrush(QColor(theme.DARK_TEXT)))
        table.setItem(row, column, item)
    return row


def _cell(table: QTableWidget, row: int, column: int) -> str:
    item = table.item(row, column)
    return item.text() if item is not None else ""


def _rows(table: QTableWidget) -> list[list[str]]:
    return [
        [_cell(table, r, c) for c in range(table.columnCount())] for r in range(table.rowCount())
    ]


class Graph(pg.PlotWidget):  # type: ignore[misc]
    """One live plot with up to two named series over "seconds since start"."""

    def __init__(self, title: str, unit: str, series: tuple[str, ...], floor: float = 1.0) -> None:
        super().__init__()
        # The Y axis starts at 0 and spans at least ``floor``: a flat zero-loss line stays at
        # the bottom instead of being centred in a range of ±400 milli-percent.
        self.floor = floor
        self.setBackground("w")
        self.setTitle(title, color="#111827", size="10pt")
        self.setLabel("left", unit)
        self.setLabel("bottom", "s")
        self.getAxis("left").enableAutoSIPrefix(False)
        self.getAxis("bottom").enableAutoSIPrefix(False)
        self.enableAutoRange(axis="y", enable=False)
        self.setYRange(0, floor, padding=0)
        self.showGrid(x=True, y=True, alpha=0.25)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setMenuEnabled(False)
        self.setMinimumHeight(120)
        if len(series) > 1:
            self.addLegend(offset=(5, 5))
        palette = ("#2b6cb0", "#c05621")
        self.points: dict[str, tuple[list[float], list[float]]] = {}
        self.curves: dict[str, Any] = {}
        for name, color in zip(series, palette, strict=False):
            self.points[name] = ([], [])
            self.curves[name] = self.plot([], [], pen=pg.mkPen(color, width=2), name=name)

    def add(self, name: str, at: float, value: float | None) -> None:
        if value is None:
            return
        xs, ys = self.points[name]
        xs.append(at)
        ys.append(value)
        del xs[:-MAX_POINTS], ys[:-MAX_POINTS]
        self.curves[name].setData(xs, ys)
        top = max((max(v) for _, v in self.points.values() if v), default=0.0)
        self.setYRange(0, max(self.floor, top * 1.15), padding=0)

    def clear_points(self) -> None:
        for name, (xs, ys) in self.points.items():
            xs.clear()
            ys.clear()
            self.curves[name].setData([], [])
        self.setYRange(0, self.floor, padding=0)


class DebugPanel(QWidget):
    """Fed by :attr:`app.ui.adapter.CallAdapter.engineEvent`; reset when a new session starts."""

    def __init__(
        self,
        export_session: Callable[[], dict[str, Any]],
        parent: QWidget | None = None,
        *,
        servers: Callable[[], list[Any]] | None = None,
        run: Callable[..., Any] | None = None,
        streams: Callable[[], dict[str, Any]] | None = None,
        pairs: Callable[[], tuple[ev.CandidatePairInfo, ...]] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("PeerCall — debug")
        self._export_session = export_session
        self._servers = servers or (lambda: [])
        self._run = run
        self._streams = streams or (lambda: {})
        # The call's pairs with live counters (PairsUpdated comes only when a state moves).
        self._live_pairs = pairs or (lambda: ())
        self._codecs: dict[str, str] = {}
        self.stats: list[dict[str, Any]] = []
        self._pairs: dict[tuple[Any, ...], ev.CandidatePairInfo] = {}
        self.include_chat = QCheckBox("Include chat in the export")
        self.include_chat.setObjectName("exportChat")
        self.include_chat.setToolTip(
            "Off: chat messages are left out. TURN credentials are never exported."
        )
        self.gather_button = QPushButton("Gather candidates")
        self.gather_button.setObjectName("gatherCandidates")
        self.gather_button.setToolTip(
            "Without a call: list this machine's host candidates and ask each configured"
            " STUN/TURN server for srflx and relay candidates (like the Trickle ICE page)"
        )
        self.gather_button.clicked.connect(self.gather)
        self.legend = QLabel(legend())
        self.legend.setObjectName("debugLegend")
        self.legend.setWordWrap(True)

        self.summary = QLabel()
        self.summary.setObjectName("debugSummary")
        self.selected_label = QLabel("Selected pair: —")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip(
            "Save candidates, states, stats and SDPs as JSON for a bug report"
        )
        self.export_button.clicked.connect(self._ask_export)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.gather_button)
        top.addWidget(self.include_chat)
        top.addWidget(self.export_button)

        self.candidates = _table(CANDIDATE_COLUMNS, "candidates")
        self.pairs = _table(PAIR_COLUMNS, "pairs")
        self.timeline = _table(("Time", "Layer", "State"), "timeline")
        self.streams = _table(STREAM_COLUMNS, "streams")
        # Every STUN/TURN URI the call uses and where it came from: typed in Settings, or
        # handed out by the signaling server on join (short-lived TURN REST credentials).
        self.servers_table = _table(("ICE server", "From"), "iceServers")

        self.rtt = Graph("Round-trip time", "ms", ("rtt",), floor=10)
        self.jitter = Graph("Jitter", "ms", ("jitter",), floor=10)
        self.loss = Graph("Loss", "%", ("loss",), floor=5)
        self.bitrate = Graph("Bitrate", "kbit/s", ("in", "out"), floor=40)
        graphs = QWidget()
        grid = QVBoxLayout(graphs)
        grid.setContentsMargins(0, 0, 0, 0)
        for pair in ((self.rtt, self.jitter), (self.loss, self.bitrate)):
            row = QHBoxLayout()
            for graph in pair:
                row.addWidget(graph)
            grid.addLayout(row)

        lower_tabs = QTabWidget()
        lower_tabs.addTab(self.pairs, "Candidate pairs")
        lower_tabs.addTab(self.timeline, "Timeline")
        lower_tabs.addTab(self.streams, "Streams")
        lower_tabs.addTab(self.servers_table, "ICE servers")
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(lower_tabs)
        lower.addWidget(graphs)
        lower.setSizes([620, 620])
        main = QSplitter(Qt.Orientation.Vertical)
        main.addWidget(self.candidates)
        main.addWidget(lower)
        main.setSizes([320, 380])

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.legend)
        layout.addWidget(self.selected_label)
        layout.addWidget(main, 1)
        self.reset()

    # --- feeding ------------------------------------------------------------------------

    def reset(self, session: object = None) -> None:
        """Empty everything for a new call."""
        for table in (self.candidates, self.pairs, self.timeline, self.streams, self.servers_table):
            table.setRowCount(0)
        for graph in (self.rtt, self.jitter, self.loss, self.bitrate):
            graph.clear_points()
        self.stats = []
        self.candidate_lines: list[str] = []
        self._pairs = {}
        self._current_pairs: set[tuple[Any, ...]] = set()
        self._pairs_dirty = False
        self._gathering_logged = False
        self._local = self._remote = 0
        self._gathering: str = "gathering: not started"
        self.selected_label.setText("Selected pair: —")
        self._update_summary()

    def handle(self, event: ev.Event) -> None:
        """One engine event in; the matching view updated."""
        if isinstance(event, ev.CandidateGathered | ev.RemoteCandidateAdded):
            c = event.candidate
            if c.side == "local":
                self._local += 1
            else:
                self._remote += 1
            self._add_candidate(c)
            self._update_summary()
        elif isinstance(event, ev.GatheringFinished):
            failed = (
                f"; no answer from {', '.join(event.failed_servers)}"
                if event.failed_servers
                else ""
            )
            self._gathering = f"gathering took {event.duration * 1000:.0f} ms{failed}"
            self._gathering_complete(event.at)
            self._update_summary()
        elif isinstance(event, ev.PairsUpdated):
            self._show_pairs(event.pairs)
        elif isinstance(event, ev.SelectedPairChanged):
            p = event.pair
            route = "via relay" if event.relayed else "direct"
            local = f"{p.local.type} {host_port(p.local.address, p.local.port)}"
            remote = f"{p.remote.type} {host_port(p.remote.address, p.remote.port)}"
            self.selected_label.setText(f"Selected pair ({route}): {local} ⇄ {remote}")
            self._add_timeline(event.at, "ice", f"selected pair ({route})")
        elif isinstance(event, ev.StateChanged):
            reason = f" ({event.reason})" if event.reason else ""
            self._add_timeline(event.at, "call", f"{event.new.value}{reason}")
        elif isinstance(event, ev.TransportStateChanged):
            if (event.layer, event.state) == ("ice-gathering", "complete"):
                self._gathering_complete(event.at)
            else:
                self._add_timeline(event.at, event.layer, event.state)
        elif isinstance(event, ev.StatsSample):
            self._add_stats(event)
        elif isinstance(event, ev.ErrorOccurred):
            self._add_timeline(event.at, "error", event.message)
        elif isinstance(event, ev.IceServersInUse):
            # A restart builds a new peer connection with a fresh list: show the current one.
            self.servers_table.setRowCount(0)
            for server in event.servers:
                for url in server.urls:  # never the credentials: the export must not hold them
                    _append(self.servers_table, (url, server.origin))
            self._add_timeline(event.at, "ice", f"{len(event.servers)} ICE server entries")
        elif isinstance(event, ev.SdpExchanged) and event.kind == "answer":
            # The answer holds what both sides settled on.
            self._codecs = negotiated_codecs(event.sdp)

    def _add_timeline(self, at: float, layer: str, state: str) -> None:
        _append(self.timeline, (f"{at:.3f}", layer, state))

    def _gathering_complete(self, at: float) -> None:
        """Both the engine's summary and the transport report it: one timeline row."""
        if not self._gathering_logged:
            self._gathering_logged = True
            self._add_timeline(at, "ice-gathering", "complete")

    def _add_candidate(self, c: ev.CandidateInfo) -> None:
        row = _append(self.candidates, candidate_row(c), TYPE_COLORS.get(c.type))
        line = candidate_line(c)
        for column in range(self.candidates.columnCount()):
            item = self.candidates.item(row, column)
            if item is not None:
                item.setToolTip(line)
        self.candidate_lines.append(line)

    def _show_pairs(self, pairs: tuple[ev.CandidatePairInfo, ...]) -> None:
        """Every pair ever checked stays listed with its last state (chrome://webrtc-internals
        keeps them too); a pair the engine no longer reports is greyed."""
        current = set()
        for pair in pairs:
            key = (pair.local.key, pair.remote.key)
            self._pairs[key] = pair
            current.add(key)
        self._current_pairs = current
        # Counters change every second, and a panel opened late replays every snapshot of
        # the call: draw the table once per turn of the event loop, not once per snapshot.
        if not self._pairs_dirty:
            self._pairs_dirty = True
            QTimer.singleShot(0, self._draw_pairs)

    def _draw_pairs(self) -> None:
        if not self._pairs_dirty:
            return
        self._pairs_dirty = False
        current = self._current_pairs
        self.pairs.setRowCount(0)
        ordered = sorted(
            self._pairs.items(),
            key=lambda kv: (kv[0] not in current, not kv[1].selected, not kv[1].nominated),
        )
        for key, pair in ordered:
            color = SELECTED_COLOR if pair.selected else NOMINATED_COLOR if pair.nominated else None
            if key not in current:
                pair = replace(pair, selected=False)
                color = None
            row = _append(self.pairs, pair_row(pair), color)
            if key not in current:
                for column in range(self.pairs.columnCount()):
                    item = self.pairs.item(row, column)
                    if item is not None:
                        item.setForeground(QBrush(theme.ink_color("note")))
            if pair.selected:
                font = QFont()
                font.setBold(True)
                for column in range(self.pairs.columnCount()):
                    item = self.pairs.item(row, column)
                    if item is not None:
                        item.setFont(font)

    def _add_stats(self, sample: ev.StatsSample) -> None:
        self.stats.append(
            {
                "at": sample.at,
                "rtt_ms": sample.rtt_ms,
                "jitter_ms": sample.jitter_ms,
                "fraction_lost": sample.fraction_lost,
                "bitrate_in_kbps": sample.bitrate_in_kbps,
                "bitrate_out_kbps": sample.bitrate_out_kbps,
            }
        )
        del self.stats[:-MAX_POINTS]
        live = self._live_pairs()
        if live:
            self._show_pairs(live)
        self._show_streams(sample)
        self.rtt.add("rtt", sample.at, sample.rtt_ms)
        self.jitter.add("jitter", sample.at, sample.jitter_ms)
        loss = sample.fraction_lost * 100 if sample.fraction_lost is not None else None
        self.loss.add("loss", sample.at, loss)
        self.bitrate.add("in", sample.at, sample.bitrate_in_kbps)
        self.bitrate.add("out", sample.at, sample.bitrate_out_kbps)

    def _show_streams(self, sample: ev.StatsSample) -> None:
        """Per stream: codec, frames and resolution (video), level and rate (audio), and the
        RTP figures of getStats: packets, bytes, loss and jitter (inbound-rtp/outbound-rtp)."""
        probe = self._streams()
        measured = probe.get("audio_level", sample.audio_level)  # peak of the last second
        level = f"{measured:.2f}" if measured is not None else "—"
        rate_in = f"{sample.bitrate_in_kbps:.0f} kbit/s in" if sample.bitrate_in_kbps else "—"
        notes = {
            ("audio", "in"): f"level {level}; all media {rate_in}",
            ("audio", "out"): "muted" if probe.get("muted") else "",
        }
        rtp: dict[tuple[str, str], ev.StreamStats] = {
            (s.kind, s.direction): s for s in sample.streams
        }
        keys = [("audio", "in"), ("audio", "out")]
        for key, probe_key in ((("video", "in"), "video_in"), (("video", "out"), "video_out")):
            if probe_key in probe or key in rtp:
                keys.append(key)
        self.streams.setRowCount(0)
        for kind, direction in keys:
            video = probe.get(f"{kind}_{direction}") if kind == "video" else None
            frames, size, rate = video if video is not None else (None, None, None)
            stream = rtp.get((kind, direction))
            _append(
                self.streams,
                (
                    STREAM_NAMES[(kind, direction)],
                    self._codecs.get(kind, "—"),
                    str(frames) if frames is not None else "—",
                    f"{size[0]}×{size[1]}" if size else "—",
                    notes.get((kind, direction)) or (f"{rate} fps" if rate is not None else ""),
                    _figure(stream.packets if stream else None),
                    _figure(stream.bytes if stream else None),
                    _figure(stream.packets_lost if stream else None),
                    _figure(stream.jitter_ms if stream else None, "{:.1f}"),
                ),
            )

    def _update_summary(self) -> None:
        counts = f"Local candidates: {self._local} · remote candidates: {self._remote}"
        self.summary.setText(f"{counts} · {self._gathering}")

    # --- export -------------------------------------------------------------------------

    def export_data(self) -> dict[str, Any]:
        """The whole session (the engine's export) plus what this panel shows, scrubbed."""
        self._draw_pairs()  # a snapshot may still wait to be drawn
        data = {
            "session": self._export_session(),
            "ui": {
                "candidates": {"columns": list(CANDIDATE_COLUMNS), "rows": _rows(self.candidates)},
                "pairs": {"columns": list(PAIR_COLUMNS), "rows": _rows(self.pairs)},
                "streams": {"columns": list(STREAM_COLUMNS), "rows": _rows(self.streams)},
                "timeline": _rows(self.timeline),
                "ice_servers": _rows(self.servers_table),
                "stats": list(self.stats),
                "summary": self.summary.text(),
                "selected": self.selected_label.text(),
                "candidate_lines": list(self.candidate_lines),
            },
        }
        return dict(scrub(data, include_chat=self.include_chat.isChecked()))

    # --- stand-alone gathering --------------------------------------------------------------

    def gather(self) -> Any:
        """The Trickle ICE page's job without a call: host candidates of this machine, then
        what each configured STUN/TURN server returns (app.probe), into the candidates table."""
        from app.ui.hosting import lan_addresses

        self.reset()
        self._gathering = "gathering (no call)…"
        self._update_summary()
        for index, address in enumerate(lan_addresses()):
            candidate = ev.CandidateInfo(
                "local", 1, "host", str(index + 1), "udp", address.ip, 0, 0, at=0.0
            )
            self._local += 1
            self._add_candidate(candidate)
        self._update_summary()
        if self._run is None:
            return None
        self.gather_button.setEnabled(False)
        return self._run(self._probe(), "Gather candidates")

    async def _probe(self) -> None:
        import time

        from app.probe import probe_servers

        start = time.monotonic()
        try:
            results = await probe_servers(self._servers())
        finally:
            self.gather_button.setEnabled(True)
        failed = []
        for result in results:
            if not result.ok:
                failed.append(f"{result.uri} ({result.error})")
            for number, found in enumerate(result.candidates):
                candidate = ev.CandidateInfo(
                    "local",
                    1,
                    "relay" if found.type == "relay" else "srflx",
                    f"{found.type}{number}",
                    "udp" if "transport=tcp" not in result.uri else "tcp",
                    found.address,
                    found.port,
                    0,
                    at=result.elapsed,
                    server=result.uri,
                )
                self._local += 1
                self._add_candidate(candidate)
        took = (time.monotonic() - start) * 1000
        note = f"; failed: {', '.join(failed)}" if failed else ""
        self._gathering = f"gathered without a call in {took:.0f} ms{note}"
        self._update_summary()

    def export_to(self, path: Path) -> None:
        write_json_atomic(path, self.export_data())

    def _ask_export(self) -> None:
        name, _ = QFileDialog.getSaveFileName(
            self, "Export session", "peercall-session.json", "JSON (*.json)"
        )
        if not name:
            return
        try:
            self.export_to(Path(name))
        except (OSError, TypeError, ValueError) as exc:
            self.summary.setText(f"Export failed: {user_message(exc)}")


def dumps(data: dict[str, Any]) -> str:
    """JSON text of an export (used by tests and the screenshot script)."""
    return json.dumps(data, indent=2, sort_keys=True)
