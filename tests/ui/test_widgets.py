"""Widget details the screenshots showed were needed: preview placement, graph Y range."""

from __future__ import annotations

from typing import Any

from app.ui.debugpanel import Graph
from app.ui.widgets import VideoView


def test_local_preview_stays_in_the_bottom_right_corner(qtbot: Any) -> None:
    remote = VideoView("remote")
    qtbot.addWidget(remote)
    local = VideoView("Camera off")
    local.setFixedSize(176, 132)
    remote.set_overlay(local)
    remote.resize(640, 480)
    remote.show()
    qtbot.waitUntil(lambda: local.geometry().bottomRight().x() == 640 - 12 - 1)
    assert local.parentWidget() is remote
    assert local.geometry().bottom() == 480 - 12 - 1
    remote.resize(800, 500)
    qtbot.waitUntil(lambda: local.x() == 800 - 12 - 176)
    assert local.y() == 500 - 12 - 132


def test_graph_y_axis_starts_at_zero_and_grows_with_the_data(qtbot: Any) -> None:
    graph = Graph("Loss", "%", ("loss",), floor=5)
    qtbot.addWidget(graph)
    for t in range(5):
        graph.add("loss", float(t), 0.0)
    low, high = graph.getViewBox().viewRange()[1]
    assert (low, high) == (0, 5)  # a flat zero line sits on the floor of a 0-5 % axis
    graph.add("loss", 5.0, 20.0)
    low, high = graph.getViewBox().viewRange()[1]
    assert low == 0
    assert high >= 20
    graph.clear_points()
    assert graph.getViewBox().viewRange()[1] == [0, 5]
