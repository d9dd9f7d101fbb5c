"""The "Host a call" dialog inside a lab namespace: click Start, print what it shows, stop.

``ip netns exec NS python -m tests.portmap.run_dialog`` (offscreen Qt). Prints one JSON line
with the status line, the address line and the link once hosting started (or failed), then
clicks Stop and prints the status after stopping.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import qasync
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from app.host import HostOptions
from app.ui.hostcall import HostCallDialog


async def drive(dialog: HostCallDialog) -> None:
    changed = asyncio.Event()
    dialog.hostingChanged.connect(lambda _on: changed.set())
    QTest.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    try:
        await asyncio.wait_for(changed.wait(), 60)
    except TimeoutError:
        print(json.dumps({"status": dialog.status.text(), "error": "never hosted"}), flush=True)
        raise
    shown = {
        "status": dialog.status.text(),
        "address": dialog.address.text(),
        "link": dialog.link.text(),
        "warning": dialog.warning.text(),
        "qr": not dialog.qr.pixmap().isNull(),
    }
    print(json.dumps(shown), flush=True)
    changed.clear()
    QTest.mouseClick(dialog.stop_button, Qt.MouseButton.LeftButton)
    await asyncio.wait_for(changed.wait(), 60)
    print(json.dumps({"status": dialog.status.text()}), flush=True)


def main() -> int:
    app = QApplication(sys.argv[:1])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    dialog = HostCallDialog(None, HostOptions(min_port=49160, max_port=49163))
    dialog.show()
    with loop:
        loop.run_until_complete(drive(dialog))
    return 0


if __name__ == "__main__":
    sys.exit(main())
