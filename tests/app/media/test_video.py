"""Video: the test pattern, camera lookup and capture through PyAV, the latest-frame sink."""

from __future__ import annotations

import asyncio
import fractions
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from app.errors import DeviceNotFound, MediaError
from app.media.video import (
    CameraTrack,
    LatestFrameSink,
    TestPatternTrack,
    find_camera,
    list_cameras,
)

NINETY_K = fractions.Fraction(1, 90_000)


async def test_pattern_frames_are_yuv420p_on_the_rtp_clock() -> None:
    track = TestPatternTrack(640, 480, fps=15, realtime=False)
    frames = [await track.recv() for _ in range(3)]
    for i, frame in enumerate(frames):
        assert isinstance(frame, av.VideoFrame)
        assert (frame.format.name, frame.width, frame.height) == ("yuv420p", 640, 480)
        assert frame.time_base == NINETY_K
        assert frame.pts == i * 6000  # 90 kHz / 15 fps
    assert track.frames == 3


def test_pattern_moves_and_shows_the_clock() -> None:
    track = TestPatternTrack(realtime=False)
    a = track.render(0, 1_000_000.0).to_ndarray(format="rgb24")
    b = track.render(1, 1_000_000.0).to_ndarray(format="rgb24")
    c = track.render(1, 1_000_000.5).to_ndarray(format="rgb24")
    assert a.shape == (480, 640, 3)
    top = slice(0, 100)  # the bars alone, above the clock
    assert not np.array_equal(a[top], b[top])  # motion
    assert np.array_equal(b[top], c[top])
    assert not np.array_equal(b, c)  # only the clock differs: half a second later


def test_pattern_shows_eight_distinct_bars() -> None:
    rgb = TestPatternTrack(realtime=False).render(0, 0.0).to_ndarray(format="rgb24")
    row = rgb[10]
    colours = {tuple(int(v) // 16 for v in row[x]) for x in range(40, 640, 80)}
    assert len(colours) == 8


@pytest.mark.parametrize(("size", "fps"), [((63, 48), 15), ((640, 481), 15), ((640, 480), 0)])
def test_bad_pattern_settings_are_one_line_errors(size: tuple[int, int], fps: float) -> None:
    with pytest.raises(MediaError) as exc:
        TestPatternTrack(*size, fps=fps)
    assert "\n" not in str(exc.value)


def test_cameras_are_listed_from_video_nodes(tmp_path: Path) -> None:
    for name in ("video12", "video0", "videoX", "vbi0"):
        (tmp_path / name).touch()
    found = list_cameras(tmp_path)
    assert [(c.index, c.path) for c in found] == [
        (0, str(tmp_path / "video0")),
        (12, str(tmp_path / "video12")),
    ]


@pytest.mark.skipif(bool(list_cameras()), reason="this machine has a camera")
def test_missing_camera_is_a_one_line_error() -> None:
    with pytest.raises(DeviceNotFound) as exc:
        CameraTrack()
    assert str(exc.value) == "no camera found (have: none); the test pattern works without one"
    with pytest.raises(DeviceNotFound) as exc:
        CameraTrack("/dev/video7")
    assert str(exc.value) == "no camera matches '/dev/video7' (have: none)"
    with pytest.raises(DeviceNotFound, match="no camera matches '2'"):
        find_camera(2)


async def test_unopenable_device_is_a_one_line_error(tmp_path: Path) -> None:
    track = CameraTrack(source=str(tmp_path / "video0"))
    with pytest.raises(MediaError) as exc:
        await track.start()
    message = str(exc.value)
    assert message.startswith(f"cannot open camera '{tmp_path / 'video0'}': ")
    assert "\n" not in message


async def test_camera_capture_thread_delivers_restamped_frames() -> None:
    """The capture path (PyAV input, reader thread, hand-off, pts) on FFmpeg's lavfi input,
    which stands in for /dev/videoN on a machine without a camera."""
    track = CameraTrack(input_format="lavfi", source="testsrc=size=320x240:rate=30,realtime")
    seen: list[Any] = []
    five = asyncio.Event()

    def on_frame(frame: Any) -> None:
        seen.append(frame)
        if len(seen) >= 5:
            five.set()

    sink = LatestFrameSink(on_frame=on_frame)
    await sink.start(track)
    try:
        await asyncio.wait_for(five.wait(), 20)
        assert sink.frames >= 5
        assert sink.size == (320, 240)
        rgb = sink.latest_rgb()
        assert rgb is not None
        assert rgb.shape == (240, 320, 3)
        assert rgb.dtype == np.uint8
        assert sink.latest_rgb() is rgb  # converted once per frame, then cached
        pts = [f.pts for f in seen]
        assert pts == sorted(pts)
        assert all(f.time_base == NINETY_K for f in seen)
    finally:
        await sink.stop()
        track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_latest_frame_sink_keeps_the_newest_frame() -> None:
    got_ten = asyncio.Event()
    sink = LatestFrameSink(on_frame=lambda f: got_ten.set() if sink.frames >= 10 else None)
    assert sink.latest_rgb() is None
    assert sink.size is None
    # realtime=False never suspends: the sink must still leave the loop free to run this test.
    await sink.start(TestPatternTrack(160, 120, realtime=False))
    await asyncio.wait_for(got_ten.wait(), 10)
    await sink.stop()
    assert sink.frames >= 10
    assert sink.size == (160, 120)
