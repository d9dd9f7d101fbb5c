"""Start-up details of `peercall gui` that the desktop integration relies on."""

from __future__ import annotations

from typing import Any

from app.ui.main import _window_icon


def test_window_icon_renders_from_the_shipped_svg(qtbot: Any) -> None:
    # Without an installed theme icon the SVG in app/ui must still give a real pixmap
    # (it is package data, and the PyInstaller spec carries it into the bundle).
    icon = _window_icon()
    assert not icon.isNull()
    image = icon.pixmap(48, 48).toImage()
    assert image.width() == 48
    assert any(image.pixelColor(x, 24).alpha() > 0 for x in range(48))
