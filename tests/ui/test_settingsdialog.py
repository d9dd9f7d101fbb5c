"""The settings dialog against real servers on loopback: ICE editor + Test, hosting switches,
Save, and the level meter / test tone through the virtual sound card."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import turn

from app.settings import Settings
from app.ui.hosting import RelayHost, RelaySettings, SignalingHost, build_relay_config
from app.ui.settingsdialog import SettingsDialog, entry_error, parse_users, qr_image
from tests.audio import VirtualAudio
from tests.conftest import free_port


class Runner:
    """Like the adapter's ``run``: schedule, and keep each failure as one line."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, coro: Any, what: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)

        def done(t: asyncio.Task[Any]) -> None:
            if not t.cancelled() and t.exception() is not None:
                self.errors.append(f"{what}: {t.exception()}")

        task.add_done_callback(done)
        return task


@pytest.fixture
def runner() -> Runner:
    return Runner()


@pytest.fixture
def dialog(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, arun: Any, tmp_path: Path, runner: Runner
) -> Iterator[SettingsDialog]:
    settings = Settings(tmp_path / "settings.json")
    relay, signaling = RelayHost(), SignalingHost()
    d = SettingsDialog(settings, relay, signaling, runner)
    qtbot.addWidget(d)
    d.load()
    yield d
    d.media.stop_meter()
    arun(relay.stop())
    arun(signaling.stop())
    assert runner.errors == []


def edit(d: SettingsDialog, uri: str, username: str = "", credential: str = "") -> None:
    """Type into the ICE editor's fields the way a user does (textEdited fires)."""
    page = d.ice
    for widget, text in ((page.uri, uri), (page.username, username), (page.credential, credential)):
        widget.setText(text)
        widget.textEdited.emit(text)


# --- ICE servers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "username", "credential", "message"),
    [
        ("", "", "", "enter a stun:, turn: or turns: URI"),
        ("http://x", "", "", "must start with stun:, stuns:, turn: or turns: (RFC 7064/7065)"),
        ("stun://example.org", "", "", "no '//' after 'stun:' (write stun:host)"),
        ("stun:example.org:99999", "", "", "port '99999' is not a number 1-65535"),
        ("stun:[::1", "", "", "missing ']' after the IPv6 address"),
        ("stun:a_b.example", "", "", "'a_b.example' is not a valid host name or IPv4 address"),
        ("stun:example.org?transport=udp", "", "", "stun: URIs take no '?' parameters"),
        ("turn:example.org?transport=sctp", "u", "p", "?transport=udp or ?transport=tcp"),
        ("turn:example.org", "", "", "TURN needs a username and a credential"),
        ("turn:example.org", "alice", "", "TURN needs a username and a credential"),
    ],
)
def test_invalid_uri_shows_one_line_and_disables_save(
    dialog: SettingsDialog, uri: str, username: str, credential: str, message: str
) -> None:
    dialog.ice.add_entry()
    edit(dialog, uri, username, credential)
    assert message in dialog.ice.error.text()
    assert "\n" not in dialog.ice.error.text()
    assert dialog.ice.error.text() == entry_error(uri, username, credential)
    assert not dialog.save_button.isEnabled()
    assert "entry 1:" in dialog.error.text()
    assert not dialog.ice.test_button.isEnabled()


@pytest.mark.parametrize(
    ("uri", "username", "credential"),
    [
        ("stun:stun.example.org", "", ""),
        ("stun:[2001:db8::1]:3479", "", ""),
        ("turn:192.0.2.1:3478?transport=tcp", "alice", "secret"),
        ("turns:relay.example.org turn:relay.example.org", "alice", "secret"),
    ],
)
def test_valid_uris_enable_save(
    dialog: SettingsDialog, uri: str, username: str, credential: str
) -> None:
    dialog.ice.add_entry()
    edit(dialog, uri, username, credential)
    assert dialog.ice.error.text() == ""
    assert dialog.save_button.isEnabled()
    assert dialog.error.text() == ""


def test_pasting_user_password_at_uri_fills_the_credentials(dialog: SettingsDialog) -> None:
    dialog.ice.add_entry()
    dialog.ice.uri.setText("bob:pa:ss@turn:192.0.2.7:3478?transport=udp")
    dialog.ice.uri.textEdited.emit(dialog.ice.uri.text())
    assert dialog.ice.uri.text() == "turn:192.0.2.7:3478?transport=udp"
    assert (dialog.ice.username.text(), dialog.ice.credential.text()) == ("bob", "pa:ss")
    assert dialog.save_button.isEnabled()


def test_add_reorder_remove_and_save_persists(dialog: SettingsDialog, tmp_path: Path) -> None:
    received: list[bool] = []
    dialog.saved.connect(lambda: received.append(True))
    for uri in ("stun:a.example", "stun:b.example", "stun:c.example"):
        dialog.ice.add_entry()
        edit(dialog, uri)
    dialog.ice.move_entry(-1)  # c above b
    dialog.ice.table.selectRow(0)
    dialog.ice.move_entry(1)  # a below c
    dialog.ice.table.selectRow(2)
    dialog.ice.remove_entry()  # b
    assert [e["urls"] for e in dialog.ice.entries()] == [["stun:c.example"], ["stun:a.example"]]
    dialog.display_name.setText("Ada")
    assert dialog.save()
    assert received == [True]
    saved = json.loads((tmp_path / "settings.json").read_text())["values"]
    assert saved["ice_servers"] == [{"urls": ["stun:c.example"]}, {"urls": ["stun:a.example"]}]
    assert Settings.load(tmp_path / "settings.json")["display_name"] == "Ada"


@pytest.fixture
def relay_server(arun: Any) -> Iterator[Any]:
    from nat.service import RelayServer

    config = build_relay_config(
        RelaySettings(listen="127.0.0.1", port=0, users=(("alice", "wonderland"),))
    )
    server = RelayServer(config)
    arun(server.start())
    yield server
    arun(server.stop())


def test_test_button_shows_srflx_and_relay_from_a_real_server(
    qtbot: Any, dialog: SettingsDialog, relay_server: Any
) -> None:
    port = next(p for kind, _, p in relay_server.addresses if kind == "udp")
    dead = free_port()
    dialog.ice.add_entry()
    edit(dialog, f"stun:127.0.0.1:{port}")
    dialog.ice.add_entry()
    edit(dialog, f"turn:127.0.0.1:{port}?transport=udp", "alice", "wonderland")
    dialog.ice.add_entry()
    edit(dialog, f"turn:127.0.0.1:{port}?transport=udp", "alice", "wrong")
    dialog.ice.add_entry()
    edit(dialog, f"stun:127.0.0.1:{dead}")
    # The relay shares this loop with the probes: on a loaded machine the 3 s the dialog
    # allows a server is too tight to demand an answer in (the dead port fails at once).
    dialog.ice.time_limit = 10.0
    with qtbot.waitSignal(dialog.ice.testFinished, timeout=30_000):
        qtbot.mouseClick(dialog.ice.test_button, _left())
    stun_text, turn_text, wrong_text, dead_text = (dialog.ice.result_text(r) for r in range(4))
    assert stun_text.startswith("srflx 127.0.0.1:")
    assert stun_text.endswith(" ms)")
    assert turn_text.startswith("relay 127.0.0.1:")
    assert "srflx 127.0.0.1:" in turn_text
    assert wrong_text.startswith("failed: server answered 401")
    assert dead_text.startswith("failed: ")
    assert "\n" not in dead_text
    item = dialog.ice.table.item(1, 2)
    assert item is not None
    assert item.text() == turn_text
    assert "4 URI(s): 2 answered" in dialog.ice.status.text()


def _left() -> Any:
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


# --- Host a relay -----------------------------------------------------------------------------


def set_relay_fields(dialog: SettingsDialog, port: int, users: str = "") -> None:
    page = dialog.relay
    page.listen.setText("127.0.0.1")
    page.port.setValue(port)
    page.users.setPlainText(users)


def test_relay_switch_runs_a_real_relay_that_counts_an_allocation(
    qtbot: Any, dialog: SettingsDialog, arun: Any
) -> None:
    page = dialog.relay
    set_relay_fields(dialog, 0)
    with qtbot.waitSignal(page.host.runningChanged, timeout=10_000):
        page.switch.click()
    assert page.host.running
    assert page.switch.isChecked()
    assert not page.listen.isEnabled()
    # No user was given: one is generated, shown, and offered with the URIs.
    name, password = parse_users(page.users.toPlainText())[0]
    assert name == "peercall"
    assert len(password) >= 16
    port = next(p for kind, _, p in page.host.server.addresses if kind == "udp")
    assert f"udp 127.0.0.1:{port}" in page.addresses.text()
    assert f"turn:127.0.0.1:{port}?transport=udp" in page.share
    assert f"credential: {password}" in page.share
    assert page.qr_text == f"peercall:{password}@turn:127.0.0.1:{port}?transport=udp"
    assert not page.share_list.qr.pixmap().isNull()
    page.copy()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == page.share

    async def allocate() -> Any:
        transport, _ = await turn.create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=("127.0.0.1", port),
            username=name,
            password=password,
        )
        return transport

    client = arun(allocate())
    try:
        qtbot.waitUntil(lambda: page.allocations.text() == "1", timeout=10_000)
    finally:
        # Deallocate while the relay still answers: after it stops, the client's Refresh
        # would retransmit into the void until the test's teardown cancels it.
        client.close()
    with qtbot.waitSignal(page.host.runningChanged, timeout=10_000):
        page.switch.click()
    assert page.host.server is None
    assert not page.switch.isChecked()
    assert page.addresses.text() == "not running"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))  # the port is free again


def test_use_my_relay_adds_it_to_the_ice_servers(qtbot: Any, dialog: SettingsDialog) -> None:
    set_relay_fields(dialog, 0, "carol:s3cret-pass")
    with qtbot.waitSignal(dialog.relay.host.runningChanged, timeout=10_000):
        dialog.relay.switch.click()
    dialog.relay.use_button.click()
    entries = dialog.ice.entries()
    assert entries[-1]["username"] == "carol"
    assert entries[-1]["credential"] == "s3cret-pass"
    assert entries[-1]["urls"][0].startswith("turn:127.0.0.1:")
    assert dialog.tabs.currentWidget() is dialog.ice
    assert dialog.save_button.isEnabled()


def test_relay_port_in_use_is_one_line_and_the_switch_goes_back_off(
    qtbot: Any, dialog: SettingsDialog
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        set_relay_fields(dialog, port, "u:p")
        with qtbot.waitSignal(dialog.relay.host.runningChanged, timeout=10_000) as blocker:
            dialog.relay.switch.click()
    assert blocker.args == [False]
    text = dialog.relay.error.text()
    assert text.startswith("Relay: ")
    assert "already in use" in text
    assert "\n" not in text
    assert not dialog.relay.switch.isChecked()
    assert dialog.relay.listen.isEnabled()


def test_relay_min_above_max_blocks_save_and_start(dialog: SettingsDialog) -> None:
    dialog.relay.min_port.setValue(60000)
    dialog.relay.max_port.setValue(50000)
    assert "min 60000 is above max 50000" in dialog.relay.error.text()
    assert not dialog.save_button.isEnabled()
    dialog.relay.switch.click()
    assert not dialog.relay.switch.isChecked()
    assert not dialog.relay.host.running
    assert dialog.relay.error.text() == "Relay: relay ports: min 60000 is above max 50000"


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("listen", "localhost", "relay.listen: 'localhost' is not an IP address"),
        ("external_ip", "203.0.113", "relay.external_ip: '203.0.113' is not an IP address"),
        ("realm", "two words", "relay.realm: realm must be a non-empty word"),
    ],
)
def test_bad_relay_fields_are_named(
    dialog: SettingsDialog, field: str, text: str, message: str
) -> None:
    widget = getattr(dialog.relay, field)
    widget.setText(text)
    widget.textEdited.emit(text)
    assert message in dialog.relay.error.text()
    assert not dialog.save_button.isEnabled()


def test_relay_users_lines_are_checked(dialog: SettingsDialog) -> None:
    dialog.relay.users.setPlainText("alice:pw\nbob")
    assert dialog.relay.error.text() == "relay users: line 2 must be name:password"
    assert not dialog.save_button.isEnabled()


def test_relay_autostart_and_options_are_saved(dialog: SettingsDialog, tmp_path: Path) -> None:
    set_relay_fields(dialog, 3479, "dave:pw1")
    dialog.relay.autostart.setChecked(True)
    assert dialog.save()
    saved = Settings.load(tmp_path / "settings.json")
    assert saved["relay.enabled"]
    assert saved["relay.port"] == 3479
    assert saved["relay.users"] == [["dave", "pw1"]]


def test_qr_image_is_square_with_a_quiet_zone() -> None:
    image = qr_image("peercall:pw@turn:127.0.0.1:3478?transport=udp", scale=2, border=4)
    assert image.width() == image.height() > 40
    assert image.pixelColor(0, 0).value() == 255  # quiet zone is light
    assert image.pixelColor(8, 8).value() == 0  # top-left finder pattern is dark


# --- Signaling ------------------------------------------------------------------------------


def test_signaling_host_switch_shows_its_url(qtbot: Any, dialog: SettingsDialog) -> None:
    page = dialog.signaling
    page.listen.setText("127.0.0.1")
    page.port.setValue(0)
    with qtbot.waitSignal(page.host.runningChanged, timeout=10_000):
        page.host_switch.click()
    assert page.host_url.text().startswith("ws://127.0.0.1:")
    assert page.host_url.text() == page.host.url
    with qtbot.waitSignal(page.host.runningChanged, timeout=10_000):
        page.host_switch.click()
    assert page.host_url.text() == "not running"
    assert not page.host_switch.isChecked()


def test_signaling_port_in_use_is_one_line(qtbot: Any, dialog: SettingsDialog) -> None:
    page = dialog.signaling
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        page.listen.setText("127.0.0.1")
        page.port.setValue(held.getsockname()[1])
        with qtbot.waitSignal(page.host.runningChanged, timeout=10_000) as blocker:
            page.host_switch.click()
    assert blocker.args == [False]
    assert page.host_error.text().startswith("Signaling server: ")
    assert "\n" not in page.host_error.text()
    assert not page.host_switch.isChecked()


def test_signaling_options_validate_and_save(dialog: SettingsDialog, tmp_path: Path) -> None:
    page = dialog.signaling
    page.url.setText("http://example.org")
    page.url.textEdited.emit(page.url.text())
    assert "must start with ws:// or wss://" in page.url_error.text()
    assert not dialog.save_button.isEnabled()
    page.url.setText("wss://signal.example.org")
    page.url.textEdited.emit(page.url.text())
    page.backend.setCurrentText("LAN peer")
    assert not page.url.isEnabled()
    page.room.setText("book-club")
    assert dialog.save()
    saved = Settings.load(tmp_path / "settings.json")
    assert saved["signaling.backend"] == "lan"
    assert saved["signaling.room"] == "book-club"
    assert saved["signaling.url"] == "wss://signal.example.org"


# --- Audio & video -----------------------------------------------------------------------------


def test_processing_choices_are_saved(dialog: SettingsDialog, tmp_path: Path) -> None:
    dialog.media.noise.setCurrentIndex(3)
    dialog.media.gain.setValue(9)
    assert dialog.save()
    saved = Settings.load(tmp_path / "settings.json")
    assert (saved["audio.noise_suppression"], saved["audio.auto_gain"]) == (3, 9)


@pytest.mark.audio
def test_level_meter_moves_with_the_test_tone(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, tmp_path: Path, virtual_audio: VirtualAudio
) -> None:
    """The test tone plays on vspeaker; its monitor is the default source the meter reads."""
    from app.media import devices

    devices.refresh()
    settings = Settings(tmp_path / "settings.json")
    settings.update({"audio.input": "pulse", "audio.output": "pulse", "audio.noise_suppression": 1})
    runner = Runner()
    d = SettingsDialog(settings, RelayHost(), SignalingHost(), runner)
    qtbot.addWidget(d)
    d.load()
    assert d.media.microphone.currentData() == "pulse"
    with qtbot.waitSignal(d.media.meterOpened, timeout=10_000) as opened:
        d.show()
        d.tabs.setCurrentWidget(d.media)
    assert opened.args == [True]
    assert d.media.track.process is not None  # the meter hears what a call would send
    shown: list[int] = []
    d.media.meter.valueChanged.connect(shown.append)
    with qtbot.waitSignal(d.media.toneFinished, timeout=10_000):
        d.media.tone_button.click()
        # The peak is sticky: a loaded machine may deliver the blocks after the tone ends.
        qtbot.waitUntil(lambda: d.media.peak > 0.1, timeout=10_000)  # a 0.3 full-scale tone
    assert max(shown) > 10  # the bar itself moved (percent of full scale)
    d.tabs.setCurrentWidget(d.ice)  # leaving the page closes the microphone
    assert d.media.track is None
    assert d.media.meter.value() == 0
    d.close()
    assert runner.errors == []


@pytest.mark.audio
def test_leaving_the_page_while_the_microphone_opens_closes_it(
    qtbot: Any,
    monkeypatch: pytest.MonkeyPatch,
    dialog: SettingsDialog,
    virtual_audio: VirtualAudio,
) -> None:
    """stop_meter() during the threaded open: the stream that open still returns is closed."""
    import threading

    from app.media import devices
    from app.media.audio import MicrophoneTrack

    devices.refresh()
    entered, release = threading.Event(), threading.Event()
    opened: list[Any] = []
    original = MicrophoneTrack._open_stream

    def slow_open(track: MicrophoneTrack) -> Any:
        entered.set()
        release.wait(10)
        stream = original(track)
        opened.append(stream)
        return stream

    monkeypatch.setattr(MicrophoneTrack, "_open_stream", slow_open)
    dialog.media.start_meter()
    qtbot.waitUntil(entered.is_set, timeout=10_000)
    dialog.media.stop_meter()  # cancels the opening task while the thread is inside the open
    release.set()
    qtbot.waitUntil(lambda: bool(opened) and opened[0].closed, timeout=10_000)
    assert dialog.media.track is None


# --- from the main window ---------------------------------------------------------------------


def test_main_window_opens_the_dialog_and_applies_what_is_saved(
    qtbot: Any, make_window: Any
) -> None:
    window = make_window("Main")
    assert window.settings_action.isEnabled()
    window.settings_action.trigger()
    d = window.settings_dialog
    assert isinstance(d, SettingsDialog)
    assert d.isVisible()
    assert d.relay.host is window.relay_host
    d.signaling.room.setText("from-the-dialog")
    d.ice.add_entry()
    edit(d, "turn:192.0.2.9:3478", "eve", "pw")
    assert d.save()
    assert window.room.text() == "from-the-dialog"
    assert window.settings["ice_servers"] == [
        {"urls": ["turn:192.0.2.9:3478"], "username": "eve", "credential": "pw"}
    ]
    assert not d.isVisible()


def test_relay_port_in_use_reaches_the_main_window_as_one_line(
    qtbot: Any, make_window: Any
) -> None:
    window = make_window("Main")
    d = window.open_settings()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        set_relay_fields(d, held.getsockname()[1], "u:p")
        with qtbot.waitSignal(window.relay_host.runningChanged, timeout=10_000):
            d.relay.switch.click()
    assert len(window.errors) == 1
    assert window.errors[0] == d.relay.error.text()
    assert "already in use" in window.errors[0]
    for box in list(window.error_boxes):
        box.close()


@pytest.mark.audio
def test_echo_cancel_switch_reports_a_refusal_in_one_line(
    qtbot: Any, dialog: SettingsDialog, virtual_audio: VirtualAudio
) -> None:
    """The test sound card's microphone is its speaker's monitor, which PulseAudio refuses to
    cancel between: the switch says so in one line and goes back off."""
    with qtbot.waitSignal(dialog.media.echoApplied, timeout=10_000) as applied:
        dialog.media.echo.click()
    assert applied.args == [False]
    assert not dialog.media.echo.isChecked()
    text = dialog.media.echo_error.text()
    assert text.startswith("Echo cancellation is not available with these devices:")
    assert "pactl" not in text  # a sentence, the raw detail is in the tooltip
    assert dialog.media.echo_error.toolTip().startswith("echo cancellation: pactl load-module: ")
    assert "\n" not in text
    assert os.environ.get("PULSE_SOURCE") is None


@pytest.mark.audio
def test_device_lists_name_the_sound_card_behind_pulse(
    dialog: SettingsDialog, virtual_audio: VirtualAudio
) -> None:
    dialog.media.rescan()
    speakers = [dialog.media.speaker.itemText(i) for i in range(dialog.media.speaker.count())]
    pulse = [text for text in speakers if text.endswith("(pulse)")]
    assert pulse, speakers
    assert not pulse[0].startswith("pulse")  # the sink's description, e.g. "Null Output"
    index = dialog.media.speaker.findText(pulse[0])
    assert dialog.media.speaker.itemData(index) == "pulse"  # what is saved stays the device


def test_ice_test_results_are_not_cut_off(
    qtbot: Any, dialog: SettingsDialog, relay_server: Any
) -> None:
    """Each result wraps inside its cell and the row is as tall as the wrapped text (12.10)."""
    from PySide6.QtCore import Qt

    port = next(p for kind, _, p in relay_server.addresses if kind == "udp")
    dialog.show()
    dialog.ice.add_entry()
    edit(dialog, f"turn:127.0.0.1:{port}?transport=udp", "alice", "wonderland")
    dialog.ice.add_entry()
    edit(dialog, f"stun:127.0.0.1:{free_port()}")
    dialog.ice.time_limit = 10.0
    with qtbot.waitSignal(dialog.ice.testFinished, timeout=30_000):
        qtbot.mouseClick(dialog.ice.test_button, _left())
    table = dialog.ice.table
    items = [table.item(row, 2) for row in range(table.rowCount())]
    assert all(item is not None for item in items)
    results: list[Any] = items
    qtbot.waitUntil(lambda: table.visualItemRect(results[-1]).height() > 0)
    assert table.visualItemRect(results[-1]).right() < table.viewport().width()
    for item in results:
        cell = table.visualItemRect(item)
        margin = table.style().pixelMetric(table.style().PixelMetric.PM_FocusFrameHMargin) + 1
        needed = table.fontMetrics().boundingRect(
            cell.adjusted(margin, 0, -margin, 0), int(Qt.TextFlag.TextWordWrap), item.text()
        )
        assert needed.height() <= cell.height(), item.text()
        assert needed.right() <= cell.right(), item.text()
