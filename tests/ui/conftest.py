"""pytest-qt + qasync: one qasync loop per test on pytest-qt's QApplication.

What works (and what does not): GUI tests are synchronous functions, so pytest-asyncio
leaves them alone. The qasync loop is installed as *the running loop* for the whole test
(``asyncio._set_running_loop``, exactly what qasync's own ``run_forever`` does), and never
run with ``run_until_complete``: its callbacks are Qt timers and socket notifiers, so they run
whenever Qt processes events, i.e. inside ``qtbot.waitUntil`` / ``qtbot.waitSignal``.
Coroutines are started with ``asyncio.ensure_future`` (what the app's slots do) and awaited
with the ``arun`` fixture (a waitUntil on the task). Nesting ``run_until_complete`` inside
qtbot waits, or qtbot waits inside a coroutine, re-enters the loop and breaks tasks.
Every test here is marked ``gui``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import qasync
from PySide6.QtWidgets import QApplication, QWidget

from app.history import History
from app.settings import Settings
from app.ui import callsetup
from app.ui.mainwindow import MainWindow
from signaling.memory import memory_pair


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/ui/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gui)
            # The offscreen platform plugin warns whenever a top-level window's size
            # constraints change; that is the plugin's limitation, not a bug of ours.
            item.add_marker(
                pytest.mark.qt_log_ignore(
                    "does not support propagateSizeHints",
                    "does not support raise",
                    "does not support grabbing the keyboard",  # a popup menu opened
                )
            )


Runner = Callable[..., Any]
W = TypeVar("W", bound=QWidget)


@pytest.fixture
def qloop(qapp: QApplication, qtbot: Any) -> Iterator[asyncio.AbstractEventLoop]:
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    asyncio._set_running_loop(loop)
    try:
        yield loop
        # Let what the test started finish (a hang-up closing the peer connection), then
        # cancel what is left (waits for offers that will never come).
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        with contextlib.suppress(qtbot.TimeoutError):
            qtbot.waitUntil(lambda: all(t.done() for t in pending), timeout=2_000)
        for task in pending:
            task.cancel()
        if pending:
            qtbot.waitUntil(lambda: all(t.done() for t in pending), timeout=10_000)
        qtbot.wait(300)  # let transport close callbacks run; they are plain call_soon()s
        gc.collect()  # report a leaked socket in the test that leaked it
    finally:
        asyncio._set_running_loop(None)
        loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture
def arun(qtbot: Any, qloop: asyncio.AbstractEventLoop) -> Runner:
    """Run a coroutine to completion on the qasync loop while Qt keeps processing events."""

    def run(coro: Any, timeout: int = 20_000) -> Any:
        task = asyncio.ensure_future(coro)
        qtbot.waitUntil(task.done, timeout=timeout)
        return task.result()

    return run


@pytest.fixture
def make_window(qtbot: Any, arun: Runner, tmp_path: Path) -> Iterator[Callable[..., MainWindow]]:
    """Build main windows with private settings, silence as the microphone and no speaker."""
    windows: list[MainWindow] = []

    def make(
        name: str = "PeerCall", *, video: bool = False, media: Any = None, **values: Any
    ) -> MainWindow:
        """``video``: negotiate video as the app does (off by default: encoding VP8 in every
        test would slow the suite on a shared 2-core machine; tests/ui/test_video.py has it)."""
        values.setdefault("display_name", name)  # not the machine's host name
        directory = tmp_path / f"{name}-{len(windows)}"
        settings = Settings(directory / "settings.json")
        settings.update(values)
        history = History(directory / "history.json")
        window = MainWindow(
            settings,
            history,
            media=media or callsetup.synthetic_media,
            loopback=True,
            name=name,
            # mDNS stays on the loopback interface, the LAN host listens on 127.0.0.1 only.
            lan_interfaces=["127.0.0.1"],
            lan_listen="127.0.0.1",
            video=video,
        )
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        arun(window.shutdown())  # the window's own clean exit path, not qtbot's close
        window.deleteLater()


def ring(qtbot: Any, caller: MainWindow, callee: MainWindow) -> None:
    """``callee`` waits for a call on an in-memory channel and ``caller`` dials it; returns once
    the callee rings (answering, declining or hanging up is the test's)."""
    a, b = memory_pair()
    with qtbot.waitSignal(callee.adapter.incomingCall, timeout=15_000):
        callee.wait_for_call(b, caller.display_name())
        caller.start_call(a, callee.display_name())


def child(parent: QWidget, name: str, kind: type[W] = QWidget) -> W:  # type: ignore[assignment]
    """The visible control a person would use, found by object name or accessible name."""
    found = parent.findChild(kind, name)
    if found is None:
        for widget in parent.findChildren(kind):
            if widget.accessibleName() == name:
                found = widget
                break
    assert found is not None, f"no {kind.__name__} named {name!r} in {parent.objectName()!r}"
    return found


def click(qtbot: Any, widget: QWidget) -> None:
    """A left click in the middle of ``widget``, as a person does (must be enabled)."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtWidgets import QCheckBox, QRadioButton

    assert widget.isEnabled(), f"{widget.objectName() or widget.accessibleName()} is disabled"
    assert widget.isVisible(), f"{widget.objectName() or widget.accessibleName()} is hidden"
    if isinstance(widget, QCheckBox | QRadioButton):
        # On the box itself: a check box stretched by its layout ignores clicks past its text.
        qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=QPoint(8, widget.height() // 2))
    else:
        qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


def restarted(qtbot: Any, window: MainWindow, history: Path) -> MainWindow:
    """The app started again on ``window``'s settings file, as a second start reads it (not
    shown yet; qtbot closes it)."""
    again = MainWindow(
        Settings.load(window.settings.path),
        History(history),
        media=callsetup.synthetic_media,
        loopback=True,
    )
    qtbot.addWidget(again)
    return again


@contextlib.contextmanager
def hosting_behind_cone_nat(
    qtbot: Any, make_window: Any, workdir: Path, service: str
) -> Iterator[tuple[MainWindow, Any, Any, Any]]:
    """A window on a lab host behind a cone NAT (no miniupnpd: the router never answers a
    port-mapping request), with the lab's relay on the "internet" as its STUN server; its
    settings open on ``service``'s tab ("relay" or "signaling"), hosting for others switched
    on by clicks. Yields (window, dialog, the home LAN, the host). Needs network namespaces."""
    from PySide6.QtWidgets import QCheckBox

    from tests.netlab.lab import Lab
    from tests.ui.netns import entered

    with Lab(workdir=workdir) as lab:
        home = lab.add_lan("cone")
        host = home.add_host("alice")
        stun = lab.start_relay().stun
        with entered(host.ns):
            window = make_window("alice", ice_servers=[{"urls": [stun]}])
            d = window.open_settings()
            d.tabs.setCurrentWidget(getattr(d, service))
            click(qtbot, child(d, f"{service}ForOthers", QCheckBox))
            running = getattr(window, f"{service}_host").runningChanged
            with qtbot.waitSignal(running, timeout=10_000):
                click(qtbot, child(d, f"{service}Switch", QCheckBox))
            yield window, d, home, host


def type_into(qtbot: Any, edit: QWidget, text: str, *, replace: bool = True) -> None:
    """Focus a line edit and type ``text`` (select-all first so it replaces what is there)."""
    from PySide6.QtCore import Qt

    assert edit.isEnabled(), f"{edit.objectName() or edit.accessibleName()} is disabled"
    edit.setFocus()
    if replace:
        qtbot.keyClick(edit, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
        qtbot.keyClick(edit, Qt.Key.Key_Delete)
    qtbot.keyClicks(edit, text)
