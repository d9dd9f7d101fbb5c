"""Dark mode: with a dark palette (what Qt hands a window on a dark desktop), text the window
colours itself stays readable. Measured on rendered pixels (offscreen platform): the WCAG 2.1
contrast of the text against the background it is drawn on (issue 12.13, brief item 2)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QApplication, QLabel, QLineEdit, QPushButton, QWidget

from app.ui.theme import contrast
from tests.ui.conftest import child, click, type_into

READABLE = 4.5  # WCAG 2.1 §1.4.3, normal-size text


def _dark_palette() -> QPalette:
    palette = QPalette()
    roles = QPalette.ColorRole
    for role, color in (
        (roles.Window, "#202124"),
        (roles.WindowText, "#e8eaed"),
        (roles.Base, "#171717"),
        (roles.AlternateBase, "#262626"),
        (roles.Text, "#e8eaed"),
        (roles.Button, "#303134"),
        (roles.ButtonText, "#e8eaed"),
        (roles.PlaceholderText, "#9aa0a6"),
        (roles.ToolTipBase, "#303134"),
        (roles.ToolTipText, "#e8eaed"),
        (roles.Highlight, "#8ab4f8"),
        (roles.HighlightedText, "#202124"),
        (roles.Link, "#8ab4f8"),
    ):
        palette.setColor(role, QColor(color))
    return palette


@pytest.fixture(params=["light", "dark"])
def palette(request: Any, qapp: QApplication) -> Iterator[str]:
    saved = QApplication.palette()
    if request.param == "dark":
        QApplication.setPalette(_dark_palette())
    try:
        yield request.param
    finally:
        QApplication.setPalette(saved)


def text_contrast(image: QImage) -> float:
    """Contrast of the text in ``image`` with its background: the background is the most
    common colour, the text the pixel that differs most from it (a glyph's core, not its
    anti-aliased edge)."""
    colors = Counter(image.pixel(x, y) for y in range(image.height()) for x in range(image.width()))
    background = QColor.fromRgb(colors.most_common(1)[0][0])
    return max(contrast(background, QColor.fromRgb(rgb)) for rgb in colors)


def grab(widget: QWidget, rect: QRect | None = None) -> QImage:
    pixmap = widget.grab(rect) if rect is not None else widget.grab()
    return pixmap.toImage()


def test_coloured_text_is_readable_in_light_and_dark_mode(
    palette: str, qtbot: Any, make_window: Any
) -> None:
    window = make_window("Main")
    assert (window.palette().color(QPalette.ColorRole.Window).lightness() < 128) == (
        palette == "dark"
    )
    # The security code placeholder in the status bar ("Verify: —", secondary grey).
    assert "Verify: —" in window.sas.text()
    assert text_contrast(grab(window.sas)) >= READABLE
    # A one-line error in Settings, as a person gets it by typing a wrong server.
    window.settings_action.trigger()
    d = window.settings_dialog
    click(qtbot, child(d, "iceAdd", QPushButton))
    type_into(qtbot, child(d, "iceUri", QLineEdit), "turn:192.0.2.9:3478")
    error = d.ice.error
    assert isinstance(error, QLabel)
    qtbot.waitUntil(lambda: "TURN needs" in error.text())
    assert text_contrast(grab(error)) >= READABLE
    click(qtbot, child(d, "settingsCancel", QPushButton))
    # The debug panel's coloured candidate rows, filled by "Gather candidates".
    window.debug_action.trigger()
    panel = window.debug_panel
    click(qtbot, child(panel, "gatherCandidates", QPushButton))
    qtbot.waitUntil(lambda: panel.candidates.rowCount() > 0)
    table = panel.candidates
    # The address cell of a host row, inside its grid lines (only text and background).
    rect = table.visualItemRect(table.item(0, 4)).adjusted(2, 2, -2, -2)
    assert text_contrast(grab(table.viewport(), rect)) >= READABLE
    qtbot.waitUntil(lambda: panel.gather_button.isEnabled(), timeout=15_000)


def test_switching_to_dark_mode_while_running_recolours_the_window(
    qtbot: Any, make_window: Any, qapp: QApplication
) -> None:
    """The desktop turns dark with PeerCall open: the palette changes under the window."""
    saved = QApplication.palette()
    window = make_window("Main")
    window.settings_action.trigger()
    d = window.settings_dialog
    click(qtbot, child(d, "iceAdd", QPushButton))
    type_into(qtbot, child(d, "iceUri", QLineEdit), "turn:192.0.2.9:3478")
    try:
        QApplication.setPalette(_dark_palette())
        qtbot.waitUntil(lambda: window.palette().color(QPalette.ColorRole.Window).lightness() < 128)
        qtbot.waitUntil(lambda: text_contrast(grab(window.sas)) >= READABLE)
        assert text_contrast(grab(d.ice.error)) >= READABLE
    finally:
        QApplication.setPalette(saved)
    click(qtbot, child(d, "settingsCancel", QPushButton))
