"""Text colours that stay readable on the light and the dark palette (issue 12.13: dark mode
follows the system).

Qt hands the window the system's palette (dark on a dark desktop); a colour hard-coded for a
white window, such as the grey of a note, is unreadable on it. Each colour here has a variant
per palette, chosen for at least 4.5:1 contrast with the window (WCAG 2.1 §1.4.3). Colours
read at the moment a widget is styled, so a window built on a dark desktop is dark throughout.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QWidget

# name -> (on a light window, on a dark window)
INKS = {
    "note": ("#4b5563", "#a0aec0"),  # secondary text: hints, time stamps, "not yet"
    "error": ("#c53030", "#fc8181"),
    "accent": ("#2b6cb0", "#90cdf4"),  # our side, links, the hosting indicator
    "ok": ("#2f855a", "#9ae6b4"),  # the other side in the chat
    "off": ("#d0d5dd", "#4a5568"),  # an unlit quality bar: fainter than a lit one
}
# Text on the fixed light backgrounds (table rows, legend swatches): the same on both.
DARK_TEXT = "#111827"


def is_dark(palette: QPalette | None = None) -> bool:
    """True when the window background is dark (the system's dark mode, or a dark theme)."""
    palette = palette if palette is not None else QGuiApplication.palette()
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def ink(name: str, palette: QPalette | None = None) -> str:
    """The colour called ``name`` in :data:`INKS` for the current (or given) palette."""
    light, dark = INKS[name]
    return dark if is_dark(palette) else light


def ink_color(name: str) -> QColor:
    return QColor(ink(name))


def style(name: str) -> str:
    """A one-property style sheet: text in the colour ``name``."""
    return f"color: {ink(name)}"


_INK_PROPERTY = "peercallInk"


def paint(widget: QWidget, name: str, rule: str = "{}") -> None:
    """Style ``widget`` with the colour ``name`` (``rule`` wraps ``color: ...``), and remember
    it so :func:`repaint` can apply it again when the palette changes at run time."""
    widget.setProperty(_INK_PROPERTY, f"{name}|{rule}")
    widget.setStyleSheet(rule.format(style(name)))


def repaint(root: QWidget) -> None:
    """Re-apply :func:`paint` colours under ``root`` (the system switched light/dark)."""
    for widget in [root, *root.findChildren(QWidget)]:
        value = widget.property(_INK_PROPERTY)
        if isinstance(value, str) and "|" in value:
            name, rule = value.split("|", 1)
            widget.setStyleSheet(rule.format(style(name)))


def contrast(a: QColor, b: QColor) -> float:
    """WCAG 2.1 contrast ratio of two colours (1 to 21), from relative luminance."""

    def luminance(c: QColor) -> float:
        def channel(v: float) -> float:
            return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

        return (
            0.2126 * channel(c.redF()) + 0.7152 * channel(c.greenF()) + 0.0722 * channel(c.blueF())
        )

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)
