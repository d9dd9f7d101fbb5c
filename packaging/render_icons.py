"""Render app/ui/peercall.svg to the PNG sizes of the freedesktop icon theme spec.

Uses Qt's own SVG renderer (QtSvg ships in PySide6-Essentials), so no extra tool is needed:
``python packaging/render_icons.py`` rewrites ``packaging/linux/icons/hicolor/<N>x<N>/apps/``
and the Windows ``.ico`` (16-256 px PNG frames). The outputs are committed.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

APP_ID = "org.peercall.PeerCall"
SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 32, 48, 256)
HERE = Path(__file__).resolve().parent
SVG = HERE.parent / "app" / "ui" / "peercall.svg"  # also the window icon at run time


def render(renderer: QSvgRenderer, size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")  # type: ignore[call-overload]  # stub says bytes; PySide6 wants str
    return bytes(data.data())


def write_ico(path: Path, frames: list[tuple[int, bytes]]) -> None:
    """An ICO file whose entries are PNG images (valid since Windows Vista)."""
    header = struct.pack("<HHH", 0, 1, len(frames))
    offset = 6 + 16 * len(frames)
    entries, blobs = b"", b""
    for size, png in frames:
        dim = 0 if size >= 256 else size  # 0 means 256 in the ICO directory
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(png), offset)
        blobs += png
        offset += len(png)
    path.write_bytes(header + entries + blobs)


def main() -> int:
    app = QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        print(f"render_icons: cannot read {SVG}", file=sys.stderr)
        return 1
    pngs: dict[int, bytes] = {}
    for size in SIZES:
        out = HERE / "linux" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        pngs[size] = png_bytes(render(renderer, size))
        out.write_bytes(pngs[size])
        print(f"wrote {out.relative_to(HERE.parent)}")
    scalable = HERE / "linux" / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    scalable.write_bytes(SVG.read_bytes())
    ico = HERE / "windows" / "peercall.ico"
    ico.parent.mkdir(parents=True, exist_ok=True)
    write_ico(ico, [(s, pngs[s]) for s in ICO_SIZES])
    print(f"wrote {ico.relative_to(HERE.parent)}")
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
