"""Repeated calls in one window keep nothing per call (brief item 4): each finished call's
session, peer connection and debug-panel rows are released, not piled up."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

from tests.ui.test_call import connect_pair


def test_finished_calls_are_released_by_the_window(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice, bob = make_window("alice"), make_window("bob")
    panel = alice.open_debug_panel()  # open all along: its rows and series are per call
    sessions: list[weakref.ref[Any]] = []
    connections: list[weakref.ref[Any]] = []
    rows = []
    for _ in range(3):
        connect_pair(qtbot, qloop, alice, bob)
        qtbot.waitUntil(lambda: len(panel.stats) >= 1, timeout=10_000)
        session = alice.adapter.session
        sessions.append(weakref.ref(session))
        connections.append(weakref.ref(session._pc))
        rows.append(panel.candidates.rowCount() + panel.timeline.rowCount())
        alice.hangup_button.click()
        qtbot.waitUntil(
            lambda: not alice.adapter.in_call and not bob.adapter.in_call, timeout=10_000
        )
        del session
    qtbot.wait(200)  # the peer connections' close callbacks
    gc.collect()
    # Only the last call may still be referenced (the window shows its result).
    assert [ref() is None for ref in sessions[:-1]] == [True, True]
    assert [ref() is None for ref in connections[:-1]] == [True, True]
    # The panel starts each call afresh: its tables do not grow call after call.
    assert rows[2] <= rows[0] + 2


def test_freed_memory_goes_back_to_the_system_on_glibc() -> None:
    import platform

    from app.ui import memory

    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert memory.release_free_memory() is on_glibc
    assert memory.release_free_memory() is on_glibc  # resolved once, callable again
